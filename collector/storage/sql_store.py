"""What the SQLite and PostgreSQL stores share: the reads both answer with the same SQL,
written once over the store's read function and placeholder style
(:meth:`Storage.sql_reader`), and closing."""

from __future__ import annotations

import abc
from collections.abc import Sequence

from protocol.nps import DETRACTOR_MAX

from ..errors import StoreClosedError
from ..model import Filters, Row, SurveyFact, TokenInfo, UploadAuth
from .aggregates import DELTA
from .base import BadQuality, DetractorRow, Storage
from .group_commit import GroupCommitQueue
from .impact_sql import ImpactData, read_impact_data
from .outbox import PENDING_SQL, OutboxAlert, pending_rows
from .report_sql import ReportData, read_report_data
from .segments import read_segment_values
from .sql import survey_fact_row, survey_facts_sql, where_sessions, where_surveys


def _ph(style: str, i: int) -> str:
    """The ``i``-th placeholder (from 1) of a statement in ``style``."""
    return "?" if style == "?" else f"${i}"


def export_sql(kind: str, filters: Filters, style: str, order: tuple[str, str]) -> tuple[str, list[object]]:
    """The export's query of ``kind`` (``session`` or ``survey``) and its parameters;
    ``order``: the ORDER BY of sessions and of surveys (``v``), in arrival order."""
    if kind == "session":
        where, params = where_sessions(filters, style)
        return ("SELECT raw, box_id, received_us, model, firmware, region, clock_shift_s "
                f"FROM sessions {where} ORDER BY {order[0]}"), params
    where, params = where_surveys(filters, style)
    return ("SELECT v.raw, v.box_id, v.received_us, v.model, v.firmware, v.region, "
            "v.clock_shift_s FROM surveys v LEFT JOIN sessions s ON s.id = v.session_id "
            f"{where} ORDER BY {order[1]}"), params


class SqlStore(Storage, abc.ABC):
    """A store whose reads are these queries, through :meth:`sql_reader`, and whose writes
    go through a group-commit queue."""

    _state: str
    _writes: GroupCommitQueue

    @abc.abstractmethod
    async def _release(self) -> None:
        """Close the store's connections (the write queue is stopped already)."""

    @property
    def queue_depth(self) -> int:
        """Batches waiting for the writer."""
        return self._writes.depth

    async def ingest(self, rows: Sequence[Row], auth: UploadAuth | None = None) -> list[bool]:
        if self._state != "open":
            raise StoreClosedError(f"store {self.location} is {self._state}, not open")
        if not rows:
            return []
        return await self._writes.submit(rows, auth)

    async def close(self) -> None:
        if self._state in ("closed", "new"):
            self._state = "closed"
            return
        self._state = "closing"
        await self._writes.stop()
        await self._release()
        self._state = "closed"

    async def report_data(self, filters: Filters) -> ReportData:
        fetch, style = self.sql_reader()
        return await read_report_data(fetch, filters, style)

    async def impact_data(self, filters: Filters) -> ImpactData:
        fetch, style = self.sql_reader()
        return await read_impact_data(fetch, filters, style)

    async def survey_facts(self, filters: Filters) -> list[SurveyFact]:
        fetch, style = self.sql_reader()
        where, params = where_surveys(filters, style)
        return [survey_fact_row(r) for r in await fetch(survey_facts_sql(where), params)]

    async def counts(self) -> dict[str, int]:
        # From the rollup aggregates: exact, and a count(*) over millions of rows is not
        # what a readiness probe should cost.
        fetch, _ = self.sql_reader()
        rows = await fetch(
            "SELECT (SELECT coalesce(sum(n), 0) FROM agg_sessions WHERE lvl = 1) "
            f"+ (SELECT coalesce(sum(n), 0) FROM {DELTA['agg_sessions']}), "
            "(SELECT coalesce(sum(shown), 0) FROM agg_surveys WHERE lvl = 1) "
            f"+ (SELECT coalesce(sum(shown), 0) FROM {DELTA['agg_surveys']})", ())
        return {"sessions": int(rows[0][0]), "surveys": int(rows[0][1])}

    async def lookup_token(self, token_hash: bytes) -> TokenInfo | None:
        fetch, style = self.sql_reader()
        rows = await fetch(
            f"SELECT box_id, revoked FROM box_tokens WHERE token_hash = {_ph(style, 1)}", (token_hash,))
        return TokenInfo(rows[0][0], bool(rows[0][1])) if rows else None

    async def get_meta(self, key: str) -> str | None:
        fetch, style = self.sql_reader()
        rows = await fetch(f"SELECT value FROM nps_meta WHERE key = {_ph(style, 1)}", (key,))
        return str(rows[0][0]) if rows else None

    async def outbox_pending(self, limit: int) -> list[OutboxAlert]:
        fetch, style = self.sql_reader()
        return pending_rows(await fetch(PENDING_SQL.format(p=_ph(style, 1)), (limit,)))

    async def segment_values(self, limit: int = 500) -> dict[str, list[str]]:
        fetch, _ = self.sql_reader()
        return await read_segment_values(fetch, limit)

    async def bad_detractors(
        self, filters: Filters, bad: BadQuality, limit: int
    ) -> list[DetractorRow]:
        fetch, style = self.sql_reader()
        where, params = where_surveys(filters, style)
        k = len(params)
        cond = (f"v.outcome = 'answered' AND v.score <= {DETRACTOR_MAX} AND (s.failed "
                f"OR s.rebuffer_ratio > {_ph(style, k + 1)} OR s.startup_ms > {_ph(style, k + 2)} "
                f"OR s.avg_bitrate_kbps <= {_ph(style, k + 3)})")
        where = f"{where} AND {cond}" if where else f"WHERE {cond}"
        rows = await fetch(
            "SELECT CAST(v.id AS TEXT), v.box_id, v.shown_us, v.score, v.reason, v.region, "
            "v.model, v.firmware, CAST(s.id AS TEXT), s.channel, s.content_type, s.startup_ms, "
            "s.watch_s, s.rebuffer_count, s.rebuffer_ratio, s.avg_bitrate_kbps, s.failed "
            f"FROM surveys v JOIN sessions s ON s.id = v.session_id {where} "
            f"ORDER BY v.shown_us DESC, v.id LIMIT {_ph(style, k + 4)}",
            [*params, bad.rebuffer_ratio_above, bad.startup_ms_above,
             bad.bitrate_kbps_at_most, limit],
        )
        return [DetractorRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10],
                             r[11], r[12], r[13], r[14], r[15], bool(r[16])) for r in rows]
