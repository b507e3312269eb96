"""Incremental report aggregates, shared by every backend.

The report must not slow down as records pile up, so ingest keeps three tables of
counts, each keyed by a UTC day and a segment (region, model, firmware, channel,
content_type), and the report reads those for the whole days inside ``[from, to)`` and
the raw rows only for the partial days at the edges:

* ``agg_sessions``: sessions by their ``started_at`` day: count, surveyed, failed and the
  count in each of the contract's QoS buckets (the report needs only these marginals, so
  one wide row per day and segment suffices);
* ``agg_surveys``: surveys by their ``shown_at`` day: shown, each outcome, the score
  histogram and the reasons;
* ``agg_bins``: answered surveys whose session is known, by day, segment, metric and
  *fine* bin of that session's metric: the count of each score. The contract's buckets
  are unions of fine bins, and Spearman's rho is computed from the fine bins (see
  :data:`FINE_EDGES`).

A survey's channel and content type are its session's, so a survey whose session has not
arrived is kept under channel ``''`` (which no filter can ask for) and moved to its
session's segment, with its bins, in the transaction that stores the session.

Each key is kept at several levels: ``lvl`` 0 with its whole segment, ``lvl`` 1 (the
rollup) with every segment column ``''``, and ``lvl`` 2 to 6 with only one segment column
kept (region, model, firmware, channel, content_type in turn). A report without segment
filters reads the rollup, one with a single segment filter that column's level, so both
read a number of rows that depends only on days, bins and that column's values; several
segment filters read the detail. Levels 11 to 16 repeat levels 1 to 6 by hour (see
:data:`HOURLY`). Nulls are stored as ``''`` (text) so that keys can be
primary keys in both SQLite and PostgreSQL: no filter may be empty, so ``''`` is never
asked for.

Everything here is plain Python or SQL that both dialects accept, so that both backends
keep the very same aggregates and answer the very same report.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Awaitable, Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from operator import attrgetter
from typing import Any, Final

from protocol import REASONS

from ..metrics import BY_NAME, METRICS, NAMES, START, bucket_index
from ..model import Filters, SessionRow

DAY_US: Final = 86_400_000_000
HOUR_US: Final = 3_600_000_000
#: Levels ``HOURLY + 1`` to ``HOURLY + 6`` repeat levels 1 to 6 by UTC hour (their ``day``
#: column holds the hour number): the report reads them for the whole hours of a range's
#: partial days, so that only the partial hours at its very edges come from raw rows.
HOURLY: Final = 10

#: Segment columns, in key order.
SEGMENT: Final = ("region", "model", "firmware", "channel", "content_type")
#: The key of ``agg_sessions`` and ``agg_surveys``.
KEY: Final = ("lvl", "day", *SEGMENT)
#: The key of ``agg_bins``.
BIN_KEY: Final = (*KEY, "metric", "bin")

#: The session counts that are not a metric's buckets, each with the condition (SQL over
#: a session row aliased ``{s}``) under which a session counts there. The start funnel
#: (contract section 4): no frame shown is a null start-up time, whose bucket is then null
#: too (the bucket is read: it is in the index the report's raw reads use).
SESSION_FLAGS: Final = {
    "n": "1 = 1",
    "surveyed": "{s}.surveyed",
    "failed": "{s}.failed",
    "exited_before_start": f"{{s}}.{START.bucket_column} IS NULL AND NOT {{s}}.failed",
    "start_failures": f"{{s}}.{START.bucket_column} IS NULL AND {{s}}.failed",
}
#: Column names of the session counts, in vector order: the counts of each metric's
#: buckets follow the metric table.
SESSION_VEC: Final = (
    *SESSION_FLAGS,
    *(c for m in METRICS for c in m.count_columns),
)


def session_conditions(s: str) -> dict[str, str]:
    """Per column of :data:`SESSION_VEC`, the SQL condition under which one session row
    (aliased ``s``) counts there."""
    out = {c: cond.format(s=s) for c, cond in SESSION_FLAGS.items()}
    for m in METRICS:
        out.update({c: f"{s}.{m.bucket_column} = {i}" for i, c in enumerate(m.count_columns)})
    return out


def session_counts(buckets: Sequence[int | None], failed: bool, surveyed: bool,
                   count: int = 1) -> dict[str, int]:
    """What ``count`` sessions with these buckets (in table order) and flags add to each
    column of :data:`SESSION_VEC` (columns they add nothing to left out): Python's
    :func:`session_conditions`."""
    out = {"n": count}
    if surveyed:
        out["surveyed"] = count
    if failed:
        out["failed"] = count
    if buckets[_START_INDEX] is None:
        out["start_failures" if failed else "exited_before_start"] = count
    for m, b in zip(METRICS, buckets, strict=True):
        if b is not None:
            out[m.count_columns[b]] = count
    return out


_START_INDEX: Final = METRICS.index(START)
#: Column names of the survey counts, in vector order.
SURVEY_VEC: Final = (
    "shown", "answered", "dismissed", "timeout",
    *(f"h{i}" for i in range(11)),
    *(f"r_{r}" for r in REASONS),
)
#: Column names of a fine bin's counts: of each score (``s``), the sum of the sessions'
#: positions inside the bin by score (``t``, in thousandths of the bin's width), and the
#: sum of the squared positions (``q``), and the least and greatest position (``pmin``,
#: ``pmax``: kept with min and max, not summed). The positions let the report rank values
#: inside a bin to first order (see :func:`collector.report.bins_spearman`); integers, so
#: both backends combine them exactly alike.
BIN_VEC: Final = (*(f"s{i}" for i in range(11)), *(f"t{i}" for i in range(11)), "q", "pmin", "pmax")
#: How each column of :data:`BIN_VEC` combines (the others are summed).
BIN_COMBINE: Final = {"pmin": "min", "pmax": "max"}
_PMIN, _PMAX = BIN_VEC.index("pmin"), BIN_VEC.index("pmax")
#: Where the sums of positions (``t0``) and of squared positions (``q``) start in :data:`BIN_VEC`.
_T0, _Q = BIN_VEC.index("t0"), BIN_VEC.index("q")

#: Metric numbers in ``agg_bins.metric``: their index in the metric table.
METRIC_ID: Final = {m.name: i for i, m in enumerate(METRICS)}
#: A session's value inside its fine bin is kept as a position from 0 to this.
POS_SCALE: Final = 1000

# -- fine bins --------------------------------------------------------------------------------

#: Each fine bin is 5 % wide (geometric): about 800 bins in all, so the aggregates of a day
#: hold a few hundred bin rows whatever the number of records. Treating the values inside
#: a bin as tied would move Spearman's rho by up to a few hundredths where values crowd
#: into a few bins; the report therefore also ranks values inside a bin by their position
#: in it (see :func:`collector.report.bins_spearman`), which brings the error under 0.002
#: on skewed, tied and narrow data (the tests check the contract's 0.01 against scipy).
_RATIO: Final = 1.05


def _edges(start: float, stop: float, coarse: Iterable[float]) -> tuple[float, ...]:
    out = {0.0, *(float(c) for c in coarse)}
    x = start
    while x < stop:
        out.add(x)
        x *= _RATIO
    out.add(stop)
    return tuple(sorted(out))


#: Upper edges of the fine bins: bin ``i`` holds ``FINE_EDGES[i-1] < x <= FINE_EDGES[i]``,
#: bin 0 holds exactly 0, and bin ``len(edges)`` everything above the last edge. Every edge
#: of the contract's buckets is an edge here, so each fine bin lies in one bucket.
FINE_EDGES: Final[dict[str, tuple[float, ...]]] = {
    m.name: _edges(*m.fine_range, (b.hi for b in m.buckets if b.hi is not None))
    for m in METRICS
}


def fine_bin(metric: str, value: float | None) -> int | None:
    """The fine bin of a metric's value (None for a null metric)."""
    if value is None or math.isnan(value):
        return None
    return bisect.bisect_left(FINE_EDGES[metric], value)


