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
  :data:`collector.fine_bins.FINE_EDGES`).

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

A write group does not spread its counts over the levels itself: it appends them, summed
by hour and whole segment, to the table's *delta* (``agg_sessions_delta`` ..., see
:data:`DELTA`), in its own transaction, and every so many records a write group *folds*
the deltas into the levels (:mod:`collector.storage.aggregate_sql`). Deltas of many groups
share hours and segments, so a fold spreads and upserts far fewer rows than the groups
would have one by one. Every read of the aggregates adds the delta rows of its range
(a delta row is a level-0 row by hour: every filter applies to it).

Everything here is plain Python or SQL that both dialects accept, so that both backends
keep the very same aggregates and answer the very same report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from protocol import REASONS
from protocol.nps import SCORES
from protocol.units import DAY_US

from ..fine_bins import POS_SCALE
from ..metrics import METRICS, START

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
#: Each aggregate table's delta table: the counts of write groups not yet folded into the
#: levels, a row per group, hour and whole segment (and metric and bin), appended.
DELTA: Final = {t: f"{t}_delta" for t in ("agg_sessions", "agg_surveys", "agg_bins")}
#: The columns a delta row is keyed by (not unique: a row per write group).
DELTA_KEY: Final = ("hour", *SEGMENT)

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
    *(f"h{i}" for i in SCORES),
    *(f"r_{r}" for r in REASONS),
)
#: Column names of a fine bin's counts: of each score (``s``), the sum of the sessions'
#: positions inside the bin by score (``t``, in thousandths of the bin's width), and the
#: sum of the squared positions (``q``), and the least and greatest position (``pmin``,
#: ``pmax``: kept with min and max, not summed). The positions let the report rank values
#: inside a bin to first order (see :func:`collector.report.bins_spearman`); integers, so
#: both backends combine them exactly alike.
BIN_VEC: Final = (*(f"s{i}" for i in SCORES), *(f"t{i}" for i in SCORES), "q", "pmin", "pmax")
#: Vector columns whose sums over a write group may pass 2**31 (the others fit 32 bits).
WIDE: Final = frozenset({"q"})
#: How each column of :data:`BIN_VEC` combines (the others are summed).
BIN_COMBINE: Final = {"pmin": "min", "pmax": "max"}
_PMIN, _PMAX = BIN_VEC.index("pmin"), BIN_VEC.index("pmax")
#: Where the sums of positions (``t0``) and of squared positions (``q``) start in :data:`BIN_VEC`.
_T0, _Q = BIN_VEC.index("t0"), BIN_VEC.index("q")

#: Metric numbers in ``agg_bins.metric``: their index in the metric table.
METRIC_ID: Final = {m.name: i for i, m in enumerate(METRICS)}
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


#: The level that keeps only segment column ``i``.
LEVEL_OF: Final = {c: 2 + i for i, c in enumerate(SEGMENT)}


# -- the vectors' columns ------------------------------------------------------------------------

def empty_bin() -> list[int]:
    """A bin's vector before anything is counted in it."""
    vec = [0] * len(BIN_VEC)
    vec[_PMIN] = POS_SCALE + 1
    vec[_PMAX] = -1
    return vec


_SESSION_POS: Final = {c: i for i, c in enumerate(SESSION_VEC)}
_SURVEY_POS: Final = {c: i for i, c in enumerate(SURVEY_VEC)}
