"""Numbered schema migrations, shared by both backends and recorded in the database.

The schema's version is kept in ``nps_meta`` under ``schema_version``. A database is
brought to the latest version (:data:`LATEST`) by the ``nps-collector migrate`` command,
and by every store at open (``serve`` and the other commands) when each pending migration
is marked safe there (:attr:`Migration.at_start`). A database newer than the code is
refused (:class:`~collector.errors.SchemaTooNewError`): an older collector would misread it.

* A fresh database is made at the latest schema straight from
  :mod:`collector.storage.schema`, in one transaction that also records :data:`LATEST`.
* An older one gets its pending migrations, all in **one** transaction that ends by
  recording the new version: a migration killed half-way leaves the database as it was,
  at its old version. Aggregate rebuilds asked for by any pending migration run once, at
  the end, when every column they read exists.
* Databases made before versions were recorded are recognised: PostgreSQL ones record
  ``"1"`` already; SQLite ones without a version are at 1 when their sessions have the
  fine-bin columns and at 0 (before the aggregates existed) when not.

A migration is a list of steps from a small vocabulary, so that a new metric is one
entry (:class:`AddMetric`), e.g.::

    Migration(3, "video_height", (AddMetric("video_height", value=height_from_raw),))

which adds the metric's four session columns, fills them from the stored records, covers
the new bucket in the time index and rebuilds the aggregates. New counts in the aggregate
vectors only (say, the start funnel's) need no more than ``(RebuildAggregates(),)``: the
aggregate tables are made again as the schema now declares them.

Columns are added as :mod:`~collector.storage.schema` declares them; tables missing are
made from there. Steps that only add columns or tables and rebuild the aggregates are
safe at ``serve`` start (they run in the transaction described above, while the server
does not listen yet); a rebuild of a large database takes a while (minutes at millions of
sessions): run ``nps-collector migrate`` first, which prints its progress.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

from ..errors import MigrationRequiredError, SchemaError, SchemaTooNewError
from ..fine_bins import fine_bin_pos
from ..metrics import BY_NAME, bucket_index
from .aggregate_sql import rebuild_params, rebuild_sql
from .aggregates import day_sql
from .schema import TABLE, TABLES, Dialect, ddl
from .survey_session import fill_sql

if TYPE_CHECKING:
    import asyncpg

#: The ``nps_meta`` key holding the schema's version.
VERSION_KEY: Final = "schema_version"
#: PostgreSQL advisory lock keys (two-int form, as the store's): schema changes, and
#: aggregate rebuilds (which every ingest transaction takes shared).
_LOCK_CLASS: Final = 0x4E5053  # "NPS"
_LOCK_SCHEMA: Final = 1
_LOCK_REBUILD: Final = 2
#: Rows read and written per round trip by :class:`Backfill`.
BACKFILL_CHUNK: Final = 5_000

Progress = Callable[[str], None]


# -- the vocabulary -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CreateTables:
    """Make the tables of the schema that the database lacks, with their indexes (all of
    them when ``tables`` is empty); tables already there are left alone."""

    tables: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AddColumns:
    """Add columns to ``table`` as the schema declares them; ones already there are skipped
    (a NOT NULL column needs a default there, as the table has rows)."""

    table: str
    columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Backfill:
    """Set ``targets`` on every row of ``table`` from its ``sources``, in Python:
    ``compute`` maps a row's source values to its target values (in order). Rows are read
    by primary key in chunks of :data:`BACKFILL_CHUNK`, with progress told."""

    table: str
    sources: tuple[str, ...]
    targets: tuple[str, ...]
    compute: Callable[[tuple[Any, ...]], Sequence[Any]]


@dataclass(frozen=True, slots=True)
class BackfillSql:
    """``UPDATE table SET column = expression, ...`` in one statement; the expressions
    must mean the same in both dialects (or use :class:`RunSql`)."""

    table: str
    set: Mapping[str, str]
    where: str = ""


@dataclass(frozen=True, slots=True)
class RecreateIndex:
    """Drop index ``name`` of ``table`` and make it again as the schema declares it."""

    table: str
    name: str


@dataclass(frozen=True, slots=True)
class RunSql:
    """Statements per dialect, for what the other steps cannot say."""

    sqlite: tuple[str, ...] = ()
    postgresql: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AddMetric:
    """A new QoS metric of the metric table (:mod:`collector.metrics`), in one step: its
    four session columns added; on every stored session its value computed by ``value``
    from the session's ``sources`` (by default its raw JSON as received; None where it
    cannot be known), and its bucket, fine bin and position from that value; the
    ``sessions_started`` index made again to cover its bucket; the aggregates rebuilt.
    ``value`` None leaves the columns null (no stored session can have it)."""

    metric: str
    value: Callable[[tuple[Any, ...]], float | None] | None = None
    sources: tuple[str, ...] = ("raw",)

    def steps(self) -> tuple[Step, ...]:
        """What it stands for, in the other steps' words."""
        metric = BY_NAME[self.metric]
        out: list[Step] = [AddColumns("sessions", metric.columns)]
        if self.value is not None:
            value = self.value

            def derive(sources: tuple[Any, ...]) -> tuple[Any, ...]:
                v = value(sources)
                return (v, bucket_index(metric.name, v), *fine_bin_pos(metric.name, v))

            out.append(Backfill("sessions", self.sources, metric.columns, derive))
        return (*out, RecreateIndex("sessions", "sessions_started"), RebuildAggregates())


