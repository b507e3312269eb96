"""Queries for ``GET /v1/impact`` (contract section 6), in SQL both backends accept.

One read gives both: the estimator's rows (answered surveys in range joined to their
session) and the surveys shown per stratum (the ``rebuffer_ratio`` bucket of the survey's
session, or unknown) for the response-adjusted NPS. It takes the report's filters exactly
as the report does (:func:`~collector.storage.sql.where_surveys`), so the channel and
content-type filters reach a survey through its session.

Kept apart from the stores so that they only pass their ``fetch`` and placeholder style.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from protocol.nps import DETRACTOR_MAX, PROMOTER_MIN

from ..model import Filters
from ..numeric import np, npt
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
        index = {v: i for i, v in enumerate(dict.fromkeys(values))}
        # map() over the dict's own lookup: no Python frame per value.
        codes = np.fromiter(map(index.__getitem__, values), dtype=np.int64, count=len(values))
        return cls(codes, list(index))


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


#: A survey shown counted as answered (with a score).
_ANSWERED = "v.outcome = 'answered' AND v.score IS NOT NULL"
#: What makes a survey shown in range a row of the estimator (its session known, see
#: :mod:`.survey_session`).
_IS_ROW = (f"{_ANSWERED} AND v.rebuffer_ratio IS NOT NULL "
           "AND (v.startup_ms IS NULL OR v.avg_bitrate_kbps IS NOT NULL)")
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


async def read_impact_data(fetch: Fetch, filters: Filters, style: str) -> ImpactData:
    """The estimator's rows and the shown strata for ``filters``; ``style`` is the
    backend's placeholder style (``?`` or ``$``).

    Two scans of the surveys shown in range, which keep their session's values (no
    join): the strata, counted by the database, and the rows, column by column, each
    column one JSON array made by the database. Hundreds of thousands of rows as one
    Python tuple each cost more than the scan (measured at 10 M sessions, 349,385 rows on
    SQLite: 0.55 s to fetch them and 0.9 s to turn them into columns, against 0.3 s for
    the arrays and 0.15 s to parse them). JSON carries any text, and the reals exactly
    (:func:`_json_array`).
    """
    where, params = where_surveys(filters, style, session="v")
    # Both at once, on two connections: each is work inside the database.
    # A stored session always has its bucket (rebuffer_ratio is never null), so a null
    # bucket means the session is not stored, or the survey names none: unknown.
    strata, rows = await asyncio.gather(fetch(
        f"SELECT v.rb_bucket, count(*), sum(CASE WHEN {_ANSWERED} THEN 1 ELSE 0 END), "
        f"sum(CASE WHEN {_ANSWERED} AND v.score >= {PROMOTER_MIN} THEN 1 ELSE 0 END), "
        f"sum(CASE WHEN {_ANSWERED} AND v.score <= {DETRACTOR_MAX} THEN 1 ELSE 0 END) "
        f"FROM surveys v {where} GROUP BY v.rb_bucket", params), fetch(
        f"SELECT {', '.join(_json_array(c, style) for c in _ROW_COLUMNS)} FROM surveys v "
        f"{where + ' AND' if where else 'WHERE'} {_IS_ROW}", params))
    # Hundreds of thousands of values to parse and number: in a worker thread, not on the
    # event loop.
    data = await asyncio.to_thread(_columns, rows[0])
    return ImpactData(data, [StratumCounts(None if r[0] is None else int(r[0]), *map(int, r[1:]))
                             for r in strata])


def _columns(arrays: Sequence[str | None]) -> ImpactRows:
    """The estimator's columns from the query's JSON arrays (an aggregate of no rows may
    be null)."""
    box, region, model, firmware, content_type, score, rebuffer, startup, bitrate, failed = (
        orjson.loads(a) if a is not None else [] for a in arrays)
    # np.array(..., dtype=float64) turns a null (None) into NaN, a boolean into 0 or 1.
    return ImpactRows(
        Coded.of(box), (Coded.of(region), Coded.of(model), Coded.of(firmware), Coded.of(content_type)),
        np.array(score, dtype=np.float64), np.array(rebuffer, dtype=np.float64),
        np.array(startup, dtype=np.float64), np.array(bitrate, dtype=np.float64),
        np.array(failed, dtype=np.float64))
