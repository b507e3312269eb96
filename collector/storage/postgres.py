"""PostgreSQL storage through asyncpg, for several collector instances on one database.

What one instance keeps in memory is only an optimisation (the partitions it has already
seen) or its own queue; every rule that must hold across instances is enforced by the
database:

* ids are unique across kinds and instances through ``record_ids`` (a plain table whose
  primary key is the id): ``INSERT ... ON CONFLICT DO NOTHING RETURNING id`` answers which
  records are new, and a second instance inserting the same id waits for the first one's
  commit and then sees a conflict;
* a survey and its session join in either order, even when two instances store them at
  the same moment: both transactions take a transaction-level advisory lock on the
  session's id before looking for the other side, so the second one sees the first one's
  commit (READ COMMITTED takes a fresh snapshot per statement);
* aggregates are updated with ``INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n``
  in key order, so concurrent writers serialise on hot rows without deadlocking;
* recomputing aggregates (deletions, retention) takes an exclusive advisory lock that
  every ingest transaction takes shared.

Records live in tables partitioned by month (``sessions`` on ``started_us``, ``surveys`` on
``shown_us``); partitions are made ahead of time at start and on demand at ingest, and
:meth:`PostgresStorage.purge_before` drops those wholly before the cutoff.

Pool size and timeouts come from query parameters of the ``--db`` URL, which are removed
before the URL reaches the server: ``pool_min`` (default 2), ``pool_max`` (10),
``connect_timeout`` (10 s), ``command_timeout`` (60 s), ``start_timeout`` (120 s), and
``pgbouncer=1`` behind pgbouncer in transaction mode (no prepared-statement cache).

Faults: a server down at start is retried with backoff (1 s doubling to 15 s, each
failure logged saying what and when next) for ``start_timeout`` seconds, then the
collector stops with that error. A statement running past ``command_timeout`` (waiting
on a lock another connection holds, say) is cancelled by the server (``statement_timeout``,
sent with each connection; the client gives up 5 s later should the server not answer)
and the request is answered 503 with ``Retry-After``. A server restarted while the
collector runs fails the requests that were using it (503 with ``Retry-After``); the
pool replaces its dead connections by itself, nothing acknowledged was uncommitted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from ..errors import ConfigError, SchemaError, StorageError, StoreClosedError, TokenRefusedError
from ..model import (
    Filters,
    Row,
    SessionGroup,
    SessionRow,
    SurveyFact,
    SurveyRow,
    TokenInfo,
    UploadAuth,
)
from ..settings import Settings
from .aggregates import (
    BIN_KEY,
    BIN_VEC,
    DAY_US,
    HOURLY,
    KEY,
    SEGMENT,
    SESSION_VEC,
    SURVEY_VEC,
    Deltas,
    Joined,
    ReportData,
    day_of,
    day_ranges,
    day_sql,
    read_report_data,
    rebuild_params,
    rebuild_sql,
    upsert_sql,
)
from .base import BadQuality, DetractorRow, ExportRow, Storage
from .group_commit import GroupCommitQueue, Upload, WriteResult, refusals, upload_token_hashes
from .impact_sql import ImpactData, read_impact_data
from .migrations import upgrade_postgres
from .outbox import (
    OUTBOX_INSERT,
    PENDING_SQL,
    OutboxAlert,
    pending_rows,
    write_postgres,
)
from .schema import PARTITION_MAX_US, PARTITION_MIN_US
from .segments import Fetch, read_response_counts, read_segment_values
from .sql import (
    JOINED_COLUMNS,
    SESSION_COLUMNS,
    SESSION_FACT_COLUMNS,
    SURVEY_COLUMNS,
    SURVEY_FACT_COLUMNS,
    joined_row,
    session_facts_row,
    session_group_row,
    session_groups_sql,
    session_joined,
    session_values,
    survey_fact_row,
    survey_facts_of,
    survey_facts_row,
    survey_facts_sql,
    where_sessions,
    where_surveys,
)

log = logging.getLogger("collector.storage")

#: Advisory lock keys (the two-int form, so they never meet the one-bigint keys taken on
#: session ids): aggregate rebuilds (shared by every ingest) and partitions; schema changes
#: take key 1 (:mod:`.migrations`).
_LOCK_CLASS = 0x4E5053  # "NPS"
_LOCK_REBUILD = 2
_LOCK_PARTITIONS = 3

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(dt: datetime) -> int:
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


#: Monthly partitions cover 1900 to 2200 (see :mod:`.schema`).
_MIN_US = PARTITION_MIN_US
_MAX_US = PARTITION_MAX_US

_DSN_OPTIONS = ("pool_min", "pool_max", "connect_timeout", "command_timeout", "start_timeout",
                "pgbouncer")
#: Backoff between connection attempts at start: first, most (seconds).
START_RETRY_FIRST_S = 1.0
START_RETRY_MAX_S = 15.0


def split_dsn(dsn: str) -> tuple[str, dict[str, str]]:
    """The DSN without the collector's own query parameters, and those parameters."""
    parts = urlsplit(dsn)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in _DSN_OPTIONS}
    rest = [(k, v) for k, v in query if k not in _DSN_OPTIONS]
    return urlunsplit(parts._replace(query=urlencode(rest))), ours