@dataclass(frozen=True, slots=True)
class RebuildAggregates:
    """Drop the aggregate tables, make them again as the schema declares them and compute
    them from the raw rows, day by day (once, after every pending migration's other steps)."""


Step = (CreateTables | AddColumns | Backfill | BackfillSql | RecreateIndex | RunSql | AddMetric
        | RebuildAggregates)


@dataclass(frozen=True, slots=True)
class Migration:
    """Migration ``version``: what it brings (``title``), its steps, and whether ``serve``
    may apply it at start (False: only ``nps-collector migrate`` does)."""

    version: int
    title: str
    steps: tuple[Step, ...]
    at_start: bool = True


@dataclass(frozen=True, slots=True)
class Upgrade:
    """What :func:`upgrade` did: the version found (None: an empty database, made at the
    latest) and the version now recorded."""

    found: int | None
    now: int
    applied: tuple[int, ...] = field(default=())


# -- the migrations ---------------------------------------------------------------------------

#: The metrics and derived columns of schema 1, frozen: history does not follow the
#: metric table.
_V1_METRICS: Final = ("rebuffer_ratio", "avg_bitrate_kbps", "startup_ms")
_V1_DERIVED: Final = ("rb_fine", "br_fine", "su_fine", "rb_pos", "br_pos", "su_pos")


#: The session values a survey row keeps from schema 4 (see .survey_session), frozen.
_V4_SURVEY_SESSION: Final = ("channel", "content_type", "rebuffer_ratio", "startup_ms",
                             "avg_bitrate_kbps", "failed", "rb_bucket")
_V4_FILL: Final = fill_sql("surveys", "true", columns=_V4_SURVEY_SESSION)
#: Schema 6 adds the session's video height to the survey row, frozen.
_V6_SURVEY_SESSION: Final = ("video_height",)
_V6_FILL: Final = fill_sql("surveys", "true", columns=_V6_SURVEY_SESSION)


def _fine_v1(values: tuple[Any, ...]) -> tuple[int | None, ...]:
    bins = [fine_bin_pos(m, v) for m, v in zip(_V1_METRICS, values, strict=True)]
    return (*(b[0] for b in bins), *(b[1] for b in bins))


