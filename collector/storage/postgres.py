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
* write groups append their aggregate counts to delta tables (no row two writers share);
  a fold moves them into the aggregates with ``INSERT ... ON CONFLICT DO UPDATE SET n = n +
  excluded.n`` in key order, one transaction at a time (a try-advisory lock the others
  skip), so writers never wait on hot aggregate rows nor deadlock;
* recomputing aggregates (deletions, retention) takes an exclusive advisory lock that
  every ingest transaction takes shared.

Records live in tables partitioned by month (``sessions`` on ``started_us``, ``surveys`` on
``shown_us``); partitions are made ahead of time at start and on demand at ingest, and
:meth:`PostgresStorage.purge_before` drops those wholly before the cutoff.

Pool size and timeouts come from query parameters of the ``--db`` URL, which are removed
before the URL reaches the server: ``pool_min`` (default 2), ``pool_max`` (10),
``connect_timeout`` (10 s), ``command_timeout`` (60 s), ``start_timeout`` (120 s),
``writers`` (2: write groups written at once, each on its own connection, as two
instances would) and ``pgbouncer=1`` behind pgbouncer in transaction mode (no
prepared-statement cache).

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
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from protocol.timefmt import from_micros, to_micros
from protocol.units import DAY_US

from ..errors import ConfigError, SchemaError, StorageError, StoreClosedError, TokenRefusedError
from ..model import Filters, Row, SessionRow, SurveyRow, TokenInfo
from ..settings import Settings
from . import store_logic as logic
from .aggregate_sql import day_ranges, fold_statements
from .aggregates import DELTA, HOURLY, day_of, day_sql
from .base import ExportRow
from .group_commit import (
    GroupCommitQueue,
    Upload,
    WriteResult,
    first_rows,
    refusals,
    results_of,
    upload_token_hashes,
)
from .migrations import upgrade_postgres
from .outbox import (
    OUTBOX_INSERT,
    OutboxAlert,
    write_postgres,
)
from .schema import PARTITION_MAX_US, PARTITION_MIN_US
from .segments import Fetch
from .sql import SESSION_COLUMNS, SURVEY_COLUMNS
from .sql_store import SqlStore, export_sql
from .survey_session import SESSION_VALUES, clear_sql

log = logging.getLogger("collector.storage")

#: Advisory lock keys (the two-int form, so they never meet the one-bigint keys taken on
#: session ids): aggregate rebuilds (shared by every ingest) and partitions; schema changes
#: take key 1 (:mod:`.migrations`).
_LOCK_CLASS = 0x4E5053  # "NPS"
_LOCK_REBUILD = 2
_LOCK_PARTITIONS = 3
#: Folding the aggregates' deltas: one instance at a time (the others' groups skip it).
_LOCK_FOLD = 4



#: Monthly partitions cover 1900 to 2200 (see :mod:`.schema`).
_MIN_US = PARTITION_MIN_US
_MAX_US = PARTITION_MAX_US

_DSN_OPTIONS = ("pool_min", "pool_max", "connect_timeout", "command_timeout", "start_timeout",
                "pgbouncer", "writers")
#: Write groups an instance writes at once by default (the ``writers`` URL option). One
#: writer left the 2-CPU machine half idle during ingest, each group waiting on its round
#: trips and its commit's flush; two wrote 12-16 % more records a second (medians of three
#: side-by-side rounds), three no more than two (bench/README.md, "Storage write path").
WRITERS = 2
#: Backoff between connection attempts at start: first, most (seconds).
START_RETRY_FIRST_S = 1.0
START_RETRY_MAX_S = 15.0
#: ``work_mem`` for the statements of ``sql_reader(large=True)``: the at-risk ranking's
#: hash table of a few hundred thousand boxes (about 45 MB at 200,000), which the default
#: 4 MB spilled to disk in 9 batches per worker (the query 3.9 s against 2.7 s at 10 M
#: sessions). Per hash table and worker, for that one statement.
LARGE_WORK_MEM = "64MB"


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
    dt = from_micros(us)
    start = datetime(dt.year, dt.month, 1, tzinfo=UTC)
    end = datetime(start.year + (start.month == 12), start.month % 12 + 1, 1, tzinfo=UTC)
    return f"p{start.year:04d}{start.month:02d}", to_micros(start), to_micros(end)


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


