"""Queries for ``GET /v1/impact`` (contract section 6), in SQL both backends accept (but
for the name of the JSON aggregate).

One read gives both: the estimator's rows (answered surveys in range whose session is
known) and the surveys shown per stratum (the ``rebuffer_ratio`` bucket of the survey's
session, or unknown) for the response-adjusted NPS. Both come from the survey rows alone,
which keep their session's values (:mod:`.survey_session`): no join. It takes the
report's filters exactly as the report does (:func:`~collector.storage.sql.where_surveys`),
so the channel and content-type filters reach a survey through its session's values.

Kept apart from the stores so that they only pass their ``fetch`` and placeholder style.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

import orjson

from protocol.nps import DETRACTOR_MAX, PROMOTER_MIN

from ..metrics import BY_NAME
from ..model import Filters
from ..numeric import np, npt
from .aggregate_sql import ANSWERED
from .sql import where_surveys

Fetch = Callable[[str, Sequence[Any]], Awaitable[list[Any]]]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Coded:
    """A factor's value on each row, numbered: row i's value is ``levels[codes[i]]``
    (every level occurs on some row)."""

    codes: npt.NDArray[np.int64]
    levels: Sequence[Any]

    @classmethod
    def of(cls, values: Sequence[Any]) -> Coded:
        """The values numbered in order of first appearance."""
        numbering = _Numbering()
        numbering.add(values)
        return numbering.coded()


@dataclass(frozen=True, slots=True)
class ImpactRows:
    """The estimator's rows, column by column (one entry per row).

    A row is an answered survey whose session is known, except sessions that showed a
    frame (``startup_ms`` not null) but whose ``avg_bitrate_kbps`` is null. The box is the
    survey's ``box_id``; the segment (``region``, ``model``, ``firmware``) is the one sent
    with the survey's batch, ``content_type`` and the QoS are the session's. Nulls of
    ``startup_ms`` and ``avg_bitrate_kbps`` are NaN.
    """

    box: Coded
    #: region, model, firmware, content_type.
    segments: tuple[Coded, Coded, Coded, Coded]
    score: FloatArray
    rebuffer_ratio: FloatArray
    startup_ms: FloatArray
    avg_bitrate_kbps: FloatArray
    #: 0 or 1.
    failed: FloatArray

    def __len__(self) -> int:
        return len(self.score)


@dataclass(frozen=True, slots=True)
class StratumCounts:
    """Surveys shown in range in one stratum, and their answers by NPS category.

    ``stratum`` is the index of the session's ``rebuffer_ratio`` bucket (contract section
    4, 0 to 5), or None where the survey has no session or its session is not stored.
    """

    stratum: int | None
    shown: int
    answered: int
    promoters: int
    detractors: int


@dataclass(frozen=True, slots=True)
class ImpactData:
    """What ``GET /v1/impact`` is computed from."""

    rows: ImpactRows
    strata: list[StratumCounts]


#: A survey shown counted as answered (with a score), as the aggregates count it.
_ANSWERED = ANSWERED.format(v="v")
#: What makes a survey shown in range a row of the estimator (its session known, see
#: :mod:`.survey_session`).
_IS_ROW = (f"{_ANSWERED} AND v.rebuffer_ratio IS NOT NULL "
           "AND (v.startup_ms IS NULL OR v.avg_bitrate_kbps IS NOT NULL)")
#: The stratum of a survey shown with a :data:`_UNKNOWN` bucket where its session is
#: not known (a stored session always has its bucket: rebuffer_ratio is never null).
_UNKNOWN = len(BY_NAME["rebuffer_ratio"].buckets)
#: Each survey shown as one small number: 4 x its stratum + 0 (not answered), 1
#: (promoter), 2 (passive) or 3 (detractor). Counting them in Python costs less than a
#: GROUP BY in the database (at 10 M on SQLite: 0.12 s for the array against 0.25 s).
_STRATUM_KEY = (f"coalesce(v.rb_bucket, {_UNKNOWN}) * 4 + CASE WHEN NOT ({_ANSWERED}) THEN 0 "
                f"WHEN v.score >= {PROMOTER_MIN} THEN 1 WHEN v.score <= {DETRACTOR_MAX} THEN 3 "
                "ELSE 2 END")
#: The rows' columns, in :class:`ImpactRows` order, and which of them are reals.
_ROW_COLUMNS = ("v.box_id", "v.region", "v.model", "v.firmware", "v.content_type", "v.score",
                "v.rebuffer_ratio", "v.startup_ms", "v.avg_bitrate_kbps", "v.failed")
_REALS = frozenset({"v.rebuffer_ratio", "v.avg_bitrate_kbps"})


def _json_array(column: str, style: str) -> str:
    """An aggregate making a JSON array of ``column``'s values in row order (every column
    of one query gets its rows in the same order), exact: PostgreSQL's ``json_agg`` writes
    every digit of a real; SQLite's JSON writes 15, so its reals are written with
    ``printf('%!.17g')`` (17 significant digits: the double read back is the one stored)."""
    if style == "$":
        return f"json_agg({column})"
    if column in _REALS:
        return (f"'[' || group_concat(CASE WHEN {column} IS NULL THEN 'null' "
                f"ELSE printf('%!.17g', {column}) END) || ']'")
    return f"json_group_array({column})"


#: How many parts the rows' scan is cut into (see :func:`read_impact_data`).
PARTS: Final = 8


async def read_impact_data(fetch: Fetch, filters: Filters, style: str,
                           parts: int | None = None) -> ImpactData:
    """The estimator's rows and the shown strata for ``filters``; ``style`` is the
    backend's placeholder style (``?`` or ``$``).

    Scans of the surveys shown in range, which keep their session's values (no join):
    each survey's stratum and answer as one number (:data:`_STRATUM_KEY`), and the rows,
    column by column, each column one JSON array made by the database. Hundreds of
    thousands of rows as one Python tuple each cost more than the scan (measured at 10 M
    sessions, 349,385 rows on SQLite: 0.55 s to fetch them and 0.9 s to turn them into
    columns, against 0.3 s for the arrays and 0.15 s to parse them). JSON carries any
    text, and the reals exactly (:func:`_json_array`).

    The rows' scan is cut into ``parts`` (default :data:`PARTS`), taken in order, each
    parsed and numbered in a worker thread while the next is read: the database's work and
    Python's overlap instead of following each other (at 10 M on SQLite 0.95 s → 0.68 s;
    bench/README.md). Parts are ranges of ``shown_us``, or of SQLite's ``rowid`` when the
    range has no time bound (a ``shown_us`` range would trade SQLite's table scan for an
    index look-up per row); both are fixed for a survey, so each survey is in exactly one
    part, and each part sees the store as it was when its query began, as the report's
    queries do. SQLite reads one part at a time (two scans side by side in one process
    took longer than one after the other: bench/sqlite_side_by_side.py), PostgreSQL two,
    its server's processes working side by side.
    """
    where, params = where_surveys(filters, style, session="v")
    keys = asyncio.ensure_future(
        fetch(f"SELECT {_json_array(_STRATUM_KEY, style)} FROM surveys v {where}", params))
    reads = [keys]
    try:
        queries = await _row_queries(fetch, filters, style, PARTS if parts is None else parts)
        ahead = 1 if style == "?" else 2
        reads += [asyncio.ensure_future(fetch(*q)) for q in queries[:ahead]]
        rows = _Rows()
        for i in range(len(queries)):
            part = await reads[1 + i]
            if i + ahead < len(queries):
                reads.append(asyncio.ensure_future(fetch(*queries[i + ahead])))
            # Hundreds of thousands of values to parse and number: in a worker thread, not
            # on the event loop.
            await asyncio.to_thread(rows.add, part[0])
        key_array = (await keys)[0][0]
    finally:
        # A part that failed (or a cancelled request) leaves none of the others running.
        for read in reads:
            read.cancel()
        await asyncio.gather(*reads, return_exceptions=True)
    return rows.data(await asyncio.to_thread(_strata, key_array))


async def _row_queries(fetch: Fetch, filters: Filters, style: str,
                       parts: int) -> list[tuple[str, list[Any]]]:
    """The rows' query of each part, in order (none if no survey is in range)."""
    columns = ", ".join(_json_array(c, style) for c in _ROW_COLUMNS)
    queries = []
    if style == "?" and filters.from_us is None and filters.to_us is None:
        where, params = where_surveys(filters, style, session="v")
        for lo, hi in itertools.pairwise(await _rowid_cuts(fetch, parts)):
            queries.append((f"SELECT {columns} FROM surveys v {where + ' AND' if where else 'WHERE'} "
                            f"v.rowid >= ? AND v.rowid < ? AND {_IS_ROW}", [*params, lo, hi]))
    else:
        for lo, hi in itertools.pairwise(await _cuts(fetch, filters, style, parts)):
            where, params = where_surveys(replace(filters, from_us=lo, to_us=hi), style, session="v")
            queries.append((f"SELECT {columns} FROM surveys v {where} AND {_IS_ROW}", params))
    return queries


