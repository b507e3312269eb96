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
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from itertools import compress
from typing import Any

from protocol.nps import is_detractor, is_promoter

from ..model import Filters
from .sql import where_surveys

Fetch = Callable[[str, Sequence[Any]], Awaitable[list[Any]]]


@dataclass(frozen=True, slots=True)
class ImpactRows:
    """The estimator's rows, column by column (every list has one entry per row).

    A row is an answered survey whose session is known, except sessions that showed a
    frame (``startup_ms`` not null) but whose ``avg_bitrate_kbps`` is null. The segment
    (``region``, ``model``, ``firmware``) is the one sent with the survey's batch;
    ``content_type`` and the QoS are the session's.
    """

    box_id: Sequence[str]
    score: Sequence[int]
    region: Sequence[str | None]
    model: Sequence[str | None]
    firmware: Sequence[str | None]
    content_type: Sequence[str | None]
    rebuffer_ratio: Sequence[float]
    startup_ms: Sequence[int | None]
    avg_bitrate_kbps: Sequence[float | None]
    #: 0/1 from SQLite, bool from PostgreSQL.
    failed: Sequence[int | bool]

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


#: What makes a survey shown in range a row of the estimator (its session known, see
#: :mod:`.survey_session`).
_IS_ROW = ("v.outcome = 'answered' AND v.score IS NOT NULL AND v.rebuffer_ratio IS NOT NULL "
           "AND (v.startup_ms IS NULL OR v.avg_bitrate_kbps IS NOT NULL)")
#: The row's columns, in :class:`ImpactRows` order (the score is selected apart).
_ROW_COLUMNS = ("v.box_id", "v.region", "v.model", "v.firmware", "v.content_type",
                "v.rebuffer_ratio", "v.startup_ms", "v.avg_bitrate_kbps", "v.failed")


async def read_impact_data(fetch: Fetch, filters: Filters, style: str) -> ImpactData:
    """The estimator's rows and the shown strata for ``filters``, in one pass; ``style``
    is the backend's placeholder style (``?`` or ``$``).

    One query over every survey shown in range joined to its session (where stored): the
    join, a look-up per survey, is what costs, so it is done once for both. The columns of
    the rows are selected only where the survey is a row (NULL elsewhere: nothing to decode).
    """
    where, params = where_surveys(filters, style, session="v")
    row_columns = ", ".join(f"CASE WHEN {_IS_ROW} THEN {c} END" for c in _ROW_COLUMNS)
    # A stored session always has its bucket (rebuffer_ratio is never null), so a null
    # bucket means the session is not stored, or the survey names none: unknown.
    rows = await fetch(
        f"SELECT v.rb_bucket, CASE WHEN v.outcome = 'answered' THEN v.score END, "
        f"CASE WHEN {_IS_ROW} THEN 1 ELSE 0 END, {row_columns} "
        f"FROM surveys v {where}", params,
    )
    # Hundreds of thousands of rows to regroup: in a worker thread, not on the event loop.
    return await asyncio.to_thread(_split, rows)


def _split(rows: Sequence[Sequence[Any]]) -> ImpactData:
    """The estimator's rows and the strata from the query's rows."""
    if not rows:
        return ImpactData(ImpactRows((), (), (), (), (), (), (), (), (), ()), [])
    cols = list(zip(*rows, strict=True))
    bucket, score, is_row = cols[0], cols[1], cols[2]
    # Column by column with C-level helpers, the values as the drivers made them: at
    # hundreds of thousands of surveys a Python step per value would cost more than the
    # estimator.
    picked = [tuple(compress(c, is_row)) for c in cols[3:]]
    data = ImpactRows(picked[0], tuple(compress(score, is_row)), *picked[1:])
    strata: dict[int | None, list[int]] = {}
    for (b, sc), n in Counter(zip(bucket, score, strict=True)).items():
        c = strata.setdefault(None if b is None else int(b), [0, 0, 0, 0])
        c[0] += n
        if sc is not None:
            c[1] += n
            c[2] += n if is_promoter(sc) else 0
            c[3] += n if is_detractor(sc) else 0
    return ImpactData(data, [StratumCounts(b, *c) for b, c in strata.items()])