class _Retry(Exception):
    """The group meets a partition that was dropped meanwhile: make it and write again."""


#: Every column of ``surveys``: those sent, then the session values filled in at ingest.
_SURVEY_TABLE = (*SURVEY_COLUMNS, *SESSION_VALUES)
#: A group's new rows are copied into temporary tables first (``ON COMMIT DELETE ROWS``:
#: empty in every transaction), marked, aggregated from, and moved into the partitioned
#: tables by one statement each.
DIALECT = logic.Dialect(
    name="postgresql", style="$",
    new_sessions="new_sessions", new_surveys="new_surveys",
    mark_table="new_sessions", mark_cond="true",
    old_survey="NOT EXISTS (SELECT 1 FROM new_surveys n WHERE n.id = v.id)",
    publish={
        "sessions": f"INSERT INTO sessions ({', '.join(SESSION_COLUMNS)}) "
                    f"SELECT {', '.join(SESSION_COLUMNS)} FROM new_sessions",
        # With the session values filled in the temporary table (survey_session).
        "surveys": f"INSERT INTO surveys ({', '.join(_SURVEY_TABLE)}) "
                   f"SELECT {', '.join(_SURVEY_TABLE)} FROM new_surveys",
    },
    in_ids_param=" = ANY($1::uuid[])",
    survey_table="new_surveys", survey_cond="true",
)
_GROUP_STATEMENTS = DIALECT.group_statements()
_FOLD = tuple(fold_statements("postgresql"))
#: Made in each write transaction where missing (so also behind pgbouncer, where the
#: next transaction may run on another server connection); quiet when they exist.
_NEW_TABLES = (
    "SET LOCAL client_min_messages TO warning; "
    "CREATE TEMP TABLE IF NOT EXISTS new_sessions (LIKE sessions INCLUDING DEFAULTS) "
    "ON COMMIT DELETE ROWS; "
    "CREATE TEMP TABLE IF NOT EXISTS new_surveys (LIKE surveys INCLUDING DEFAULTS) "
    "ON COMMIT DELETE ROWS"
)


def _ops(conn: asyncpg.Connection) -> Callable[[logic.Op], Awaitable[Any]]:
    """Performs :mod:`~collector.storage.store_logic` operations on ``conn``."""
    async def do(op: logic.Op) -> Any:
        if isinstance(op, logic.Run):
            # No command timeout for a rebuild: a long range is big work, done under the
            # rebuild lock.
            timeout = 86_400 if op.long else None
            if op.fetch:
                return await conn.fetch(op.sql, *op.params, timeout=timeout)
            await conn.execute(op.sql, *op.params, timeout=timeout)
            return None
        if isinstance(op, logic.RunIds):
            return await conn.fetch(op.sql, list(op.ids))
        if isinstance(op, logic.Insert):
            columns = SessionRow._fields if op.table == "sessions" else SurveyRow._fields
            await conn.copy_records_to_table(f"new_{op.table}", records=op.rows, columns=columns)
            return None
        if isinstance(op, logic.Mark):
            await conn.execute(_NEW_TABLES)
            return None
        await conn.execute("DELETE FROM record_ids WHERE id = ANY($1::uuid[])", list(op.ids))
        return None

    return do