def month_bounds(us: int) -> tuple[str, int, int] | None:
    """The monthly partition holding ``us``: its suffix (``p202611``) and µs bounds; None
    outside the years that have monthly partitions."""
    if not _MIN_US <= us < _MAX_US:
        return None
    dt = _EPOCH + timedelta(microseconds=us)  # exact: integer arithmetic
    start = datetime(dt.year, dt.month, 1, tzinfo=UTC)
    end = datetime(start.year + (start.month == 12), start.month % 12 + 1, 1, tzinfo=UTC)
    return f"p{start.year:04d}{start.month:02d}", _us(start), _us(end)


def _time_of(r: Row) -> int:
    return r.started_us if isinstance(r, SessionRow) else r.shown_us


def _may_be_one_upload(exc: BaseException) -> bool:
    """Whether the server (or asyncpg, encoding an argument) refused a value that one
    upload may hold: a bad value (class 22), a constraint (23), a size limit (54)."""
    return isinstance(exc, (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError,
                            asyncpg.ProgramLimitExceededError, ValueError, TypeError,
                            OverflowError))


def _lock_key(uuid_text: str) -> int:
    # The last 16 hex digits: the random part of a UUIDv7 (the first ones are its time).
    return int(uuid_text.replace("-", "")[-16:], 16) - (1 << 63)


def _results(uploads: list[Upload], refused: dict[int, TokenRefusedError],
             new: set[str]) -> list[WriteResult]:
    """Per upload, its refusal or per row whether it was stored as new (a row's first
    occurrence in the group)."""
    results: list[WriteResult] = []
    seen: set[str] = set()
    for i, u in enumerate(uploads):
        if i in refused:
            results.append(refused[i])
            continue
        res = []
        for r in u.rows:
            res.append(r.id in new and r.id not in seen)
            seen.add(r.id)
        results.append(res)
    return results


class _Retry(Exception):
    """The group meets a partition that was dropped meanwhile: make it and write again."""


def _upsert_unnest(table: str, key: Sequence[str], vec: Sequence[str]) -> str:
    types = {"lvl": "smallint", "day": "integer", "metric": "smallint", "bin": "integer"}
    # Integer columns travel as one array literal of text each (see _apply).
    arrays = ", ".join(
        f"${i + 1}::text::text[]" if c in SEGMENT else f"${i + 1}::text::{types.get(c, 'bigint')}[]"
        for i, c in enumerate((*key, *vec))
    )
    return upsert_sql(table, key, vec, f"SELECT * FROM unnest({arrays})", "postgresql")


_UPSERTS = {
    "agg_sessions": _upsert_unnest("agg_sessions", KEY, SESSION_VEC),
    "agg_surveys": _upsert_unnest("agg_surveys", KEY, SURVEY_VEC),
    "agg_bins": _upsert_unnest("agg_bins", BIN_KEY, BIN_VEC),
}