#: Every migration, by version from 1, consecutive.
MIGRATIONS: Final[tuple[Migration, ...]] = (
    # Version 0 is a SQLite store made before the aggregates: this is the upgrade the
    # collector used to do by diffing columns. Version 1 is what the collector of
    # December 2026 (commit 7759866) made.
    Migration(1, "fine bins of the QoS metrics, the report's aggregates, the alert outbox", (
        CreateTables(),
        AddColumns("sessions", _V1_DERIVED),
        Backfill("sessions", _V1_METRICS, _V1_DERIVED, _fine_v1),
        RebuildAggregates(),
    )),
    # The start funnel of contract section 4: agg_sessions gains exited_before_start and
    # start_failures, computed from the stored sessions by the rebuild.
    Migration(2, "the start funnel's session counts (exited_before_start, start_failures)", (
        RebuildAggregates(),
    )),
    # No stored session has a video height: before, the field was an unnamed one, dropped
    # at ingest. Its columns stay null and its bucket counts zero: no backfill, no rebuild.
    # The index of the report's raw reads is made again to cover the new bucket.
    Migration(3, "the video_height metric", (AddMetric("video_height"),)),
    # GET /v1/impact read every survey's session through a join (a look-up per survey on
    # SQLite, a scan of every session on PostgreSQL): each survey row now keeps the values
    # it needs, copied from its session here and at ingest from now on.
    Migration(4, "the session's values kept on each survey row", (
        AddColumns("surveys", _V4_SURVEY_SESSION),
        RunSql(sqlite=(_V4_FILL,), postgresql=(_V4_FILL,)),
    )),
    # Write groups append their aggregate counts to delta tables, folded into the levels
    # every so many records (collector.storage.aggregates): the tables are new and empty.
    Migration(5, "the aggregates' delta tables",
              (CreateTables(("agg_sessions_delta", "agg_surveys_delta", "agg_bins_delta")),)),
    # The dashboard's response rate by bucket joined each survey not answered to its
    # session for the buckets; with every metric's value on the survey row it reads the
    # survey rows alone. Schema 4 kept all but the video height: copied here.
    Migration(6, "the session's video height kept on each survey row", (
        AddColumns("surveys", _V6_SURVEY_SESSION),
        RunSql(sqlite=(_V6_FILL,), postgresql=(_V6_FILL,)),
    )),
    # GET /v1/at-risk averaged each box's risks over the window's sessions by sorting
    # them all by box (SQLite groups by sorting): a box index carrying the model's values
    # lets it walk the boxes in order instead. SQLite only; PostgreSQL is unchanged.
    Migration(7, "the at-risk list's box index (SQLite)", (
        RecreateIndex("sessions", "sessions_box_window"),
        RunSql(sqlite=("DROP INDEX IF EXISTS sessions_box",)),
    )),
)


def _check(migrations: Sequence[Migration]) -> int:
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise SchemaError(f"migrations must be numbered 1, 2, ... in order, not {versions}")
    return len(versions)


#: The version of the schema this code makes and reads.
LATEST: Final = _check(MIGRATIONS)


# -- the databases ------------------------------------------------------------------------------

class Db(Protocol):
    """What a migration needs of a connection, in either dialect."""

    dialect: Dialect
    #: Placeholder style of :func:`~collector.storage.aggregate_sql.rebuild_sql`: ``?`` or ``$``.
    style: str
    location: str

    def ph(self, i: int) -> str:
        """The ``i``-th (from 1) placeholder."""

    async def execute(self, sql: str, *args: Any) -> None:
        """Run one statement."""

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each row of parameters."""

    async def fetch(self, sql: str, *args: Any) -> list[Sequence[Any]]:
        """The rows of a query."""

    async def tables(self) -> set[str]:
        """The names of the tables."""

    async def columns(self, table: str) -> set[str]:
        """The names of ``table``'s columns."""

    def transaction(self) -> contextlib.AbstractAsyncContextManager[None]:
        """A write transaction, that only one migrating process holds at a time."""

    async def lock_aggregates(self) -> None:
        """Keep ingest from writing aggregates until the transaction ends."""