class PostgresStorage(SqlStore):
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
            writers = int(opts["writers"]) if "writers" in opts else None
        except ValueError as exc:
            raise ConfigError(f"db: a pool option is not a number ({exc})") from None
        if not 1 <= self._pool_min <= self._pool_max:
            raise ConfigError("db: need 1 <= pool_min <= pool_max")
        # A connection left for reads, but for a pool of one (which it was before writers).
        most = max(1, self._pool_max - 1)
        if writers is not None and not 1 <= writers <= most:
            raise ConfigError(f"db: need 1 <= writers <= {most} with pool_max={self._pool_max} "
                              "(reads need a connection too)")
        self._writers = writers if writers is not None else min(WRITERS, most)
        self._pgbouncer = opts.get("pgbouncer", "0") in ("1", "true", "yes")
        self._pool: asyncpg.Pool | None = None
        self._writes = GroupCommitQueue(
            self._write_group, name="postgres-writer", max_batches=settings.write_queue_batches,
            max_records=settings.group_commit_records, retry_after_s=settings.retry_after_s,
            may_be_one_upload=_may_be_one_upload, writers=self._writers,
        )
        #: Partitions known to exist: only saves a round trip; the database decides.
        self._partitions: set[str] = set()
        self._state = "new"
        self._fold = logic.FoldClock()

    # -- life cycle ----------------------------------------------------------------------
    async def open(self) -> None:
        if self._state != "new":
            raise StorageError(f"store {self.location} was already opened")
        try:
            await self._connect_with_retries()
            await self._migrate()
            now = to_micros(datetime.now(UTC))
            # Ahead of time: this month and the next two, so ingest rarely makes one.
            await self._ensure_partitions([now, now + 31 * DAY_US, now + 62 * DAY_US])
        except SchemaError:
            await self._release()
            raise
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            await self._release()
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

    async def _release(self) -> None:
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
    async def _write_group(self, uploads: list[Upload]) -> list[WriteResult]:
        every: dict[str, Row] = {}
        for u in uploads:
            for r in u.rows:
                every.setdefault(r.id, r)
        await self._write_group_partitions(every)
        for attempt in range(5):
            try:
                refused, new, dropped, folded = await self._write_transaction(uploads)
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
            refused, new, dropped, folded = await self._write_transaction(uploads)
        self._fold.stored(len(every), folded)
        if dropped and self.outbox is not None:
            self.outbox.dropped(dropped)
        return results_of(uploads, refused, new)

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
    ) -> tuple[dict[int, TokenRefusedError], set[str], int, bool]:
        pool = self._pool
        assert pool is not None
        async with pool.acquire() as conn, conn.transaction():
            # An upload is answered only once its records are on disk, whatever the
            # server's or the role's default (SET LOCAL: fine behind pgbouncer too).
            await conn.execute("SET LOCAL synchronous_commit TO on; "
                               f"SELECT pg_advisory_xact_lock_shared({_LOCK_CLASS}, {_LOCK_REBUILD})")
            refused = await self._refusals(conn, uploads)
            first = first_rows(uploads, refused)
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
            # A fold when due, unless another instance is folding (its fold takes these
            # deltas, or the next of ours does).
            fold = _FOLD if self._fold.due and await conn.fetchval(
                "SELECT pg_try_advisory_xact_lock($1, $2)", _LOCK_CLASS, _LOCK_FOLD) else ()
            try:
                await logic.drive_async(logic.store_new(DIALECT, _GROUP_STATEMENTS, sessions, surveys,
                                                        fold), _ops(conn))
            except asyncpg.CheckViolationError as exc:
                if "no partition" in str(exc) or \
                        str(getattr(exc, "constraint_name", "")).endswith("_default_outside"):
                    raise _Retry() from exc
                raise
            # The alerts in the same transaction as the records that raise them.
            dropped = await write_postgres(conn, self.outbox, uploads,
                                           results_of(uploads, refused, new))
        return refused, new, dropped, bool(fold)

    async def _locked(self, work: Any) -> Any:
        """logic.Run ``work(conn)`` in a transaction that excludes every ingest (aggregate rebuilds)."""
        pool = self._check_open()
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", _LOCK_CLASS, _LOCK_REBUILD)
                return await work(conn)
        except asyncpg.PostgresError as exc:
            raise StorageError(f"write failed: {exc}") from exc

    async def fold_aggregates(self) -> None:
        pool = self._check_open()
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    f"SELECT pg_advisory_xact_lock_shared({_LOCK_CLASS}, {_LOCK_REBUILD}); "
                    f"SELECT pg_advisory_xact_lock({_LOCK_CLASS}, {_LOCK_FOLD})")
                for sql in _FOLD:
                    await conn.execute(sql)
        except asyncpg.PostgresError as exc:
            raise StorageError(f"write failed: {exc}") from exc
        self._fold.stored(0, True)

    async def rebuild_aggregates(self) -> None:
        """Recompute every aggregate from the raw rows (after a bulk load, or to check)."""
        async def work(conn: asyncpg.Connection) -> None:
            await logic.drive_async(logic.rebuild_all(DIALECT), _ops(conn))

        await self._locked(work)

    # -- reads -------------------------------------------------------------------------------
    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Any]:
        pool = self._check_open()
        try:
            return list(await pool.fetch(sql, *params))
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StorageError(f"read failed: {exc}") from exc

    async def _fetch_large(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """:meth:`_fetch` with :data:`LARGE_WORK_MEM` for the statement (``SET LOCAL``: the
        connection goes back to the pool with the server's setting)."""
        pool = self._check_open()
        try:
            async with pool.acquire() as conn, conn.transaction(readonly=True):
                await conn.execute(f"SET LOCAL work_mem = '{LARGE_WORK_MEM}'")
                return list(await conn.fetch(sql, *params))
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StorageError(f"read failed: {exc}") from exc

    async def export_rows(self, kind: str, filters: Filters) -> AsyncIterator[ExportRow]:
        pool = self._check_open()
        sql, params = export_sql(kind, filters, "$", ("received_us, id", "v.received_us, v.id"))
        try:
            # A server-side cursor: memory stays flat however many rows there are.
            async with pool.acquire() as conn, conn.transaction(readonly=True):
                async for r in conn.cursor(sql, *params, prefetch=1000):
                    yield ExportRow(bytes(r[0]), r[1], r[2], r[3], r[4], r[5], r[6])
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StorageError(f"export failed: {exc}") from exc

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

    async def set_meta_once(self, key: str, value: str) -> str:
        await self._execute(
            "INSERT INTO nps_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            key, value)
        kept = await self.get_meta(key)
        assert kept is not None
        return kept

    # -- alert outbox ------------------------------------------------------------------------
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
                    alert.id, alert.box_id, to_micros(datetime.now(UTC)), alert.body)
                return True
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StorageError(f"write failed: {exc}") from exc

    # -- deletion and retention ------------------------------------------------------------------
    async def delete_box(self, box_id: str) -> int:
        async def work(conn: asyncpg.Connection) -> int:
            n = await logic.drive_async(
                logic.delete_records(DIALECT, "{p}box_id = $1", "{p}box_id = $1", box_id), _ops(conn))
            await conn.execute("DELETE FROM box_tokens WHERE box_id = $1", box_id)
            await conn.execute("DELETE FROM alert_outbox WHERE box_id = $1", box_id)
            return n

        n: int = await self._locked(work)
        return n

    def sql_reader(self, *, large: bool = False) -> tuple[Fetch, str]:
        return (self._fetch_large if large else self._fetch), "$"

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
            # Surveys kept whose session goes no longer know its values.
            await conn.execute(clear_sql(
                "shown_us >= $1 AND session_id IN (SELECT s.id FROM sessions s WHERE s.started_us < $1)"),
                cutoff_us)
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
                await conn.execute(f"DELETE FROM {DELTA[table]} WHERE hour < $1", cut_day * 24)
            await logic.drive_async(logic.rebuild_days(DIALECT, day_ranges(d for d in days if d >= cut_day)),
                              _ops(conn))
            return n

        n: int = await self._locked(work)
        return n

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
