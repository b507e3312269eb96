"""Reading the report's counts: which aggregate rows and raw rows a report reads (the
plan), the queries, and folding their answers into :class:`ReportData`.

Whole UTC days come from the daily aggregates, whole hours of a range's partial days from
the hourly ones, and only the partial hours at its very edges from the raw rows (see
:mod:`collector.storage.aggregates` for the tables and levels).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..buckets import METRICS
from ..model import Filters
from .aggregate_sql import ANSWERED, survey_counts
from .aggregates import (
    _PMAX,
    _PMIN,
    _SESSION_POS,
    _SURVEY_POS,
    BIN_COMBINE,
    BIN_VEC,
    DAY_US,
    HOUR_US,
    HOURLY,
    LEVEL_OF,
    SEGMENT,
    SESSION_VEC,
    SURVEY_VEC,
    bucket_vec_name,
    empty_bin,
)
from .sql import where_sessions, where_surveys

# -- reading --------------------------------------------------------------------------------------

@dataclass
class ReportData:
    """Everything the report is computed from: counts, never records."""

    sessions: list[int] = field(default_factory=lambda: [0] * len(SESSION_VEC))
    surveys: list[int] = field(default_factory=lambda: [0] * len(SURVEY_VEC))
    #: (metric, fine bin) -> the count of each score 0..10.
    bins: dict[tuple[str, int], list[int]] = field(default_factory=dict)

    def add_sessions(self, row: Sequence[Any]) -> None:
        """Add a row of session counts (nulls, from an empty sum, count as 0)."""
        for i, v in enumerate(row):
            self.sessions[i] += int(v or 0)

    def add_surveys(self, row: Sequence[Any]) -> None:
        """Add a row of survey counts."""
        for i, v in enumerate(row):
            self.surveys[i] += int(v or 0)

    def add_bin(self, metric: str, fine: int, counts: Sequence[Any]) -> None:
        """Add score counts to one fine bin."""
        vec = self.bins.get((metric, fine))
        if vec is None:
            vec = self.bins[(metric, fine)] = empty_bin()
        for i, v in enumerate(counts[:_PMIN]):
            vec[i] += int(v or 0)
        vec[_PMIN] = min(vec[_PMIN], int(counts[_PMIN]))
        vec[_PMAX] = max(vec[_PMAX], int(counts[_PMAX]))

    def session(self, name: str) -> int:
        """One session count by its column name."""
        return self.sessions[_SESSION_POS[name]]

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


Query = tuple[str, list[Any]]
Fetch = Callable[[str, Sequence[Any]], Awaitable[list[Any]]]


def report_queries(f: Filters, style: str) -> tuple[list[Query], list[Query], list[Query]]:
    """(session-count queries, survey-count queries, bin queries) for ``f``.

    Session and survey queries answer one row of counts in :data:`SESSION_VEC` /
    :data:`SURVEY_VEC` order; bin queries answer ``(metric, bin, s0..s10)`` rows from the
    aggregates or ``(rb_fine, br_fine, su_fine, rb_pos, br_pos, su_pos, score, count)``
    rows from the raw rows (told apart by their width).
    """
    pl = plan(f)
    sq: list[Query] = []
    vq: list[Query] = []
    bq: list[Query] = []
    for span in pl.spans:
        for table, vec, out in (("agg_sessions", SESSION_VEC, sq), ("agg_surveys", SURVEY_VEC, vq)):
            p = Params(style)
            where = _agg_where(f, p, span)
            out.append((f"SELECT {', '.join(_total(c) for c in vec)} FROM {table} WHERE {where}",
                        p.values))
        p = Params(style)
        where = _agg_where(f, p, span)
        sums = ", ".join(_total(c) for c in BIN_VEC)
        bq.append((f"SELECT metric, bin, {sums} FROM agg_bins "
                   f"WHERE {where} GROUP BY metric, bin", p.values))
    for lo, hi in pl.raw:
        edge = replace(f, from_us=lo, to_us=hi)
        where, params = where_sessions(edge, style)
        # Grouped rather than summed with CASE: the grouping columns are in the index on
        # started_us, and the database groups far faster than it evaluates 18 CASEs a row.
        sq.append(("SELECT rb_bucket, br_bucket, su_bucket, failed, surveyed, count(*) "
                   f"FROM sessions {where} GROUP BY 1, 2, 3, 4, 5", params))
        where, params = where_surveys(edge, style)
        # The session is needed only where a filter reaches the survey through it.
        join = " LEFT JOIN sessions s ON s.id = v.session_id" if edge.through_session else ""
        vq.append((f"SELECT {', '.join(f'sum({e})' for e in survey_counts('v'))} FROM surveys v{join} {where}", params))
        cond = ANSWERED.format(v='v')
        where = f"{where} AND {cond}" if where else f"WHERE {cond}"
        bq.append(("SELECT s.rb_fine, s.br_fine, s.su_fine, s.rb_pos, s.br_pos, s.su_pos, v.score, "
                   f"count(*) FROM surveys v JOIN sessions s ON s.id = v.session_id {where} "
                   "GROUP BY 1, 2, 3, 4, 5, 6, 7", params))
    return sq, vq, bq


async def read_report_data(fetch: Fetch, f: Filters, style: str, *, concurrent: bool = True) -> ReportData:
    """Run :func:`report_queries` through ``fetch`` and fold the answers."""
    sq, vq, bq = report_queries(f, style)
    queries = [*sq, *vq, *bq]
    if concurrent:
        answers = await asyncio.gather(*(fetch(q, p) for q, p in queries))
    else:
        answers = [await fetch(q, p) for q, p in queries]
    data = ReportData()
    it = iter(answers)
    for _ in sq:
        for row in next(it):
            if len(row) == len(SESSION_VEC):
                data.add_sessions(row)
                continue
            vec = [0] * len(SESSION_VEC)
            count = int(row[5])
            vec[0] = count
            vec[1] = count if row[4] else 0
            vec[2] = count if row[3] else 0
            for metric, b in zip(METRICS, row[:3], strict=True):
                if b is not None:
                    vec[_SESSION_POS[bucket_vec_name(metric, b)]] = count
            data.add_sessions(vec)
    for _ in vq:
        for row in next(it):
            data.add_surveys(row)
    for _ in bq:
        for row in next(it):
            if len(row) == 2 + len(BIN_VEC):
                data.add_bin(METRICS[row[0]], row[1], row[2:])
                continue
            score, count = row[6], row[7]
            for metric, fine, pos in zip(METRICS, row[:3], row[3:6], strict=True):
                if fine is not None:
                    counts = empty_bin()
                    counts[score] = count
                    counts[11 + score] = (pos or 0) * count
                    counts[22] = (pos or 0) ** 2 * count
                    counts[_PMIN] = counts[_PMAX] = pos or 0
                    data.add_bin(metric, fine, counts)
    return data
