"""Reading the report's counts: which aggregate rows and raw rows a report reads (the
plan), the queries, and folding their answers into :class:`ReportData`.

Whole UTC days come from the daily aggregates, whole hours of a range's partial days from
the hourly ones, and only the partial hours at its very edges from the raw rows (see
:mod:`collector.storage.aggregates` for the tables and levels).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from protocol.units import DAY_US, HOUR_US

from ..metrics import BY_NAME, METRICS, NAMES
from ..model import Filters
from .aggregate_sql import ANSWERED, survey_counts
from .aggregates import (
    _PMAX,
    _PMIN,
    _Q,
    _SESSION_POS,
    _SURVEY_POS,
    _T0,
    BIN_COMBINE,
    BIN_VEC,
    DELTA,
    HOURLY,
    LEVEL_OF,
    SEGMENT,
    SESSION_VEC,
    SURVEY_VEC,
    empty_bin,
    session_counts,
)
from .sql import where_sessions, where_surveys

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


def _where(f: Filters, p: Params, first: str, column: str, a: int | None, b: int | None) -> str:
    """``first``, ``a <= column < b`` (either end open) and ``f``'s segment filters."""
    parts = [first]
    if a is not None:
        parts.append(f"{column} >= {p.add(a)}")
    if b is not None:
        parts.append(f"{column} < {p.add(b)}")
    for c in SEGMENT:
        value = getattr(f, c)
        if value is not None:
            parts.append(f"{c} = {p.add(value)}")
    return " AND ".join(parts)


def _agg_where(f: Filters, p: Params, span: tuple[int, int | None, int | None]) -> str:
    lvl, a, b = span
    return _where(f, p, f"lvl = {p.add(lvl)}", "day", a, b)


def _delta_where(f: Filters, p: Params, span: tuple[int, int | None, int | None]) -> str:
    """The delta rows (by hour, whole segment) that belong to ``span``'s aggregate rows."""
    lvl, a, b = span
    per_hour = 1 if lvl >= HOURLY else 24
    return _where(f, p, "true", "hour", None if a is None else a * per_hour,
                  None if b is None else b * per_hour)


def _agg_source(table: str, columns: Sequence[str], f: Filters, p: Params,
                span: tuple[int, int | None, int | None]) -> str:
    """``span``'s rows of ``table`` and of its delta (the write groups not yet folded), one
    relation read by one statement: one snapshot, so a fold between them is never seen
    half-done."""
    cols = ", ".join(columns)
    return (f"(SELECT {cols} FROM {table} WHERE {_agg_where(f, p, span)} UNION ALL "
            f"SELECT {cols} FROM {DELTA[table]} WHERE {_delta_where(f, p, span)}) a")


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
    pl = plan(f)
    sq: list[Query] = []
    vq: list[Query] = []
    bq: list[Query] = []
    for span in pl.spans:
        for table, vec, out in (("agg_sessions", SESSION_VEC, sq), ("agg_surveys", SURVEY_VEC, vq)):
            p = Params(style)
            source = _agg_source(table, vec, f, p, span)
            out.append(("agg", f"SELECT {', '.join(_total(c) for c in vec)} FROM {source}",
                        p.values))
        p = Params(style)
        source = _agg_source("agg_bins", ("metric", "bin", *BIN_VEC), f, p, span)
        sums = ", ".join(_total(c) for c in BIN_VEC)
        bq.append(("agg", f"SELECT metric, bin, {sums} FROM {source} GROUP BY metric, bin",
                   p.values))
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
        vq.append(("raw", f"SELECT {', '.join(f'sum({e})' for e in survey_counts('v'))} FROM surveys v{join} {where}", params))
        cond = ANSWERED.format(v='v')
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


async def read_report_data(fetch: Fetch, f: Filters, style: str, *, concurrent: bool = True,
                           surveys_only: bool = False) -> ReportData:
    """Run :func:`report_queries` through ``fetch`` and fold the answers. ``surveys_only``
    reads the survey counts alone (sessions and bins left empty): all that NPS and the
    response rate of a period need, at a third of the queries and none of the bins."""
    sq, vq, bq = report_queries(f, style)
    if surveys_only:
        sq, bq = [], []
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