def fine_bin_pos(metric: str, value: float | None) -> tuple[int | None, int | None]:
    """The fine bin of ``value`` and where it lies inside it, 0 (lower edge) to 1000
    (upper edge); the position is 0 in the bin of exact zeros and in the open bin above
    the last edge. (None, None) for a null metric."""
    if value is None or math.isnan(value):
        return None, None
    edges = FINE_EDGES[metric]
    fine = bisect.bisect_left(edges, value)
    if fine == 0 or fine >= len(edges):
        return fine, 0
    lo, hi = edges[fine - 1], edges[fine]
    return fine, min(POS_SCALE, max(0, round((value - lo) / (hi - lo) * POS_SCALE)))


def metric_columns(values: Mapping[str, float | None]) -> dict[str, Any]:
    """A session's per-metric columns (value, bucket, fine bin, position; see
    :attr:`collector.metrics.Metric.columns`) from its values by metric name (a metric
    not given is null)."""
    out: dict[str, Any] = {}
    for m in METRICS:
        value = values.get(m.name)
        fine, pos = fine_bin_pos(m.name, value)
        out[m.name] = value
        out[m.bucket_column] = bucket_index(m.name, value)
        out[m.fine_column] = fine
        out[m.pos_column] = pos
    return out


def fine_pos(metric: str, value: float | None) -> int | None:
    """Where ``value`` lies inside its fine bin (see :func:`fine_bin_pos`)."""
    return fine_bin_pos(metric, value)[1]


def coarse_of_fine(metric: str, fine: int) -> int:
    """The contract bucket that fine bin ``fine`` lies in."""
    edges = FINE_EDGES[metric]
    if fine >= len(edges):
        return len(BY_NAME[metric].buckets) - 1
    idx = bucket_index(metric, edges[fine])
    assert idx is not None
    return idx


def day_of(us: int) -> int:
    """The UTC day number of a time in µs (floor, also before 1970)."""
    return us // DAY_US