class PostgresStorage(Storage):
    """The scale-out backend: one PostgreSQL database, any number of collector instances."""

    def __init__(self, dsn: str | None, settings: Settings) -> None:
        if not dsn:
            raise ConfigError("db: no PostgreSQL URL")
        self._dsn, opts = split_dsn(dsn)
        parts = urlsplit(self._dsn)
        self.location = f"postgresql://{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"
        try:
            self._pool_min = int(opts.get("pool_min", 2))
            self._pool_max = int(opts.get("pool_max", 10))
            self._connect_timeout = float(opts.get("connect_timeout", 10))
            self._command_timeout = float(opts.get("command_timeout", 60))
            self._start_timeout = float(opts.get("start_timeout", 120))
        except ValueError as exc:
            raise ConfigError(f"db: a pool option is not a number ({exc})") from None
        if not 1 <= self._pool_min <= self._pool_max:
            raise ConfigError("db: need 1 <= pool_min <= pool_max")
        self._pgbouncer = opts.get("pgbouncer", "0") in ("1", "true", "yes")
        self._pool: asyncpg.Pool | None = None
        self._writes = GroupCommitQueue(
            self._write_group, name="postgres-writer", max_batches=settings.write_queue_batches,
            max_records=settings.group_commit_records, retry_after_s=settings.retry_after_s,
            may_be_one_upload=_may_be_one_upload,
        )
        #: Partitions known to exist: only saves a round trip; the database decides.
        self._partitions: set[str] = set()
        self._state = "new"

    # -- life cycle ----------------------------------------------------------------------
    async def open(self) -> None:
        if self._state != "new":
            raise StorageError(f"store {self.location} was already opened")
        try:
            await self._connect_with_retries()
            await self._migrate()
            now = _us(datetime.now(UTC))
            # Ahead of time: this month and the next two, so ingest rarely makes one.
            await self._ensure_partitions([now, now + 31 * DAY_US, now + 62 * DAY_US])
        except SchemaError:
            await self._close_pool()
            raise
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            await self._close_pool()
            raise StorageError(f"cannot open PostgreSQL store {self.location}: {exc}") from exc
        self._writes.start()
        self._state = "open"

    async def _connect_with_retries(self) -> None:
        """Make the pool; a server not answering yet is retried with backoff for
        ``start_timeout`` seconds (a collector started with, or before, its database)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._start_timeout
        delay = START_RETRY_FIRST_S
        # The server cancels a statement past command_timeout itself, leaving the
        # connection usable; the client-side timeout is only the backstop for a server
        # that does not answer at all. Not behind pgbouncer, which refuses unknown
        # startup parameters.
        given = dict(parse_qsl(urlsplit(self._dsn).query))
        settings = {} if self._pgbouncer or "statement_timeout" in given else {
            "statement_timeout": str(int(self._command_timeout * 1000))}
        while True:
            try:
                self._pool = await asyncpg.create_pool(
                    self._dsn, min_size=self._pool_min, max_size=self._pool_max,
                    timeout=self._connect_timeout, command_timeout=self._command_timeout + 5,
                    max_inactive_connection_lifetime=300.0, server_settings=settings,
                    statement_cache_size=0 if self._pgbouncer else 100,
                )
                return
            except (OSError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError,
                    asyncpg.ConnectionFailureError) as exc:
                # Only what a server starting up or not up yet answers; a wrong password
                # or database name would not be cured by waiting.
                if loop.time() + delay > deadline:
                    raise
                log.error("PostgreSQL at %s is not reachable (%s); retrying in %.0f s",
                          self.location, exc or type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(START_RETRY_MAX_S, delay * 2)

    async def _migrate(self) -> None:
        """Bring the schema to the latest version (see :mod:`.migrations`); two instances
        starting at once take turns."""
        assert self._pool is not None
        async with self._pool.acquire() as conn:
            await upgrade_postgres(conn, self.location, at_start=True,
                                   progress=lambda m: log.info("%s", m))

    async def close(self) -> None:
        if self._state in ("closed", "new"):
            self._state = "closed"
            return
        self._state = "closing"
        await self._writes.stop()
        await self._close_pool()
        self._state = "closed"

    async def _close_pool(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except TimeoutError:
                pool.terminate()

    def _check_open(self) -> asyncpg.Pool:
        if self._state != "open" or self._pool is None:
            raise StoreClosedError(f"store {self.location} is {self._state}, not open")
        return self._pool

    # -- partitions ------------------------------------------------------------------------
    async def _ensure_partitions(self, times_us: Sequence[int], *, sessions: bool = True,
                                 surveys: bool = True) -> None:
        """Make the monthly partitions holding ``times_us`` where missing."""
        assert self._pool is not None
        wanted: dict[str, tuple[str, int, int]] = {}
        # By day: a day lies in one month (and the bounds are whole years), and a group's
        # thousands of times fall on a few days.
        for day in {us // DAY_US for us in times_us}:
            bounds = month_bounds(day * DAY_US)
            if bounds is None:
                continue
            suffix, lo, hi = bounds
            for table, on in (("sessions", sessions), ("surveys", surveys)):
                name = f"{table}_{suffix}"
                if on and name not in self._partitions:
                    wanted[name] = (table, lo, hi)
        if not wanted:
            return
        async with self._pool.acquire() as conn, conn.transaction():
            # One instance at a time: CREATE TABLE IF NOT EXISTS races on the catalog.
            await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", _LOCK_CLASS, _LOCK_PARTITIONS)
            for name, (table, lo, hi) in sorted(wanted.items()):
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} "
                    f"FOR VALUES FROM ({lo}) TO ({hi})")
        self._partitions.update(wanted)

    # -- writes ----------------------------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        """Batches waiting for the writer."""
        return self._writes.depth

    async def ingest(self, rows: Sequence[Row], auth: UploadAuth | None = None) -> list[bool]:
        self._check_open()
        if not rows:
            return []
        return await self._writes.submit(rows, auth)

    async def _write_group(self, uploads: list[Upload]) -> list[WriteResult]:
        every: dict[str, Row] = {}
        for u in uploads:
            for r in u.rows:
                every.setdefault(r.id, r)
        await self._write_group_partitions(every)
        for attempt in range(5):
            try:
                refused, new, dropped = await self._write_transaction(uploads)
                break
            except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as exc:
                # Cannot happen with keys taken in order; should it, the database chose a
                # victim and rolled it back whole, so writing again is safe.
                log.warning("ingest transaction retried: %s", exc)
                await asyncio.sleep(0.05 * (attempt + 1))
            except _Retry:
                self._partitions.clear()
                await self._write_group_partitions(every)
        else:
            refused, new, dropped = await self._write_transaction(uploads)
        if dropped and self.outbox is not None:
            self.outbox.dropped(dropped)
        return _results(uploads, refused, new)

    @staticmethod
    async def _refusals(conn: asyncpg.Connection, uploads: list[Upload]) -> dict[int, TokenRefusedError]:
        """The uploads whose token does not allow them, read in the write transaction
        (``FOR SHARE``: a ``box-revoke`` waits for this commit, and the next upload sees it)."""
        hashes = upload_token_hashes(uploads)
        if not hashes:
            return {}
        return refusals(uploads, {bytes(r[0]): TokenInfo(r[1], r[2]) for r in await conn.fetch(
            "SELECT token_hash, box_id, revoked FROM box_tokens WHERE token_hash = ANY($1::bytea[]) "
            "FOR SHARE", hashes)})

    async def _write_group_partitions(self, first: dict[str, Row]) -> None:
        await self._ensure_partitions(
            [r.started_us for r in first.values() if isinstance(r, SessionRow)], surveys=False)
        await self._ensure_partitions(
            [r.shown_us for r in first.values() if isinstance(r, SurveyRow)], sessions=False)

    async def _write_transaction(
        self, uploads: list[Upload]
    ) -> tuple[dict[int, TokenRefusedError], set[str], int]:
        pool = self._pool
        assert pool is not None
        async with pool.acquire() as conn, conn.transaction():
            # An upload is answered only once its records are on disk, whatever the
            # server's or the role's default (SET LOCAL: fine behind pgbouncer too).
            await conn.execute("SET LOCAL synchronous_commit TO on; "
                               f"SELECT pg_advisory_xact_lock_shared({_LOCK_CLASS}, {_LOCK_REBUILD})")
            refused = await self._refusals(conn, uploads)
            first: dict[str, Row] = {}
            for i, u in enumerate(uploads):
                if i not in refused:
                    for r in u.rows:
                        first.setdefault(r.id, r)
            locks = sorted({_lock_key(r.id) for r in first.values() if isinstance(r, SessionRow)}
                           | {_lock_key(r.session_id) for r in first.values()
                              if isinstance(r, SurveyRow) and r.session_id is not None})
            ids = sorted(first)
            times = [_time_of(first[i]) for i in ids]
            # In key order, in one statement: no two writers wait for each other in a cycle.
            await conn.execute(
                "SELECT count(pg_advisory_xact_lock(k)) FROM "
                "(SELECT k FROM unnest($1::bigint[]) k ORDER BY k) t", locks)
            returned = await conn.fetch(
                "INSERT INTO record_ids (id, t_us) SELECT * FROM unnest($1::uuid[], $2::bigint[]) "
                "ON CONFLICT (id) DO NOTHING RETURNING id", ids, times)
            new = {str(r[0]) for r in returned}
            sessions = [r for i, r in first.items() if i in new and isinstance(r, SessionRow)]
            surveys = [r for i, r in first.items() if i in new and isinstance(r, SurveyRow)]
            try:
                await self._store_new(conn, sessions, surveys)
            except asyncpg.CheckViolationError as exc:
                if "no partition" in str(exc) or \
                        str(getattr(exc, "constraint_name", "")).endswith("_default_outside"):
                    raise _Retry() from exc
                raise
            # The alerts in the same transaction as the records that raise them.
            dropped = await write_postgres(conn, self.outbox, uploads,
                                           _results(uploads, refused, new))
        return refused, new, dropped

    async def _store_new(
        self, conn: asyncpg.Connection, sessions: list[SessionRow], surveys: list[SurveyRow]
    ) -> None:
        """Insert new rows and keep the aggregates; the same steps as the SQLite store."""
        deltas = Deltas()
        new_session_ids = [s.id for s in sessions]
        new_survey_ids = {v.id for v in surveys}
        if surveys:
            await conn.copy_records_to_table(
                "surveys", records=surveys, columns=SURVEY_COLUMNS)
        surveyed: set[str] = set()
        their_surveys: list[Any] = []
        if new_session_ids:
            # The new sessions' surveys, new or stored earlier, in one look-up.
            their_surveys = await conn.fetch(
                f"SELECT id, session_id, {', '.join(SURVEY_FACT_COLUMNS)} FROM surveys "
                "WHERE session_id = ANY($1::uuid[])", new_session_ids)
            surveyed = {str(r[1]) for r in their_surveys}
            # Copied as they are, ``surveyed`` left to its default; the few sessions whose
            # survey is here already get their own copy.
            plain = [s for s in sessions if s.id not in surveyed] if surveyed else sessions
            if plain:
                await conn.copy_records_to_table(
                    "sessions", records=plain, columns=SessionRow._fields)
            if surveyed:
                await conn.copy_records_to_table(
                    "sessions", records=[session_values(s, True) for s in sessions if s.id in surveyed],
                    columns=SESSION_COLUMNS)
        deltas.new_sessions(sessions, surveyed)
        new_sessions = {s.id: s for s in sessions}
        linked = list({v.session_id for v in surveys
                       if v.session_id is not None and v.session_id not in new_sessions})
        # Only the sessions a survey needs (most sessions have none).
        joined: dict[str, Joined] = {
            sid: session_joined(new_sessions[sid]) for sid in
            {v.session_id for v in surveys} | surveyed if sid in new_sessions}
        if linked:
            for r in await conn.fetch(
                f"UPDATE sessions SET surveyed = true WHERE id = ANY($1::uuid[]) AND NOT surveyed "
                f"RETURNING {', '.join(SESSION_FACT_COLUMNS)}", linked):
                facts = session_facts_row(r)
                deltas.session(facts, False, -1)
                deltas.session(facts, True, 1)
            for r in await conn.fetch(
                f"SELECT id, {', '.join(JOINED_COLUMNS)} FROM sessions WHERE id = ANY($1::uuid[])",
                linked):
                joined[str(r[0])] = joined_row(r[1:])
        for v in surveys:
            deltas.survey(survey_facts_of(v), joined.get(v.session_id) if v.session_id else None)
        # Surveys stored earlier whose session arrives now move to its segment and bins.
        for r in their_surveys:
            if str(r[0]) in new_survey_ids:
                continue
            moved = survey_facts_row(r[2:])
            deltas.survey(moved, None, -1)
            deltas.survey(moved, joined[str(r[1])], 1)
        await _apply(conn, deltas)

    async def _locked(self, work: Any) -> Any:
        """Run ``work(conn)`` in a transaction that excludes every ingest (aggregate rebuilds)."""
        pool = self._check_open()
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", _LOCK_CLASS, _LOCK_REBUILD)
                return await work(conn)
        except asyncpg.PostgresError as exc:
            raise StorageError(f"write failed: {exc}") from exc

    async def rebuild_aggregates(self) -> None:
        """Recompute every aggregate from the raw rows (after a bulk load, or to check)."""
        async def work(conn: asyncpg.Connection) -> None:
            days = await conn.fetch(
                f"SELECT DISTINCT {day_sql('started_us', 'postgresql')} FROM sessions UNION "
                f"SELECT DISTINCT {day_sql('shown_us', 'postgresql')} FROM surveys")
            for table in ("agg_sessions", "agg_surveys", "agg_bins"):
                await conn.execute(f"DELETE FROM {table}")
            # Day by day: each statement reads one day's rows through the time indexes.
            await _rebuild_days(conn, [(int(r[0]), int(r[0]) + 1) for r in sorted(days)])

        await self._locked(work)

    # -- reads -------------------------------------------------------------------------------
    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Any]:
        pool = self._check_open()
        try:
            return list(await pool.fetch(sql, *params))
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StorageError(f"read failed: {exc}") from exc

    async def report_data(self, filters: Filters) -> ReportData:
        return await read_report_data(self._fetch, filters, "$")

    async def impact_data(self, filters: Filters) -> ImpactData:
        return await read_impact_data(self._fetch, filters, "$")

    async def session_groups(self, filters: Filters) -> list[SessionGroup]:
        where, params = where_sessions(filters, "$")
        return [session_group_row(r) for r in await self._fetch(session_groups_sql(where), params)]

    async def survey_facts(self, filters: Filters) -> list[SurveyFact]:
        where, params = where_surveys(filters, "$")
        return [survey_fact_row(r) for r in await self._fetch(survey_facts_sql(where), params)]

    async def export_rows(self, kind: str, filters: Filters) -> AsyncIterator[ExportRow]:
        pool = self._check_open()
        if kind == "session":
            where, params = where_sessions(filters, "$")
            sql = ("SELECT raw, box_id, received_us, model, firmware, region, clock_shift_s "
                   f"FROM sessions {where} ORDER BY received_us, id")
        else:
            where, params = where_surveys(filters, "$")
            sql = ("SELECT v.raw, v.box_id, v.received_us, v.model, v.firmware, v.region, "
                   "v.clock_shift_s FROM surveys v LEFT JOIN sessions s ON s.id = v.session_id "
                   f"{where} ORDER BY v.received_us, v.id")
        try:
            # A server-side cursor: memory stays flat however many rows there are.
            async with pool.acquire() as conn, conn.transaction(readonly=True):
                async for r in conn.cursor(sql, *params, prefetch=1000):
                    yield ExportRow(bytes(r[0]), r[1], r[2], r[3], r[4], r[5], r[6])
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StorageError(f"export failed: {exc}") from exc

    async def counts(self) -> dict[str, int]:
        # From the rollup aggregates: exact, and a count(*) over millions of rows is not.
        rows = await self._fetch(
            "SELECT (SELECT coalesce(sum(n), 0) FROM agg_sessions WHERE lvl = 1), "
            "(SELECT coalesce(sum(shown), 0) FROM agg_surveys WHERE lvl = 1)", ())
        return {"sessions": int(rows[0][0]), "surveys": int(rows[0][1])}

    # -- tokens and meta ---------------------------------------------------------------------
    async def _execute(self, sql: str, *params: Any) -> str:
        pool = self._check_open()
        try:
            status: str = await pool.execute(sql, *params)
            return status
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StorageError(f"write failed: {exc}") from exc

    async def add_box_token(self, box_id: str, token_hash: bytes, issued_us: int) -> None:
        await self._execute(
            "INSERT INTO box_tokens (token_hash, box_id, issued_us) VALUES ($1, $2, $3)",
            token_hash, box_id, issued_us)

    async def revoke_box(self, box_id: str) -> int:
        status = await self._execute(
            "UPDATE box_tokens SET revoked = true WHERE box_id = $1 AND NOT revoked", box_id)
        return int(status.split()[-1])

    async def lookup_token(self, token_hash: bytes) -> TokenInfo | None:
        rows = await self._fetch(
            "SELECT box_id, revoked FROM box_tokens WHERE token_hash = $1", (token_hash,))
        return TokenInfo(rows[0][0], bool(rows[0][1])) if rows else None

    async def get_meta(self, key: str) -> str | None:
        rows = await self._fetch("SELECT value FROM nps_meta WHERE key = $1", (key,))
        return str(rows[0][0]) if rows else None

    async def set_meta_once(self, key: str, value: str) -> str:
        await self._execute(
            "INSERT INTO nps_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            key, value)
        kept = await self.get_meta(key)
        assert kept is not None
        return kept

    # -- alert outbox ------------------------------------------------------------------------
    async def outbox_pending(self, limit: int) -> list[OutboxAlert]:
        return pending_rows(await self._fetch(PENDING_SQL.format(p="$1"), (limit,)))

    async def outbox_delete(self, alert_id: str) -> None:
        await self._execute("DELETE FROM alert_outbox WHERE id = $1", alert_id)

    async def outbox_put_once(self, mark_key: str, alert: OutboxAlert) -> bool:
        pool = self._check_open()
        try:
            async with pool.acquire() as conn, conn.transaction():
                status = await conn.execute(
                    "INSERT INTO nps_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) "
                    "DO NOTHING", mark_key, alert.id)
                if status.endswith(" 0"):
                    return False
                await conn.execute(
                    OUTBOX_INSERT.format(p="$1, $2, $3, $4", conflict="",
                                         tail=" ON CONFLICT (id) DO NOTHING"),
                    alert.id, alert.box_id, _us(datetime.now(UTC)), alert.body)
                return True
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StorageError(f"write failed: {exc}") from exc

    # -- deletion and retention ------------------------------------------------------------------
    async def delete_box(self, box_id: str) -> int:
        async def work(conn: asyncpg.Connection) -> int:
            n = await _delete_records(conn, "{p}box_id = $1", "{p}box_id = $1", box_id)
            await conn.execute("DELETE FROM box_tokens WHERE box_id = $1", box_id)
            await conn.execute("DELETE FROM alert_outbox WHERE box_id = $1", box_id)
            return n

        n: int = await self._locked(work)
        return n

    def sql_reader(self) -> tuple[Fetch, str]:
        return self._fetch, "$"

    async def segment_values(self, limit: int = 500) -> dict[str, list[str]]:
        return await read_segment_values(self._fetch, limit)

    async def response_counts(self, filters: Filters) -> dict[str, list[tuple[int, int]]]:
        return await read_response_counts(self._fetch, filters, "$")

    async def purge_before(self, cutoff_us: int) -> int:
        """Delete sessions started and surveys shown before ``cutoff_us``: monthly partitions
        wholly before it are dropped, the rest of the rows deleted; the aggregates follow."""
        async def work(conn: asyncpg.Connection) -> int:
            cut_day = day_of(cutoff_us)
            # Days at or after the cutoff whose counts change: the partial day of the cutoff,
            # surveys kept whose session goes, and sessions kept whose surveys go.
            days: set[int] = {cut_day} if cutoff_us % DAY_US else set()
            days.update(int(r[0]) for r in await conn.fetch(
                f"SELECT DISTINCT {day_sql('v.shown_us', 'postgresql')} FROM surveys v "
                "JOIN sessions s ON s.id = v.session_id WHERE s.started_us < $1 "
                "AND v.shown_us >= $1", cutoff_us))
            orphaned = [r[0] for r in await conn.fetch(
                "SELECT DISTINCT s.id FROM sessions s JOIN surveys v ON v.session_id = s.id "
                "WHERE v.shown_us < $1 AND s.started_us >= $1", cutoff_us)]
            n = 0
            for table in ("sessions", "surveys"):
                for name, hi in await _partitions(conn, table):
                    if hi <= cutoff_us:
                        n += await conn.fetchval(f"SELECT count(*) FROM {name}")
                        await conn.execute(f"DROP TABLE {name}")
                        self._partitions.discard(name)
            n += int((await conn.execute(
                "DELETE FROM sessions WHERE started_us < $1", cutoff_us)).split()[-1])
            n += int((await conn.execute(
                "DELETE FROM surveys WHERE shown_us < $1", cutoff_us)).split()[-1])
            await conn.execute("DELETE FROM record_ids WHERE t_us < $1", cutoff_us)
            if orphaned:
                for r in await conn.fetch(
                    "UPDATE sessions SET surveyed = false WHERE surveyed AND id = ANY($1::uuid[]) "
                    "AND NOT EXISTS (SELECT 1 FROM surveys v WHERE v.session_id = sessions.id) "
                    "RETURNING started_us", orphaned):
                    days.add(day_of(r[0]))
            for table in ("agg_sessions", "agg_surveys", "agg_bins"):
                await conn.execute(
                    f"DELETE FROM {table} WHERE (lvl < {HOURLY} AND day < $1) "
                    f"OR (lvl >= {HOURLY} AND day < $2)", cut_day, cut_day * 24)
            await _rebuild_days(conn, day_ranges(d for d in days if d >= cut_day))
            return n

        n: int = await self._locked(work)
        return n

    async def bad_detractors(
        self, filters: Filters, bad: BadQuality, limit: int
    ) -> list[DetractorRow]:
        where, params = where_surveys(filters, "$")
        k = len(params)
        cond = (f"v.outcome = 'answered' AND v.score <= 6 AND (s.failed "
                f"OR s.rebuffer_ratio > ${k + 1} OR s.startup_ms > ${k + 2} "
                f"OR s.avg_bitrate_kbps <= ${k + 3})")
        where = f"{where} AND {cond}" if where else f"WHERE {cond}"
        rows = await self._fetch(
            "SELECT v.id::text, v.box_id, v.shown_us, v.score, v.reason, v.region, v.model, "
            "v.firmware, s.id::text, s.channel, s.content_type, s.startup_ms, s.watch_s, "
            "s.rebuffer_count, s.rebuffer_ratio, s.avg_bitrate_kbps, s.failed "
            f"FROM surveys v JOIN sessions s ON s.id = v.session_id {where} "
            f"ORDER BY v.shown_us DESC, v.id LIMIT ${k + 4}",
            [*params, bad.rebuffer_ratio_above, bad.startup_ms_above,
             bad.bitrate_kbps_at_most, limit],
        )
        return [DetractorRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10],
                             r[11], r[12], r[13], r[14], r[15], bool(r[16])) for r in rows]


def _text_array(values: Sequence[str]) -> str:
    """A PostgreSQL array literal of text values: each element double-quoted, with
    backslashes and double quotes escaped by a backslash (the array input syntax), so
    that any string, empty included, reads back as itself. Far cheaper than asyncpg's
    encoder of a list, which checks several abstract types per element."""
    quoted: dict[str, str] = {}
    out = []
    for v in values:
        q = quoted.get(v)
        if q is None:
            q = quoted[v] = '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        out.append(q)
    return "{" + ",".join(out) + "}"


async def _apply(conn: asyncpg.Connection, deltas: Deltas) -> None:
    """Add the deltas to the aggregates, each table's rows in key order."""
    for table, rows in (("agg_sessions", deltas.session_rows()),
                        ("agg_surveys", deltas.survey_rows()),
                        ("agg_bins", deltas.bin_rows())):
        if rows:
            # Integers as '{1,2,3}' literals: joining them is C work in Python and parsing
            # them is quick for the server, where asyncpg's array encoder costs several
            # isinstance checks per element (a third of the write path in a profile).
            # Segment values go the same way, each double-quoted (see _text_array).
            columns: list[Any] = []
            for i, col in enumerate(zip(*rows, strict=True)):
                if 2 <= i < 2 + len(SEGMENT):
                    columns.append(_text_array(col))
                else:
                    columns.append("{" + ",".join(map(str, col)) + "}")
            await conn.execute(_UPSERTS[table], *columns)


