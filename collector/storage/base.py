"""The storage interface: one contract, an SQLite and a PostgreSQL implementation."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from ..model import Filters, Row, SurveyFact, TokenInfo, UploadAuth
from .impact_sql import ImpactData
from .outbox import OutboxAlert, OutboxPolicy
from .report_sql import ReportData
from .segments import Fetch


@dataclass(frozen=True, slots=True)
class ExportRow:
    """One stored record for the export: its fields as received plus what the collector added."""

    raw: bytes
    box_id: str
    received_us: int
    model: str | None
    firmware: str | None
    region: str | None
    clock_shift_s: float


@dataclass(frozen=True, slots=True)
class DetractorRow:
    """An answered detractor survey joined to its session, for the dashboard's call-back list."""

    survey_id: str
    box_id: str
    shown_us: int
    score: int
    reason: str | None
    region: str | None
    model: str | None
    firmware: str | None
    session_id: str
    channel: str | None
    content_type: str | None
    startup_ms: int | None
    watch_s: float
    rebuffer_count: int
    rebuffer_ratio: float
    avg_bitrate_kbps: float | None
    failed: bool


@dataclass(frozen=True, slots=True)
class BadQuality:
    """When a session counts as bad: any one of these (the dashboard's call-back list)."""

    rebuffer_ratio_above: float = 0.02
    startup_ms_above: int = 5000
    bitrate_kbps_at_most: float = 1000.0


class Storage(abc.ABC):
    """Where the collector keeps tokens and records.

    Implementations write through one writer with group commit and read off the event
    loop. ``close()`` is idempotent; any other call after it raises
    :class:`~collector.errors.StoreClosedError`.
    """

    #: Human-readable location, for logs and the admin-token message (no secrets).
    location: str
    #: Which alerts an upload raises, kept in the outbox in the upload's own transaction
    #: (``collector.storage.outbox``); None: no outbox (no webhook configured).
    outbox: OutboxPolicy | None = None

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect, create or migrate the schema, start the writer."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish queued writes and release everything. Idempotent."""

    # -- records -----------------------------------------------------------------
    @abc.abstractmethod
    async def ingest(self, rows: Sequence[Row], auth: UploadAuth | None = None) -> list[bool]:
        """Store rows durably; answer, per row, True if new and False if its id was held.

        With ``auth``, the rows are stored only if, in the very transaction that stores
        them, that token is known, not revoked and ``auth.box_id``'s; otherwise nothing is
        stored and :class:`~collector.errors.TokenRefusedError` says why. Raises
        :class:`~collector.errors.OverloadedError` when the write queue is full. Returns
        only after the commit is on disk.
        """

    @abc.abstractmethod
    async def survey_facts(self, filters: Filters) -> list[SurveyFact]:
        """Every matching survey with its session's metrics where the session is known."""

    @abc.abstractmethod
    async def report_data(self, filters: Filters) -> ReportData:
        """The counts the report is computed from: the incremental aggregates for the whole
        UTC days in range, the raw rows for the partial days at its edges."""

    @abc.abstractmethod
    def export_rows(self, kind: str, filters: Filters) -> AsyncIterator[ExportRow]:
        """Stream every matching stored record of ``kind`` in arrival order."""

    @abc.abstractmethod
    async def counts(self) -> dict[str, int]:
        """How many sessions and surveys are stored (for health and metrics)."""

    @abc.abstractmethod
    async def impact_data(self, filters: Filters) -> ImpactData:
        """The rows and shown-survey strata ``GET /v1/impact`` is computed from (contract
        section 6; see :mod:`collector.storage.impact_sql`)."""

    # -- tokens and settings -----------------------------------------------------------
    @abc.abstractmethod
    async def add_box_token(self, box_id: str, token_hash: bytes, issued_us: int) -> None:
        """Keep a new token hash for ``box_id``."""

    @abc.abstractmethod
    async def revoke_box(self, box_id: str) -> int:
        """Revoke every token issued so far to ``box_id``; answer how many."""

    @abc.abstractmethod
    async def lookup_token(self, token_hash: bytes) -> TokenInfo | None:
        """The owner of a token hash, or None."""

    @abc.abstractmethod
    async def get_meta(self, key: str) -> str | None:
        """A collector-wide setting kept in the store."""

    @abc.abstractmethod
    async def set_meta_once(self, key: str, value: str) -> str:
        """Keep ``value`` under ``key`` unless one is there already; answer the kept value."""

    @abc.abstractmethod
    async def delete_box(self, box_id: str) -> int:
        """Delete every record and token of one box; answer how many records."""

    # -- dashboard and retention --------------------------------------------------------
    @abc.abstractmethod
    async def bad_detractors(
        self, filters: Filters, bad: BadQuality, limit: int
    ) -> list[DetractorRow]:
        """Answered detractors (0-6) whose session is known and had bad quality (or
        failed), newest ``shown_at`` first, at most ``limit``."""

    @abc.abstractmethod
    async def purge_before(self, cutoff_us: int) -> int:
        """Delete sessions started and surveys shown before ``cutoff_us``; answer how many."""

    @abc.abstractmethod
    async def rebuild_aggregates(self) -> None:
        """Recompute the report's aggregates from the stored rows (after a bulk load, or
        to check them: they must come out equal to those kept on ingest)."""

    @abc.abstractmethod
    async def fold_aggregates(self) -> None:
        """Fold the aggregates' deltas (the counts of the latest write groups) into their
        levels now; reads count them either way (a check of the aggregate tables needs it)."""

    @abc.abstractmethod
    async def segment_values(self, limit: int = 500) -> dict[str, list[str]]:
        """Known values of region, model, firmware, channel and content_type (at most
        ``limit`` each, sorted), for the dashboard's filter suggestions."""

    @abc.abstractmethod
    async def outbox_pending(self, limit: int) -> list[OutboxAlert]:
        """The oldest ``limit`` alerts waiting for delivery."""

    @abc.abstractmethod
    async def outbox_put_once(self, mark_key: str, alert: OutboxAlert) -> bool:
        """Keep ``alert`` in the outbox and ``mark_key`` in ``nps_meta``, in one
        transaction, unless the mark is there already; answer whether it was kept."""

    @abc.abstractmethod
    async def outbox_delete(self, alert_id: str) -> None:
        """Forget a delivered alert."""

    @abc.abstractmethod
    def sql_reader(self, *, large: bool = False) -> tuple[Fetch, str]:
        """The store's read function (SQL and parameters to rows, off the event loop) and
        its placeholder style (``?`` or ``$``), for query modules written once for both
        backends (``collector.storage.at_risk``). ``large``: for a statement that groups
        millions of rows (the at-risk ranking), which the backend may give more memory."""