def unit_sql(col: str, unit_us: int) -> str:
    """``col // unit_us`` in SQL: both dialects truncate integer division towards zero."""
    fix = f"(CASE WHEN {col} < 0 AND {col} % {unit_us} != 0 THEN 1 ELSE 0 END)"
    return f"({col} / {unit_us} - {fix})"


def day_sql(col: str, dialect: str) -> str:
    """:func:`day_of` in SQL."""
    return unit_sql(col, DAY_US)


# -- the counts --------------------------------------------------------------------------------

Key = tuple[Any, ...]


#: What a session is counted by, less its hour and surveyed flag: its segment, each
#: metric's bucket (in table order) and its failed flag. Columns of ``sessions`` and
#: attributes of a ``SessionRow``.
COUNTED: Final = (*SEGMENT, *(m.bucket_column for m in METRICS), "failed")


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """What the session aggregates need of a session."""

    started_us: int
    #: The values of :data:`COUNTED`.
    counted: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Joined:
    """What a survey's aggregates need of its session."""

    channel: str | None
    content_type: str | None
    #: The session's fine bin of each metric, in table order.
    fines: tuple[int | None, ...]
    #: The session's position inside each of those bins, in table order.
    positions: tuple[int | None, ...] = ()

    def fine(self, metric: str) -> int | None:
        """The session's fine bin of ``metric``."""
        return self.fines[METRIC_ID[metric]]

    def pos(self, metric: str) -> int:
        """The session's position inside that bin."""
        i = METRIC_ID[metric]
        return (self.positions[i] if i < len(self.positions) else None) or 0


@dataclass(frozen=True, slots=True)
class SurveyFacts:
    """What the survey aggregates need of a survey."""

    shown_us: int
    region: str | None
    model: str | None
    firmware: str | None
    outcome: str
    score: int | None
    reason: str | None


def _seg(*values: str | None) -> tuple[str, ...]:
    return tuple(v if v is not None else "" for v in values)


_ROLLUP_SEG: Final = ("",) * len(SEGMENT)
#: The level that keeps only segment column ``i``.
LEVEL_OF: Final = {c: 2 + i for i, c in enumerate(SEGMENT)}


def _keys(t_us: int, seg: tuple[str, ...]) -> list[Key]:
    day = t_us // DAY_US
    hour = t_us // HOUR_US
    # Written out (the same keys, in the same order, as one kept column at a time): this
    # runs 13 times a record on ingest.
    r, m, f, c, t = seg
    return [
        (0, day, r, m, f, c, t), (1, day, "", "", "", "", ""), (_H1, hour, "", "", "", "", ""),
        (2, day, r, "", "", "", ""), (_H2, hour, r, "", "", "", ""),
        (3, day, "", m, "", "", ""), (_H3, hour, "", m, "", "", ""),
        (4, day, "", "", f, "", ""), (_H4, hour, "", "", f, "", ""),
        (5, day, "", "", "", c, ""), (_H5, hour, "", "", "", c, ""),
        (6, day, "", "", "", "", t), (_H6, hour, "", "", "", "", t),
    ]


assert len(SEGMENT) == 5  # _keys writes the levels out
#: :data:`COUNTED` of a ``SessionRow``.
_SESSION_COUNTED: Final = attrgetter(*COUNTED)
_H1, _H2, _H3, _H4, _H5, _H6 = (HOURLY + i for i in range(1, 7))


#: Sessions by (hour, segment), then by position in :data:`SESSION_VEC`: their counts.
SessionCounts = dict[tuple[int, tuple[str, ...]], dict[int, int]]