async def _rebuild_days(conn: asyncpg.Connection, ranges: Sequence[tuple[int, int]]) -> None:
    """Recompute the aggregates of whole days from the raw rows (inside a transaction)."""
    for d0, d1 in ranges:
        for sql, kind in rebuild_sql("postgresql", "$"):
            # No command timeout: a long range is big work, done under the rebuild lock.
            await conn.execute(sql, *rebuild_params(kind, d0, d1), timeout=86_400)


async def _delete_records(conn: asyncpg.Connection, session_cond: str, survey_cond: str,
                          param: Any) -> int:
    """Delete matching sessions and surveys (``{p}`` is the table alias) and keep the
    aggregates, the surveyed flags and the id registry right; as the SQLite store does."""
    def cond(c: str, alias: str) -> str:
        return c.format(p=alias)

    days: set[int] = set()
    for sql in (
        f"SELECT DISTINCT {day_sql('s.started_us', 'postgresql')} FROM sessions s WHERE {cond(session_cond, 's.')}",
        f"SELECT DISTINCT {day_sql('v.shown_us', 'postgresql')} FROM surveys v WHERE {cond(survey_cond, 'v.')}",
        f"SELECT DISTINCT {day_sql('v.shown_us', 'postgresql')} FROM surveys v "
        f"JOIN sessions s ON s.id = v.session_id WHERE {cond(session_cond, 's.')}",
    ):
        days.update(int(r[0]) for r in await conn.fetch(sql, param))
    linked = [r[0] for r in await conn.fetch(
        f"SELECT DISTINCT v.session_id FROM surveys v WHERE {cond(survey_cond, 'v.')} "
        "AND v.session_id IS NOT NULL", param)]
    gone = [r[0] for r in await conn.fetch(
        f"DELETE FROM sessions WHERE {cond(session_cond, '')} RETURNING id", param)]
    gone += [r[0] for r in await conn.fetch(
        f"DELETE FROM surveys WHERE {cond(survey_cond, '')} RETURNING id", param)]
    if gone:
        await conn.execute("DELETE FROM record_ids WHERE id = ANY($1::uuid[])", gone)
    if linked:
        for r in await conn.fetch(
            "UPDATE sessions SET surveyed = false WHERE surveyed AND id = ANY($1::uuid[]) AND NOT "
            "EXISTS (SELECT 1 FROM surveys v WHERE v.session_id = sessions.id) RETURNING started_us",
            linked):
            days.add(day_of(r[0]))
    await _rebuild_days(conn, day_ranges(days))
    return len(gone)


async def _partitions(conn: asyncpg.Connection, table: str) -> list[tuple[str, int]]:
    """(name, upper bound in µs) of each partition of ``table``."""
    rows = await conn.fetch(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass", table)
    out = []
    for name, bound in rows:
        if bound == "DEFAULT":
            continue
        # FOR VALUES FROM ('lo') TO ('hi')
        hi = bound.rsplit("(", 1)[-1].strip("')")
        out.append((str(name), int(hi)))
    return out