class SqliteDb:
    """A :class:`Db` over a :mod:`sqlite3` connection in autocommit mode (the store's
    writer connection). Its coroutines never wait: :func:`upgrade_sqlite` runs them
    to the end on the calling thread, with no event loop."""

    dialect: Dialect = "sqlite"
    style = "?"

    def __init__(self, conn: sqlite3.Connection, location: str) -> None:
        self.conn = conn
        self.location = location

    def ph(self, i: int) -> str:
        return "?"

    async def execute(self, sql: str, *args: Any) -> None:
        self.conn.execute(sql, args)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    async def fetch(self, sql: str, *args: Any) -> list[Sequence[Any]]:
        return list(self.conn.execute(sql, args).fetchall())

    async def tables(self) -> set[str]:
        return {r[0] for r in self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()}

    async def columns(self, table: str) -> set[str]:
        return {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})").fetchall()}

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        # IMMEDIATE: the write lock first, so a second process migrating waits here and
        # then reads the version this one recorded.
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    async def lock_aggregates(self) -> None:
        return None  # the write transaction already excludes every other writer


class PostgresDb:
    """A :class:`Db` over an asyncpg connection."""

    dialect: Dialect = "postgresql"
    style = "$"

    def __init__(self, conn: asyncpg.Connection, location: str) -> None:
        self.conn = conn
        self.location = location

    def ph(self, i: int) -> str:
        return f"${i}"

    # No client-side timeout: a migration is big work, done once, under the schema lock.
    async def execute(self, sql: str, *args: Any) -> None:
        await self.conn.execute(sql, *args, timeout=86_400)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self.conn.executemany(sql, rows, timeout=86_400)

    async def fetch(self, sql: str, *args: Any) -> list[Sequence[Any]]:
        return list(await self.conn.fetch(sql, *args, timeout=86_400))

    async def tables(self) -> set[str]:
        rows = await self.conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
        return {str(r[0]) for r in rows}

    async def columns(self, table: str) -> set[str]:
        rows = await self.conn.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = $1", table)
        return {str(r[0]) for r in rows}

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        async with self.conn.transaction():
            # Instances starting at once take turns; the second reads the version the
            # first recorded. The server's statement timeout (the store's command
            # timeout) would cancel a long rebuild: not in this transaction.
            await self.conn.execute("SELECT pg_advisory_xact_lock($1, $2)", _LOCK_CLASS, _LOCK_SCHEMA)
            await self.conn.execute("SET LOCAL statement_timeout = 0")
            yield

    async def lock_aggregates(self) -> None:
        await self.conn.execute("SELECT pg_advisory_xact_lock($1, $2)", _LOCK_CLASS, _LOCK_REBUILD)


# -- applying -------------------------------------------------------------------------------------

async def found_version(db: Db) -> int | None:
    """The database's schema version; None for an empty database (no ``sessions``)."""
    tables = await db.tables()
    if "nps_meta" in tables:
        value = await _recorded(db)
        if value is not None:
            try:
                return int(value)
            except ValueError:
                raise SchemaError(f"the database at {db.location} records schema version "
                                  f"{value!r}, which is not a number") from None
    if "sessions" not in tables:
        return None
    # Made before the version was recorded (SQLite, up to schema 1).
    return 1 if set(_V1_DERIVED) <= await db.columns("sessions") else 0


async def upgrade(db: Db, *, at_start: bool, progress: Progress | None = None,
                  migrations: Sequence[Migration] = MIGRATIONS) -> Upgrade:
    """Bring the database to the latest version of ``migrations``, in one transaction.

    ``at_start`` (a store opening): refuse with :class:`MigrationRequiredError` when a
    pending migration is not safe there. A database newer than the code is refused with
    :class:`SchemaTooNewError` either way."""
    latest = _check(migrations)
    say = progress or (lambda _msg: None)
    async with db.transaction():
        found = await found_version(db)
        if found is not None and found > latest:
            raise SchemaTooNewError(
                f"the database at {db.location} is at schema version {found}, but this "
                f"collector knows versions up to {latest} only: a newer collector has "
                "upgraded it. Run that newer collector (or a newer one), or restore a backup "
                "taken before the upgrade; this version would misread the data.")
        if found is None:
            # Empty: made at the latest schema directly.
            for stmt in ddl(db.dialect):
                await db.execute(stmt)
            await _record(db, latest)
            return Upgrade(None, latest)
        pending = [m for m in migrations if m.version > found]
        if at_start:
            unsafe = [m for m in pending if not m.at_start]
            if unsafe:
                raise MigrationRequiredError(
                    f"the database at {db.location} is at schema version {found}; migration "
                    f"{unsafe[0].version} ({unsafe[0].title}) is not applied at start: stop "
                    f"every collector on it and run `nps-collector migrate --db URL` first")
        rebuild = False
        for m in pending:
            say(f"migration {m.version}: {m.title}")
            for step in (s for given in m.steps for s in _expanded(given)):
                if isinstance(step, RebuildAggregates):
                    rebuild = True
                else:
                    await _apply(db, step, say)
        if rebuild:
            await _rebuild_aggregates(db, say)
        # Also a database made before versions were recorded, with nothing pending.
        if pending or await _recorded(db) != str(latest):
            await _record(db, latest)
        return Upgrade(found, latest, tuple(m.version for m in pending))