def _split(lo: int | None, hi: int | None, parts: int) -> list[int]:
    """``parts`` equal half-open spans (fewer if the range is short) from ``lo`` to ``hi``
    inclusive, as their bounds; none if there is no range."""
    if lo is None or hi is None:
        return []
    span = hi + 1 - lo
    return sorted({lo + span * i // parts for i in range(parts)} | {hi + 1})


async def _rowid_cuts(fetch: Fetch, parts: int) -> list[int]:
    """Bounds of SQLite ``rowid`` parts of the surveys table (its first and last rowid: two
    look-ups; one ``min``/``max`` pair in one SELECT would scan)."""
    rows = await fetch("SELECT (SELECT min(rowid) FROM surveys), (SELECT max(rowid) FROM surveys)", [])
    return _split(rows[0][0], rows[0][1], parts)


async def _cuts(fetch: Fetch, filters: Filters, style: str, parts: int) -> list[int]:
    """Bounds of ``shown_us`` parts covering every survey shown in ``filters``' time
    range, equal spans between its first and last (two look-ups in the ``shown_us``
    index)."""
    where, params = where_surveys(Filters(from_us=filters.from_us, to_us=filters.to_us), style)
    first = f"SELECT v.shown_us FROM surveys v {where} ORDER BY v.shown_us"
    # "?" placeholders are taken in order, "$n" ones by number.
    rows = await fetch(f"SELECT ({first} LIMIT 1), ({first} DESC LIMIT 1)",
                       params * 2 if style == "?" else params)
    return _split(rows[0][0], rows[0][1], parts)


class _Rows:
    """The parts' arrays, numbered and joined in the order they are added: the same
    numbering (levels in order of first appearance) as the whole read at once."""

    def __init__(self) -> None:
        self._factors = [_Numbering() for _ in range(5)]
        self._floats: list[list[FloatArray]] = [[] for _ in range(5)]

    def add(self, arrays: Sequence[str | None]) -> None:
        """One part's arrays (an aggregate of no rows may be null)."""
        columns = [orjson.loads(a) if a is not None else [] for a in arrays]
        for numbering, values in zip(self._factors, columns[:5], strict=True):
            numbering.add(values)
        # np.array(..., dtype=float64) turns a null (None) into NaN, a boolean into 0 or 1.
        for floats, values in zip(self._floats, columns[5:], strict=True):
            floats.append(np.array(values, dtype=np.float64))

    def data(self, strata: list[StratumCounts]) -> ImpactData:
        box, region, model, firmware, content_type = (f.coded() for f in self._factors)
        score, rebuffer, startup, bitrate, failed = (
            np.concatenate(f) if f else np.empty(0) for f in self._floats)
        rows = ImpactRows(box, (region, model, firmware, content_type),
                          score, rebuffer, startup, bitrate, failed)
        return ImpactData(rows, strata)


class _Numbering:
    """A factor numbered part by part, levels in order of first appearance."""

    def __init__(self) -> None:
        self._index: dict[Any, int] = {}
        self._codes: list[npt.NDArray[np.int64]] = []

    def add(self, values: Sequence[Any]) -> None:
        index = self._index
        for v in dict.fromkeys(values):
            index.setdefault(v, len(index))
        # map() over the dict's own lookup: no Python frame per value.
        self._codes.append(np.fromiter(map(index.__getitem__, values), dtype=np.int64,
                                       count=len(values)))

    def coded(self) -> Coded:
        codes = np.concatenate(self._codes) if self._codes else np.empty(0, dtype=np.int64)
        return Coded(codes, list(self._index))


def _strata(keys: str | None) -> list[StratumCounts]:
    """The strata from the shown surveys' :data:`_STRATUM_KEY`: counted by key, four keys a
    stratum (not answered, promoter, passive, detractor)."""
    counts = np.bincount(np.array(orjson.loads(keys) if keys is not None else [], dtype=np.int64),
                         minlength=4 * (_UNKNOWN + 1)).reshape(-1, 4)
    return [StratumCounts(None if b == _UNKNOWN else b, int(c.sum()), int(c[1:].sum()),
                          int(c[1]), int(c[3])) for b, c in enumerate(counts) if c.sum()]
