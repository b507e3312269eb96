"""Queries for ``GET /v1/impact`` (contract section 6), in SQL both backends accept.

Two reads: the estimator's rows (answered surveys in range joined to their session) and
the surveys shown per stratum (the ``rebuffer_ratio`` bucket of the survey's session, or
unknown) for the response-adjusted NPS. Both take the report's filters exactly as the
report does (:func:`~collector.storage.sql.where_surveys`), so the channel and
content-type filters reach a survey through its session.

Kept apart from the stores so that they only pass their ``fetch`` and placeholder style.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

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


_ROW_COLUMNS = ("v.box_id", "v.score", "v.region", "v.model", "v.firmware", "s.content_type",
                "s.rebuffer_ratio", "s.startup_ms", "s.avg_bitrate_kbps", "s.failed")


def _and(where: str, cond: str) -> str:
    return f"{where} AND {cond}" if where else f"WHERE {cond}"


async def read_impact_rows(fetch: Fetch, filters: Filters, style: str) -> ImpactRows:
    """The estimator's rows for ``filters``; ``style`` is the backend's placeholder style
    (``?`` or ``$``)."""
    where, params = where_surveys(filters, style)
    where = _and(where, "v.outcome = 'answered' AND v.score IS NOT NULL "
                        "AND (s.startup_ms IS NULL OR s.avg_bitrate_kbps IS NOT NULL)")
    rows = await fetch(
        f"SELECT {', '.join(_ROW_COLUMNS)} FROM surveys v "
        f"JOIN sessions s ON s.id = v.session_id {where}", params,
    )
    if not rows:
        return ImpactRows((), (), (), (), (), (), (), (), (), ())
    # Column by column, as the drivers made the values (no conversion per value: at
    # hundreds of thousands of rows that would cost more than the estimator).
    return ImpactRows(*zip(*rows, strict=True))


async def read_shown_strata(fetch: Fetch, filters: Filters, style: str) -> list[StratumCounts]:
    """Surveys shown in range per stratum (only strata with at least one survey)."""
    where, params = where_surveys(filters, style)
    # A stored session always has its bucket (rebuffer_ratio is never null), so a null
    # bucket here means the session is not stored, or the survey names none: unknown.
    rows = await fetch(
        "SELECT s.rb_bucket, count(*), "
        "sum(CASE WHEN v.outcome = 'answered' THEN 1 ELSE 0 END), "
        "sum(CASE WHEN v.outcome = 'answered' AND v.score >= 9 THEN 1 ELSE 0 END), "
        "sum(CASE WHEN v.outcome = 'answered' AND v.score <= 6 THEN 1 ELSE 0 END) "
        f"FROM surveys v LEFT JOIN sessions s ON s.id = v.session_id {where} "
        "GROUP BY s.rb_bucket", params,
    )
    return [StratumCounts(None if r[0] is None else int(r[0]), int(r[1]), int(r[2]), int(r[3]),
                          int(r[4])) for r in rows]


async def read_impact_data(fetch: Fetch, filters: Filters, style: str) -> ImpactData:
    """Both reads, at once (each store has more than one reader)."""
    rows, strata = await asyncio.gather(read_impact_rows(fetch, filters, style),
                                        read_shown_strata(fetch, filters, style))
    return ImpactData(rows, strata)