def _expanded(step: Step) -> tuple[Step, ...]:
    return step.steps() if isinstance(step, AddMetric) else (step,)


async def _recorded(db: Db) -> str | None:
    rows = await db.fetch(f"SELECT value FROM nps_meta WHERE key = {db.ph(1)}", VERSION_KEY)
    return str(rows[0][0]) if rows else None


async def _record(db: Db, version: int) -> None:
    await db.execute(
        f"INSERT INTO nps_meta (key, value) VALUES ({db.ph(1)}, {db.ph(2)}) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value", VERSION_KEY, str(version))


async def _apply(db: Db, step: Step, say: Progress) -> None:
    if isinstance(step, CreateTables):
        have = await db.tables()
        for t in TABLES:
            if t.name not in have and (not step.tables or t.name in step.tables):
                for stmt in t.create(db.dialect):
                    await db.execute(stmt)
    elif isinstance(step, AddColumns):
        have = await db.columns(step.table)
        for name in step.columns:
            if name not in have:
                await db.execute(TABLE[step.table].add_column(name, db.dialect))
    elif isinstance(step, Backfill):
        await _backfill(db, step, say)
    elif isinstance(step, BackfillSql):
        sets = ", ".join(f"{c} = {e}" for c, e in step.set.items())
        await db.execute(f"UPDATE {step.table} SET {sets}{f' WHERE {step.where}' if step.where else ''}")
    elif isinstance(step, RecreateIndex):
        await db.execute(f"DROP INDEX IF EXISTS {step.name}")
        for stmt in TABLE[step.table].create(db.dialect):
            if stmt.startswith(f"CREATE INDEX IF NOT EXISTS {step.name} "):
                await db.execute(stmt)
    elif isinstance(step, RunSql):
        for stmt in step.sqlite if db.dialect == "sqlite" else step.postgresql:
            await db.execute(stmt)
    else:  # pragma: no cover - upgrade() defers RebuildAggregates and expands AddMetric
        raise SchemaError(f"unknown migration step {step!r}")


async def _backfill(db: Db, step: Backfill, say: Progress) -> None:
    key = TABLE[step.table].primary_key
    if len(key) != 1:
        raise SchemaError(f"Backfill needs a one-column primary key; {step.table} has {key}")
    k = key[0]
    total = (await db.fetch(f"SELECT count(*) FROM {step.table}"))[0][0]
    sets = ", ".join(f"{c} = {db.ph(i + 1)}" for i, c in enumerate(step.targets))
    update = f"UPDATE {step.table} SET {sets} WHERE {k} = {db.ph(len(step.targets) + 1)}"
    head = f"SELECT {k}, {', '.join(step.sources)} FROM {step.table}"
    last: Any = None
    done = 0
    say(f"  backfill {step.table} ({', '.join(step.targets)}): 0/{total} rows")
    while True:
        if last is None:
            rows = await db.fetch(f"{head} ORDER BY {k} LIMIT {BACKFILL_CHUNK}")
        else:
            rows = await db.fetch(f"{head} WHERE {k} > {db.ph(1)} ORDER BY {k} "
                                  f"LIMIT {BACKFILL_CHUNK}", last)
        if not rows:
            break
        await db.executemany(update, [(*step.compute(tuple(r[1:])), r[0]) for r in rows])
        last = rows[-1][0]
        done += len(rows)
        say(f"  backfill {step.table}: {done}/{total} rows")