def _count_rows(rows: Iterable[SessionRow], surveyed: Container[str],
                pending: dict[tuple[int, tuple[Any, ...]], int]) -> None:
    """Count sessions by hour and counted columns (the key of ``Deltas.session``)."""
    for r in rows:
        k = (r.started_us // HOUR_US, (*_SESSION_COUNTED(r), r.id in surveyed))
        pending[k] = pending.get(k, 0) + 1


def _fold(pending: dict[tuple[int, tuple[Any, ...]], int], into: SessionCounts) -> None:
    """Add sessions counted by hour and counted columns to ``into``, by hour and segment."""
    n_seg = len(SEGMENT)
    for (hour, counted), count in pending.items():
        if not count:
            continue
        seg: tuple[str, ...] = tuple(v or "" for v in counted[:n_seg])
        buckets = counted[n_seg:-2]
        failed, surveyed = counted[-2], counted[-1]
        counts = into.get((hour, seg))
        if counts is None:
            counts = into[(hour, seg)] = {}
        for name, n in session_counts(buckets, failed, surveyed, count).items():
            i = _SESSION_POS[name]
            counts[i] = counts.get(i, 0) + n


@dataclass
class Deltas:
    """Changes to the three aggregate tables, summed by key; applied in one transaction."""

    sessions: dict[Key, list[int]] = field(default_factory=dict)
    surveys: dict[Key, list[int]] = field(default_factory=dict)
    bins: dict[Key, list[int]] = field(default_factory=dict)
    #: Sessions counted by hour and what they are counted by (segment, buckets, failed,
    #: surveyed) before they are spread over their 13 keys: sessions of one hour and
    #: segment are alike far more often than not, and this runs for every session stored.
    _pending: dict[tuple[int, tuple[Any, ...]], int] = field(default_factory=dict)
    #: Sessions counted by hour and segment, then by column (see :data:`SessionCounts`).
    _counts: SessionCounts = field(default_factory=dict)

    @staticmethod
    def _add(table: dict[Key, list[int]], key: Key, width: int, idx: Iterable[int], sign: int,
             amounts: Iterable[tuple[int, int]] = ()) -> None:
        vec = table.get(key)
        if vec is None:
            vec = table[key] = [0] * width
        for i in idx:
            vec[i] += sign
        for i, amount in amounts:
            vec[i] += sign * amount

    def session(self, s: SessionFacts, surveyed: bool, sign: int = 1) -> None:
        """Count (``sign`` 1) or uncount (-1) a session."""
        k = (s.started_us // HOUR_US, (*s.counted, surveyed))
        pending = self._pending
        pending[k] = pending.get(k, 0) + sign

    def new_sessions(self, rows: Iterable[SessionRow], surveyed: Container[str]) -> None:
        """Count sessions just stored (:meth:`session` for each, without its per-row cost)."""
        _count_rows(rows, surveyed, self._pending)

    def surveyed_now(self, rows: Iterable[SessionRow]) -> None:
        """Move sessions counted as not surveyed (by :meth:`add_counts`) to surveyed."""
        pending = self._pending
        for r in rows:
            counted = _SESSION_COUNTED(r)
            hour = r.started_us // HOUR_US
            for k, sign in (((hour, (*counted, False)), -1), ((hour, (*counted, True)), 1)):
                pending[k] = pending.get(k, 0) + sign

    @staticmethod
    def count_sessions(rows: Iterable[SessionRow]) -> SessionCounts:
        """Sessions counted as not surveyed, ready for :meth:`add_counts`: the per-session
        part of the work, which needs no database (the SQLite store does it for each
        upload on the event loop, not on its one writer)."""
        pending: dict[tuple[int, tuple[Any, ...]], int] = {}
        _count_rows(rows, (), pending)
        counts: SessionCounts = {}
        _fold(pending, counts)
        return counts

    def add_counts(self, counts: SessionCounts) -> None:
        """Add sessions counted by :meth:`count_sessions`."""
        mine = self._counts
        for key, by_column in counts.items():
            into = mine.get(key)
            if into is None:
                mine[key] = dict(by_column)
                continue
            for i, n in by_column.items():
                into[i] = into.get(i, 0) + n

    def spread_sessions(self) -> None:
        """Spread the sessions counted so far over their keys now (they are spread anyway
        by :meth:`session_rows`; earlier, the work can overlap a database round trip)."""
        self._spread()

    def _spread(self) -> None:
        # First by hour and segment, the counts by column; then each of those over its keys.
        _fold(self._pending, self._counts)
        self._pending.clear()
        sessions = self.sessions
        width = len(SESSION_VEC)
        for (hour, seg), counts in self._counts.items():
            items = [(i, n) for i, n in counts.items() if n]
            for key in _keys(hour * HOUR_US, seg):
                vec = sessions.get(key)
                if vec is None:
                    vec = sessions[key] = [0] * width
                for i, n in items:
                    vec[i] += n
        self._counts.clear()

    def survey(self, v: SurveyFacts, joined: Joined | None, sign: int = 1) -> None:
        """Count (``sign`` 1) or uncount (-1) a survey, joined to its session or not."""
        idx = [0]
        answered = v.outcome == "answered" and v.score is not None
        if v.outcome in ("answered", "dismissed", "timeout"):
            idx.append(_SURVEY_POS[v.outcome])
        if answered:
            idx.append(_SURVEY_POS[f"h{v.score}"])
            if v.reason in REASONS:
                idx.append(_SURVEY_POS[f"r_{v.reason}"])
        seg = _seg(v.region, v.model, v.firmware,
                   joined.channel if joined else None, joined.content_type if joined else None)
        keys = _keys(v.shown_us, seg)
        for key in keys:
            self._add(self.surveys, key, len(SURVEY_VEC), idx, sign)
        if answered and joined is not None:
            assert v.score is not None
            for metric in NAMES:
                fine = joined.fine(metric)
                if fine is None:
                    continue
                pos = joined.pos(metric)
                for key in keys:
                    vec = self.bins.get((*key, METRIC_ID[metric], fine))
                    if vec is None:
                        vec = self.bins[(*key, METRIC_ID[metric], fine)] = empty_bin()
                    vec[v.score] += sign
                    vec[_T0 + v.score] += sign * pos
                    vec[_Q] += sign * pos * pos
                    # Bins are only ever added to on ingest (deletions recompute whole days),
                    # so the least and greatest positions can be kept incrementally.
                    vec[_PMIN] = min(vec[_PMIN], pos)
                    vec[_PMAX] = max(vec[_PMAX], pos)

    @staticmethod
    def _rows(table: dict[Key, list[int]]) -> list[tuple[Any, ...]]:
        # Sorted: every writer touches aggregate rows in the same order, so two
        # transactions (two collector instances) never wait for each other in a cycle.
        # Keys alone are sorted (they are unique): cheaper than sorting (key, vector) pairs.
        return [(*k, *v) for k in sorted(table) if any(v := table[k])]

    def session_rows(self) -> list[tuple[Any, ...]]:
        """``agg_sessions`` rows to add: key then counts, in key order."""
        self._spread()
        return self._rows(self.sessions)

    def survey_rows(self) -> list[tuple[Any, ...]]:
        """``agg_surveys`` rows to add."""
        return self._rows(self.surveys)

    def bin_rows(self) -> list[tuple[Any, ...]]:
        """``agg_bins`` rows to add."""
        return self._rows(self.bins)


def empty_bin() -> list[int]:
    """A bin's vector before anything is counted in it."""
    vec = [0] * len(BIN_VEC)
    vec[_PMIN] = POS_SCALE + 1
    vec[_PMAX] = -1
    return vec


_SESSION_POS: Final = {c: i for i, c in enumerate(SESSION_VEC)}
_SURVEY_POS: Final = {c: i for i, c in enumerate(SURVEY_VEC)}


def upsert_parts(table: str, key: Sequence[str], vec: Sequence[str], dialect: str) -> tuple[str, str]:
    """``INSERT ... ON CONFLICT (key) DO UPDATE`` adding the counts, as the text before and
    the text after the rows (a VALUES clause or a SELECT, dialect-specific)."""
    cols = ", ".join((*key, *vec))

    def combine(c: str) -> str:
        how = BIN_COMBINE.get(c) if table == "agg_bins" else None
        if how is None:
            return f"{c} = {table}.{c} + excluded.{c}"
        fn = how if dialect == "sqlite" else {"min": "least", "max": "greatest"}[how]
        return f"{c} = {fn}({table}.{c}, excluded.{c})"

    adds = ", ".join(combine(c) for c in vec)
    return f"INSERT INTO {table} ({cols})", f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {adds}"


def upsert_sql(table: str, key: Sequence[str], vec: Sequence[str], values: str, dialect: str) -> str:
    """:func:`upsert_parts` around ``values``."""
    head, tail = upsert_parts(table, key, vec, dialect)
    return f"{head} {values} {tail}"


# -- schema -------------------------------------------------------------------------------------

# -- rebuilding from the raw rows (migration, bulk loads, deletions) ------------------------------

def _sum_case(cond: str) -> str:
    return f"sum(CASE WHEN {cond} THEN 1 ELSE 0 END)"


def _session_sums(alias: str) -> list[str]:
    conditions = session_conditions(alias)
    return [_sum_case(conditions[c]) for c in SESSION_VEC]


_ANSWERED = "v.outcome = 'answered' AND v.score IS NOT NULL"


def _survey_sums() -> list[str]:
    out = ["count(*)"] + [_sum_case(f"v.outcome = '{o}'") for o in ("answered", "dismissed", "timeout")]
    out += [_sum_case(f"{_ANSWERED} AND v.score = {i}") for i in range(11)]
    out += [_sum_case(f"{_ANSWERED} AND v.reason = '{r}'") for r in REASONS]
    return out


def _bin_sums(pos: str) -> list[str]:
    return [*(_sum_case(f"v.score = {i}") for i in range(11)),
            *(f"sum(CASE WHEN v.score = {i} THEN {pos} ELSE 0 END)" for i in range(11)),
            f"sum(CAST({pos} AS BIGINT) * {pos})", f"min({pos})", f"max({pos})"]


def rebuild_sql(dialect: str, style: str) -> list[tuple[str, str]]:
    """Statements that recompute the aggregates of days ``[d0, d1)`` from the raw rows, in
    order. Each takes two parameters, by its flag: ``day`` ``(d0, d1)``, ``hour``
    ``(24 d0, 24 d1)`` or ``us`` ``(d0 * DAY_US, d1 * DAY_US)``."""
    def ph(i: int) -> str:
        return "?" if style == "?" else f"${i}"

    seg_s = ", ".join(f"coalesce(s.{c}, '')" for c in SEGMENT)
    seg_v = ", ".join([*(f"coalesce(v.{c}, '')" for c in SEGMENT[:3]),
                       "coalesce(s.channel, '')", "coalesce(s.content_type, '')"])
    n_key = len(KEY)
    stmts: list[tuple[str, str]] = []
    for table in ("agg_sessions", "agg_surveys", "agg_bins"):
        stmts.append((f"DELETE FROM {table} WHERE lvl < {HOURLY} AND day >= {ph(1)} AND day < {ph(2)}", "day"))
        stmts.append((f"DELETE FROM {table} WHERE lvl >= {HOURLY} AND day >= {ph(1)} AND day < {ph(2)}", "hour"))
    group = ", ".join(str(i) for i in range(2, n_key + 1))
    # The detail by day (level 0) and, to derive the hourly levels from, by hour (level
    # HOURLY, removed at the end: no report reads the detail by hour).
    for lvl, unit in ((0, DAY_US), (HOURLY, HOUR_US)):
        stmts.append((
            f"INSERT INTO agg_sessions ({', '.join((*KEY, *SESSION_VEC))}) "
            f"SELECT {lvl}, {unit_sql('s.started_us', unit)}, {seg_s}, {', '.join(_session_sums('s'))} "
            f"FROM sessions s WHERE s.started_us >= {ph(1)} AND s.started_us < {ph(2)} GROUP BY {group}", "us"))
        stmts.append((
            f"INSERT INTO agg_surveys ({', '.join((*KEY, *SURVEY_VEC))}) "
            f"SELECT {lvl}, {unit_sql('v.shown_us', unit)}, {seg_v}, {', '.join(_survey_sums())} "
            f"FROM surveys v LEFT JOIN sessions s ON s.id = v.session_id "
            f"WHERE v.shown_us >= {ph(1)} AND v.shown_us < {ph(2)} GROUP BY {group}", "us"))
        for metric in METRICS:
            col = metric.fine_column
            stmts.append((
                f"INSERT INTO agg_bins ({', '.join((*BIN_KEY, *BIN_VEC))}) "
                f"SELECT {lvl}, {unit_sql('v.shown_us', unit)}, {seg_v}, {METRIC_ID[metric.name]}, s.{col}, "
                f"{', '.join(_bin_sums(f's.{metric.pos_column}'))} FROM surveys v JOIN sessions s ON s.id = v.session_id "
                f"WHERE {_ANSWERED} AND s.{col} IS NOT NULL "
                f"AND v.shown_us >= {ph(1)} AND v.shown_us < {ph(2)} GROUP BY {group}, {n_key + 1}, {n_key + 2}", "us"))
    for table, vec, extra in (("agg_sessions", SESSION_VEC, ()), ("agg_surveys", SURVEY_VEC, ()),
                              ("agg_bins", BIN_VEC, ("metric", "bin"))):
        key_cols = (*KEY, *extra)
        sums = ", ".join(f"{BIN_COMBINE.get(c, 'sum')}({c})" for c in vec)
        extra_sel = "".join(f", {c}" for c in extra)
        for base, kind in ((0, "day"), (HOURLY, "hour")):
            for lvl, kept in ((1, None), *((LEVEL_OF[c], c) for c in SEGMENT)):
                seg_sel = ", ".join(c if c == kept else "''" for c in SEGMENT)
                group_by = f"day{', ' + kept if kept else ''}{extra_sel}"
                stmts.append((
                    f"INSERT INTO {table} ({', '.join((*key_cols, *vec))}) "
                    f"SELECT {base + lvl}, day, {seg_sel}{extra_sel}, {sums} FROM {table} "
                    f"WHERE lvl = {base} AND day >= {ph(1)} AND day < {ph(2)} GROUP BY {group_by}", kind))
        stmts.append((f"DELETE FROM {table} WHERE lvl = {HOURLY} AND day >= {ph(1)} AND day < {ph(2)}", "hour"))
    return stmts


def rebuild_params(kind: str, d0: int, d1: int) -> tuple[int, int]:
    """The two parameters of a :func:`rebuild_sql` statement."""
    if kind == "day":
        return d0, d1
    if kind == "hour":
        return d0 * 24, d1 * 24
    return d0 * DAY_US, d1 * DAY_US


def day_ranges(days: Iterable[int]) -> list[tuple[int, int]]:
    """Runs of consecutive days as ``[d0, d1)`` ranges."""
    out: list[tuple[int, int]] = []
    for d in sorted(set(days)):
        if out and out[-1][1] == d:
            out[-1] = (out[-1][0], d + 1)
        else:
            out.append((d, d + 1))
    return out


# -- reading --------------------------------------------------------------------------------------

@dataclass
class ReportData:
    """Everything the report is computed from: counts, never records. Read by column
    name (:meth:`session`, :meth:`survey`, :meth:`bucket_sessions`), never by position."""

    sessions: list[int] = field(default_factory=lambda: [0] * len(SESSION_VEC))
    surveys: list[int] = field(default_factory=lambda: [0] * len(SURVEY_VEC))
    #: (metric name, fine bin) -> the bin's vector (:data:`BIN_VEC`).
    bins: dict[tuple[str, int], list[int]] = field(default_factory=dict)

    def add_sessions(self, row: Sequence[Any]) -> None:
        """Add a row of session counts in :data:`SESSION_VEC` order (nulls, from an empty
        sum, count as 0)."""
        for i, v in enumerate(row):
            self.sessions[i] += int(v or 0)

    def add_session_counts(self, counts: Mapping[str, int]) -> None:
        """Add session counts by column name."""
        for name, v in counts.items():
            self.sessions[_SESSION_POS[name]] += v

    def add_surveys(self, row: Sequence[Any]) -> None:
        """Add a row of survey counts."""
        for i, v in enumerate(row):
            self.surveys[i] += int(v or 0)

    def add_bin(self, metric: str, fine: int, counts: Sequence[Any]) -> None:
        """Add a bin's vector (:data:`BIN_VEC`) to one fine bin of ``metric``."""
        vec = self.bins.get((metric, fine))
        if vec is None:
            vec = self.bins[(metric, fine)] = empty_bin()
        for i, v in enumerate(counts[:_PMIN]):
            vec[i] += int(v or 0)
        vec[_PMIN] = min(vec[_PMIN], int(counts[_PMIN]))
        vec[_PMAX] = max(vec[_PMAX], int(counts[_PMAX]))

    def add_scores(self, metric: str, fine: int, score: int, pos: int, count: int) -> None:
        """Add ``count`` answers of ``score`` at position ``pos`` to one fine bin."""
        counts = empty_bin()
        counts[score] = count
        counts[_T0 + score] = pos * count
        counts[_Q] = pos * pos * count
        counts[_PMIN] = counts[_PMAX] = pos
        self.add_bin(metric, fine, counts)

    def session(self, name: str) -> int:
        """One session count by its column name."""
        return self.sessions[_SESSION_POS[name]]

    def bucket_sessions(self, metric: str) -> list[int]:
        """The sessions in each of ``metric``'s buckets."""
        return [self.session(c) for c in BY_NAME[metric].count_columns]

    def survey(self, name: str) -> int:
        """One survey count by its column name."""
        return self.surveys[_SURVEY_POS[name]]


class Params:
    """Bound parameters in either placeholder style: ``?`` or numbered ``$n``."""

    def __init__(self, style: str, start: int = 0) -> None:
        self.style = style
        self.values: list[Any] = []
        self._start = start

    def add(self, value: Any) -> str:
        """Bind ``value``; answer its placeholder."""
        self.values.append(value)
        return "?" if self.style == "?" else f"${self._start + len(self.values)}"


@dataclass(frozen=True, slots=True)
class Plan:
    """Which aggregate rows and which raw rows a report reads."""

    #: (level, first day or hour, end): aggregate rows ``first <= day < end`` (None: open).
    spans: tuple[tuple[int, int | None, int | None], ...]
    #: µs ranges ``[lo, hi)`` read from the raw rows.
    raw: tuple[tuple[int | None, int | None], ...]


def level_of(f: Filters) -> int:
    """The aggregate level that answers ``f``'s segment filters."""
    given = [c for c in SEGMENT if getattr(f, c) is not None]
    return 1 if not given else LEVEL_OF[given[0]] if len(given) == 1 else 0


def plan(f: Filters) -> Plan:
    """Whole UTC days inside ``[from, to)`` from the daily aggregates; in the partial days
    at the edges, whole hours from the hourly ones (where the filters have a level by hour);
    the partial hours (or days) left from the raw rows."""
    lo, hi = f.from_us, f.to_us
    if lo is not None and hi is not None and lo >= hi:
        return Plan((), ())
    lvl = level_of(f)
    grains = [(lvl, DAY_US)] + ([(HOURLY + lvl, HOUR_US)] if lvl > 0 else [])
    spans: list[tuple[int, int | None, int | None]] = []
    raw: list[tuple[int | None, int | None]] = []

    def cover(lo: int | None, hi: int | None, at: int) -> None:
        level, unit = grains[at]
        a = None if lo is None else -((-lo) // unit)
        b = None if hi is None else hi // unit
        if a is not None and b is not None and a >= b:
            if at + 1 < len(grains):
                cover(lo, hi, at + 1)
            else:
                raw.append((lo, hi))
            return
        spans.append((level, a, b))
        for e_lo, e_hi in ((lo, None if a is None else a * unit), (None if b is None else b * unit, hi)):
            if e_lo is None or e_hi is None or e_lo >= e_hi:
                continue
            if at + 1 < len(grains):
                cover(e_lo, e_hi, at + 1)
            else:
                raw.append((e_lo, e_hi))

    cover(lo, hi, 0)
    return Plan(tuple(spans), tuple(raw))


def _agg_where(f: Filters, p: Params, span: tuple[int, int | None, int | None]) -> str:
    lvl, a, b = span
    parts = [f"lvl = {p.add(lvl)}"]
    if a is not None:
        parts.append(f"day >= {p.add(a)}")
    if b is not None:
        parts.append(f"day < {p.add(b)}")
    for c in SEGMENT:
        value = getattr(f, c)
        if value is not None:
            parts.append(f"{c} = {p.add(value)}")
    return " AND ".join(parts)


def _total(column: str) -> str:
    # PostgreSQL's sum(bigint) is numeric, which its driver turns into Decimal objects:
    # thousands of them cost more than the query. Cast back to a plain integer.
    how = BIN_COMBINE.get(column, "sum")
    return f"CAST({how}({column}) AS BIGINT)"


#: (kind, SQL, parameters): kind ``agg`` (reads the aggregates) or ``raw`` (the raw rows).
Query = tuple[str, str, list[Any]]
Fetch = Callable[[str, Sequence[Any]], Awaitable[list[Any]]]


#: The columns a report reads of the raw sessions (grouped, then counted).
_RAW_SESSION: Final = (*(m.bucket_column for m in METRICS), "failed", "surveyed")
#: The columns a report reads of the raw sessions of answered surveys (grouped, then counted).
_RAW_BIN: Final = (*(f"s.{m.fine_column}" for m in METRICS),
                   *(f"s.{m.pos_column}" for m in METRICS), "v.score")


def report_queries(f: Filters, style: str) -> tuple[list[Query], list[Query], list[Query]]:
    """(session-count queries, survey-count queries, bin queries) for ``f``: each a list of
    (kind, SQL, parameters), kind ``agg`` or ``raw``.

    Session and survey queries of the aggregates answer one row of counts in
    :data:`SESSION_VEC` / :data:`SURVEY_VEC` order, bin queries ``(metric, bin, BIN_VEC)``
    rows. Of the raw rows, session queries answer :data:`_RAW_SESSION` and a count, survey
    queries a row in :data:`SURVEY_VEC` order, bin queries :data:`_RAW_BIN` and a count.
    """
    from .sql import where_sessions, where_surveys

    pl = plan(f)
    sq: list[Query] = []
    vq: list[Query] = []
    bq: list[Query] = []
    for span in pl.spans:
        for table, vec, out in (("agg_sessions", SESSION_VEC, sq), ("agg_surveys", SURVEY_VEC, vq)):
            p = Params(style)
            where = _agg_where(f, p, span)
            out.append(("agg", f"SELECT {', '.join(_total(c) for c in vec)} FROM {table} WHERE {where}",
                        p.values))
        p = Params(style)
        where = _agg_where(f, p, span)
        sums = ", ".join(_total(c) for c in BIN_VEC)
        bq.append(("agg", f"SELECT metric, bin, {sums} FROM agg_bins "
                   f"WHERE {where} GROUP BY metric, bin", p.values))
    for lo, hi in pl.raw:
        edge = replace(f, from_us=lo, to_us=hi)
        where, params = where_sessions(edge, style)
        # Grouped rather than summed with CASE: the grouping columns are in the index on
        # started_us, and the database groups far faster than it evaluates 18 CASEs a row.
        group = ", ".join(str(i + 1) for i in range(len(_RAW_SESSION)))
        sq.append(("raw", f"SELECT {', '.join(_RAW_SESSION)}, count(*) "
                   f"FROM sessions {where} GROUP BY {group}", params))
        where, params = where_surveys(edge, style)
        # The session is needed only where a filter reaches the survey through it.
        join = " LEFT JOIN sessions s ON s.id = v.session_id" if edge.through_session else ""
        vq.append(("raw", f"SELECT {', '.join(_survey_sums())} FROM surveys v{join} {where}", params))
        cond = f"{_ANSWERED}"
        where = f"{where} AND {cond}" if where else f"WHERE {cond}"
        group = ", ".join(str(i + 1) for i in range(len(_RAW_BIN)))
        bq.append(("raw", f"SELECT {', '.join(_RAW_BIN)}, count(*) "
                   f"FROM surveys v JOIN sessions s ON s.id = v.session_id {where} "
                   f"GROUP BY {group}", params))
    return sq, vq, bq


def _raw_session_counts(row: Sequence[Any]) -> dict[str, int]:
    """Session counts by column name from a row of :data:`_RAW_SESSION` and a count."""
    k = len(METRICS)
    return session_counts(row[:k], bool(row[k]), bool(row[k + 1]), int(row[k + 2]))


async def read_report_data(fetch: Fetch, f: Filters, style: str, *, concurrent: bool = True) -> ReportData:
    """Run :func:`report_queries` through ``fetch`` and fold the answers."""
    import asyncio

    sq, vq, bq = report_queries(f, style)
    queries = [*sq, *vq, *bq]
    if concurrent:
        answers = await asyncio.gather(*(fetch(q, p) for _, q, p in queries))
    else:
        answers = [await fetch(q, p) for _, q, p in queries]
    data = ReportData()
    it = iter(answers)
    for kind, _, _ in sq:
        for row in next(it):
            if kind == "agg":
                data.add_sessions(row)
            else:
                data.add_session_counts(_raw_session_counts(row))
    for _ in vq:
        for row in next(it):
            data.add_surveys(row)
    k = len(METRICS)
    for kind, _, _ in bq:
        for row in next(it):
            if kind == "agg":
                data.add_bin(NAMES[row[0]], row[1], row[2:])
                continue
            score, count = row[2 * k], row[2 * k + 1]
            for name, fine, pos in zip(NAMES, row[:k], row[k:2 * k], strict=True):
                if fine is not None:
                    data.add_scores(name, fine, score, pos or 0, count)
    return data