async def _rebuild_aggregates(db: Db, say: Progress) -> None:
    await db.lock_aggregates()
    for t in TABLES:
        if t.derived:
            await db.execute(f"DROP TABLE IF EXISTS {t.name}")
            for stmt in t.create(db.dialect):
                await db.execute(stmt)
    rows = await db.fetch(
        f"SELECT DISTINCT {day_sql('started_us', db.dialect)} FROM sessions UNION "
        f"SELECT DISTINCT {day_sql('shown_us', db.dialect)} FROM surveys")
    days = sorted(int(r[0]) for r in rows)
    statements = rebuild_sql(db.style)
    say(f"  rebuilding the aggregates of {len(days)} day(s)")
    # Day by day: each statement reads one day's rows through the time indexes.
    for i, d in enumerate(days, 1):
        for sql, kind in statements:
            await db.execute(sql, *rebuild_params(kind, d, d + 1))
        if i % 10 == 0 or i == len(days):
            say(f"  rebuilt {i}/{len(days)} day(s)")


# -- entry points ---------------------------------------------------------------------------------

def _run_to_end(coro: Coroutine[Any, Any, Upgrade]) -> Upgrade:
    """Run a coroutine that never waits (a :class:`SqliteDb`'s) on this thread."""
    try:
        coro.send(None)
    except StopIteration as done:
        result: Upgrade = done.value
        return result
    coro.close()
    raise SchemaError("a SQLite migration waited on something; it must run to its end at once")


def upgrade_sqlite(conn: sqlite3.Connection, location: str, *, at_start: bool,
                   progress: Progress | None = None,
                   migrations: Sequence[Migration] = MIGRATIONS) -> Upgrade:
    """:func:`upgrade` on a SQLite connection in autocommit mode, on the calling thread."""
    return _run_to_end(upgrade(SqliteDb(conn, location), at_start=at_start, progress=progress,
                               migrations=migrations))


async def upgrade_postgres(conn: asyncpg.Connection, location: str, *, at_start: bool,
                           progress: Progress | None = None,
                           migrations: Sequence[Migration] = MIGRATIONS) -> Upgrade:
    """:func:`upgrade` on an asyncpg connection."""
    return await upgrade(PostgresDb(conn, location), at_start=at_start, progress=progress,
                         migrations=migrations)


async def migrate_url(url: str, progress: Progress | None = None,
                      migrations: Sequence[Migration] = MIGRATIONS) -> Upgrade:
    """``nps-collector migrate``: every pending migration of the database at ``--db``
    ``url``, on a connection of its own (no store is opened, so no timeout applies)."""
    from ..settings import parse_db_url

    parsed = parse_db_url(url)
    if parsed.scheme == "sqlite":
        from .sqlite_writer import connect

        assert parsed.path is not None
        parsed.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = connect(parsed.path)
        except sqlite3.Error as exc:
            raise SchemaError(f"cannot open SQLite store {parsed.path}: {exc}") from exc
        try:
            return upgrade_sqlite(conn, str(parsed.path.resolve()), at_start=False,
                                  progress=progress, migrations=migrations)
        except sqlite3.Error as exc:
            raise SchemaError(f"migrating {parsed.path} failed, nothing changed: {exc}") from exc
        finally:
            conn.close()
    import asyncpg

    from .postgres import split_dsn

    assert parsed.dsn is not None
    dsn, _ours = split_dsn(parsed.dsn)
    try:
        pg = await asyncpg.connect(dsn, timeout=30)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        raise SchemaError(f"cannot connect to PostgreSQL: {exc}") from exc
    try:
        return await upgrade_postgres(pg, _pg_location(dsn), at_start=False, progress=progress,
                                      migrations=migrations)
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise SchemaError(f"migrating failed, nothing changed: {exc}") from exc
    finally:
        await pg.close()


def _pg_location(dsn: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(dsn)
    return f"postgresql://{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"
