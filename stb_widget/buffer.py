"""The offline buffer: finished records wait here until the collector has them.

sqlite in WAL mode through aiosqlite, in exclusive locking mode (no other process opens
the file while the agent runs). Sessions are written once, when they end (never per
player event: flash wears). A confirmed answer is written with ``synchronous=FULL``
(the WAL is fsync'd) before :meth:`SqliteBuffer.confirmed` returns. Bounded by bytes,
records and age; when full, the oldest sessions go first and answers last. Every
eviction is counted and logged.

:class:`MemoryBuffer` has the same behaviour without a file, for simulators that run
thousands of agents in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiosqlite
import orjson

from protocol import (
    Record,
    SessionRecord,
    SurveyRecord,
    from_micros,
    record_to_json,
    to_micros,
)

from .buffer_policy import (
    Cooldowns,
    Evictions,
    Row,
    after_survey,
    choose_evictions,
    cooldown_key,
    may_need_eviction,
)
from .clock import Clock
from .config import BufferSection
from .errors import StoreError

__all__ = ["Cooldowns", "MemoryBuffer", "RecordStore", "SqliteBuffer", "Stored"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Stored:
    """One record as kept: its id, kind and JSON bytes."""

    id: str
    kind: str
    body: bytes


class RecordStore(Protocol):
    """What the agent and the uploader need of a buffer (also a ``SurveySink``)."""

    #: Set when a record becomes uploadable, if the uploadable records then reach what
    #: :meth:`wake_when` last asked (by default on every such record).
    changed: asyncio.Event
    evictions: Counter[str]

    def wake_when(self, count: int, nbytes: int) -> None:
        """From now on set ``changed`` on a record becoming uploadable only where
        ``ready_count >= count`` or ``ready_bytes >= nbytes`` after it (1, 1: always).

        The uploader waits on ``changed``. With records waiting for a batch to fill, a
        new one matters only if it fills the batch; this spares a wake-up per record.
        """

    @property
    def ready_count(self) -> int:
        """Records that may be uploaded."""

    @property
    def ready_bytes(self) -> int:
        """Their JSON size."""

    def oldest_ready_wall_us(self) -> int | None:
        """When the oldest uploadable record became uploadable (wall, µs), or None."""

    async def add_session(self, record: SessionRecord) -> None:
        """Store a finished session, uploadable."""

    async def confirmed(self, record: SurveyRecord) -> None:
        """Store an answer durably, not yet uploadable."""

    async def finished(self, record: SurveyRecord) -> None:
        """Store a survey record's final form, uploadable."""

    async def fetch(self, max_records: int, max_bytes: int) -> list[Stored]:
        """The oldest uploadable records, within both limits (at least one if any)."""

    async def delete(self, ids: list[str]) -> None:
        """Forget records the collector has."""

    def cooldowns(self) -> Cooldowns:
        """The cooldown marks, as stored."""

    async def close(self) -> None:
        """Release the store."""


def _encode(record: Record) -> bytes:
    return orjson.dumps(record_to_json(record))


def _log_evictions(ev: Evictions, totals: Counter[str], limits: BufferSection) -> None:
    log.warning(
        "buffer bounds: dropped %s record(s) older than %g days, %s for space"
        " (totals so far: %s)",
        len(ev.aged), limits.max_age_days,
        ", ".join(f"{n} {k}(s)" for k, n in Counter(r.kind for r in ev.full).items())
        or "none",
        dict(totals),
    )


# Flash (bench/agent_flash.py, bench/README.md): in WAL mode a commit appends every page
# it changes to the WAL, and for each such page adds an entry to the wal-index's hash
# table (in this process's heap, see the exclusive lock in ``_open``; in a -shm file
# otherwise): the bytes a session costs follow the number of distinct pages it touches. So: 1 KiB pages (set
# before the file exists), no AUTOINCREMENT (its sqlite_sequence row is one more page),
# and a single b-tree: no index on ``id`` or ``ready``, which made every insert and every
# delete touch three pages instead of one. Rows are found by ``seq`` (the rowid), which
# the buffer remembers for the rows it may have to find again (those handed to the
# uploader, answers not yet final); the rest is read in ``seq`` order. On a box that
# uploads, the buffer is a queue of a few rows and scans are short; where it cannot,
# they are bounded by max_records. ``seq`` stays increasing over the rows that exist (a new row gets the
# largest + 1), which is all the ordering needs.
_PAGE_SIZE = 1024
#: ``PRAGMA user_version`` of this layout. 0: the layout before it (indexes on ``id`` and
#: ``(ready, seq)``), rebuilt into this one at open.
_LAYOUT = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    ready INTEGER NOT NULL,
    created_us INTEGER NOT NULL,
    ready_us INTEGER,
    size INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_MIGRATE_FROM_0 = """
ALTER TABLE records RENAME TO records_0;
DROP INDEX IF EXISTS records_ready;
""" + _SCHEMA + """
INSERT INTO records (seq, id, kind, ready, created_us, ready_us, size, body)
    SELECT seq, id, kind, ready, created_us, ready_us, size, body FROM records_0 ORDER BY seq;
DROP TABLE records_0;
"""


class _Tallies:
    """What both buffers keep the same way: the uploader's wake-up thresholds, the
    running totals of uploadable records, eviction counts and the cooldown marks."""

    def __init__(self, limits: BufferSection, clock: Clock) -> None:
        self._limits = limits
        self._clock = clock
        self.changed = asyncio.Event()
        self.evictions: Counter[str] = Counter()
        self._wake_count = 1
        self._wake_bytes = 1
        self._ready_count = 0
        self._ready_bytes = 0
        self._bytes = 0
        self._cooldowns = Cooldowns()

    @property
    def ready_count(self) -> int:
        """Records that may be uploaded."""
        return self._ready_count

    @property
    def ready_bytes(self) -> int:
        """Their JSON size."""
        return self._ready_bytes

    def wake_when(self, count: int, nbytes: int) -> None:
        """Set ``changed`` only where a new uploadable record brings the uploadable
        records to ``count`` or ``nbytes`` (see :class:`RecordStore`)."""
        self._wake_count, self._wake_bytes = count, nbytes

    def cooldowns(self) -> Cooldowns:
        """The cooldown marks (as stored, for the durable buffer)."""
        return self._cooldowns


class SqliteBuffer(_Tallies):
    """The durable buffer in ``data_dir``. Open with :meth:`open`."""

    def __init__(self, db: aiosqlite.Connection, limits: BufferSection, clock: Clock) -> None:
        super().__init__(limits, clock)
        self._db = db
        self._lock = asyncio.Lock()
        self._oldest_ready_us: int | None = None
        self._oldest_created_us: int | None = None
        self._count = 0
        #: ``seq`` of the rows that may be named by id again: handed out by :meth:`fetch`
        #: (to be deleted), or confirmed and not yet final (to be replaced).
        self._seq_of: dict[str, int] = {}

    @classmethod
    async def open(cls, path: str | Path, limits: BufferSection, clock: Clock) -> SqliteBuffer:
        """Open (or create) the buffer; a file sqlite calls corrupt is set aside, loudly."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"data_dir: cannot create {path.parent}: {exc}") from exc
        try:
            return await cls._open(path, limits, clock)
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):
                raise StoreError(f"cannot open the buffer {path}: {exc}") from exc
            aside = path.with_name(f"{path.name}.corrupt-{int(clock.wall().timestamp())}")
            log.error("buffer %s is corrupt (%s); moved to %s, starting empty", path, exc, aside)
            path.rename(aside)
            for suffix in ("-wal", "-shm"):
                # Once, on a corrupt file, before the buffer is in use: blocking is fine.
                Path(str(path) + suffix).unlink(missing_ok=True)  # noqa: ASYNC240
            try:
                return await cls._open(path, limits, clock)
            except sqlite3.Error as exc2:
                raise StoreError(f"cannot open the buffer {path}: {exc2}") from exc2

    @classmethod
    async def _open(cls, path: Path, limits: BufferSection, clock: Clock) -> SqliteBuffer:
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            await db.execute(f"PRAGMA page_size={_PAGE_SIZE}")  # a new file only
            # Exclusive before WAL: the wal-index then lives in this process's heap, not
            # in a -shm file whose pages every commit dirties (about half of what a
            # session cost, bench/README.md). The price: no other process can open the
            # buffer while the agent runs; after the agent exits (or dies) any can.
            await db.execute("PRAGMA locking_mode=EXCLUSIVE")
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            # Zero deleted rows only inside pages written anyway; ON (this build's default)
            # also writes out every page a large delete frees, zeroed: one more page of
            # flash each when a backlog drains. Old content is in the WAL meanwhile anyway.
            await db.execute("PRAGMA secure_delete=FAST")
            # Keep the WAL from growing on flash after a big upload burst.
            await db.execute("PRAGMA journal_size_limit=1048576")
            async with db.execute("PRAGMA quick_check") as cur:
                row = await cur.fetchone()
            if row is None or row[0] != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {row[0] if row else 'no answer'}")
            await cls._layout(db)
            self = cls(db, limits, clock)
            now = to_micros(clock.wall())
            await db.execute("BEGIN IMMEDIATE")
            # Answers confirmed before a restart go out as they were stored (contract §2).
            await db.execute("UPDATE records SET ready = 1, ready_us = ? WHERE ready = 0", (now,))
            await self._refresh()
            await self._evict(now)
            await db.execute("COMMIT")
            await self._load_cooldowns()
            await self._refresh()
        except BaseException:
            await db.close()
            raise
        if self._ready_count:
            self.changed.set()
        return self

    @staticmethod
    async def _layout(db: aiosqlite.Connection) -> None:
        """Create the tables, or bring a buffer of an older layout to this one."""
        async with db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = int(row[0]) if row else 0
        if version > _LAYOUT:
            raise sqlite3.OperationalError(
                f"buffer layout {version} is newer than this agent's ({_LAYOUT})")
        if version == _LAYOUT:
            return
        async with db.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'records'"
        ) as cur:
            row = await cur.fetchone()
        old = bool(row and row[0])
        # executescript commits first; the BEGIN makes the rebuild all or nothing.
        await db.executescript(
            "BEGIN IMMEDIATE;" + (_MIGRATE_FROM_0 if old else _SCHEMA)
            + f"PRAGMA user_version = {_LAYOUT}; COMMIT;"
        )
        if old:
            log.info("buffer: rebuilt into layout %d (no secondary indexes)", _LAYOUT)

    async def close(self) -> None:
        """Close the database (the WAL is checkpointed by sqlite)."""
        await self._db.close()

    @property
    def total_count(self) -> int:
        """Every record held."""
        return self._count

    def oldest_ready_wall_us(self) -> int | None:
        """When the oldest uploadable record became uploadable (wall, µs), or None."""
        return self._oldest_ready_us

    async def add_session(self, record: SessionRecord) -> None:
        """Store a finished session, uploadable (``synchronous=NORMAL``: no fsync)."""
        await self._put(record, ready=True, durable=False)

    async def confirmed(self, record: SurveyRecord) -> None:
        """Store an answer durably (WAL fsync'd) before returning; not uploadable yet."""
        await self._put(record, ready=False, durable=True)

    async def finished(self, record: SurveyRecord) -> None:
        """Store the final survey record durably; it becomes uploadable."""
        await self._put(record, ready=True, durable=True)

    async def _put(self, record: Record, *, ready: bool, durable: bool) -> None:
        body = _encode(record)
        now = to_micros(self._clock.wall())
        async with self._lock:
            marks = self._cooldowns
            try:
                if durable:
                    await self._db.execute("PRAGMA synchronous=FULL")
                await self._db.execute("BEGIN IMMEDIATE")
                seq = self._seq_of.get(record.id)
                ready_us = now if ready else None
                if seq is None:
                    cur = await self._db.execute(
                        "INSERT INTO records (id, kind, ready, created_us, ready_us, size, body)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (record.id, record.kind, int(ready), now, ready_us, len(body), body),
                    )
                    seq = cur.lastrowid
                    await cur.close()
                else:
                    # Its final form (or a record stored again): same place, same age.
                    cur = await self._db.execute(
                        "UPDATE records SET ready = ?, ready_us = ?, size = ?, body = ?"
                        " WHERE seq = ?", (int(ready), ready_us, len(body), body, seq),
                    )
                    if cur.rowcount == 0:  # evicted meanwhile: it is stored anew
                        cur = await self._db.execute(
                            "INSERT INTO records (id, kind, ready, created_us, ready_us,"
                            " size, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (record.id, record.kind, int(ready), now, ready_us, len(body),
                             body),
                        )
                        seq = cur.lastrowid
                    await cur.close()
                if isinstance(record, SurveyRecord):
                    marks = after_survey(marks, record.outcome, record.shown_at)
                    if marks != self._cooldowns:
                        await self._db.execute(
                            "INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key)"
                            " DO UPDATE SET value = excluded.value",
                            (cooldown_key(record.outcome), to_micros(record.shown_at)),
                        )
                await self._refresh()
                evicted = await self._evict(now)
                await self._db.execute("COMMIT")
                if durable:
                    await self._db.execute("PRAGMA synchronous=NORMAL")
                if ready or any(r.id == record.id for r in evicted.rows):
                    self._seq_of.pop(record.id, None)
                elif seq is not None:
                    self._seq_of[record.id] = seq
            except sqlite3.Error as exc:
                await self._rollback()
                await self._refresh_quietly()
                raise StoreError(f"cannot store record {record.id}: {exc}") from exc
            self._cooldowns = marks
        if ready and (self._ready_count >= self._wake_count
                      or self._ready_bytes >= self._wake_bytes):
            self.changed.set()

    async def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):  # no transaction open: nothing to undo
            await self._db.execute("ROLLBACK")

    async def _refresh_quietly(self) -> None:
        # After a failed write: the counts must be those of the file, if it can be read.
        with contextlib.suppress(sqlite3.Error):
            await self._refresh()

    async def fetch(self, max_records: int, max_bytes: int) -> list[Stored]:
        """The oldest uploadable records within both limits (always at least one if any)."""
        out: list[Stored] = []
        size = 0
        # Under the lock: on this one connection a read must not see a write half done.
        async with self._lock:
            try:
                async with self._db.execute(
                    "SELECT seq, id, kind, body FROM records WHERE ready = 1 ORDER BY seq"
                    " LIMIT ?", (max_records,),
                ) as cur:
                    async for row in cur:
                        body = bytes(row[3])
                        if out and size + len(body) > max_bytes:
                            break
                        size += len(body)
                        out.append(Stored(str(row[1]), str(row[2]), body))
                        self._seq_of[str(row[1])] = int(row[0])
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read the buffer: {exc}") from exc
        return out

    async def delete(self, ids: list[str]) -> None:
        """Forget records the collector has (in one transaction)."""
        if not ids:
            return
        async with self._lock:
            try:
                known = [self._seq_of[i] for i in ids if i in self._seq_of]
                unknown = [i for i in ids if i not in self._seq_of]
                await self._db.execute("BEGIN IMMEDIATE")
                await self._db.executemany(
                    "DELETE FROM records WHERE seq = ?", [(q,) for q in known]
                )
                # Not handed out by this buffer (a caller's own list): found by a scan.
                await self._db.executemany(
                    "DELETE FROM records WHERE id = ?", [(i,) for i in unknown]
                )
                await self._db.execute("COMMIT")
                for i in ids:
                    self._seq_of.pop(i, None)
                await self._refresh()
            except sqlite3.Error as exc:
                await self._rollback()
                await self._refresh_quietly()
                raise StoreError(f"cannot delete uploaded records: {exc}") from exc
        if not self._ready_count:
            self.changed.clear()

    async def _refresh(self) -> None:
        async with self._db.execute(
            "SELECT count(*), coalesce(sum(size), 0),"
            " coalesce(sum(ready), 0), coalesce(sum(CASE WHEN ready THEN size END), 0),"
            " min(CASE WHEN ready THEN ready_us END), min(created_us) FROM records"
        ) as cur:
            row = await cur.fetchone()
        assert row is not None
        self._count, self._bytes = int(row[0]), int(row[1])
        self._ready_count, self._ready_bytes = int(row[2]), int(row[3])
        self._oldest_ready_us = None if row[4] is None else int(row[4])
        self._oldest_created_us = None if row[5] is None else int(row[5])

    async def _load_cooldowns(self) -> None:
        values: dict[str, int] = {}
        async with self._db.execute("SELECT key, value FROM state") as cur:
            async for row in cur:
                values[str(row[0])] = int(row[1])
        a = values.get("answered_shown_us")
        d = values.get("dismissed_shown_us")
        self._cooldowns = Cooldowns(
            None if a is None else from_micros(a), None if d is None else from_micros(d)
        )

    async def _evict(self, now_us: int) -> Evictions:
        """Inside the caller's transaction, after :meth:`_refresh`: apply the policy."""
        if not may_need_eviction(self._count, self._bytes, self._oldest_created_us,
                                 now_us, self._limits):
            return Evictions()
        async with self._db.execute(
            "SELECT seq, id, kind, ready, created_us, ready_us, size FROM records ORDER BY seq"
        ) as cur:
            rows = [Row(int(r[0]), str(r[1]), str(r[2]), bool(r[3]), int(r[4]),
                        None if r[5] is None else int(r[5]), int(r[6]))
                    async for r in cur]
        ev = choose_evictions(rows, now_us, self._limits)
        if not ev:
            return ev
        await self._db.executemany(
            "DELETE FROM records WHERE seq = ?", [(r.seq,) for r in ev.rows]
        )
        for r in ev.rows:
            self._seq_of.pop(r.id, None)
        await self._refresh()
        self.evictions.update(ev.counts())
        _log_evictions(ev, self.evictions, self._limits)
        return ev


class MemoryBuffer(_Tallies):
    """The buffer's behaviour in memory: same bounds and eviction order, no durability.

    Counts and sizes are kept as running totals, not summed per call: every store of a
    record checks them against the uploader's wake-up thresholds, and a simulator runs
    thousands of these.
    """

    def __init__(self, limits: BufferSection, clock: Clock) -> None:
        super().__init__(limits, clock)
        # id -> (row, body); dict order is insertion order, which is seq order.
        self._rows: dict[str, tuple[Row, bytes]] = {}
        self._seq = 0
        #: No row was created before this (a lower bound: deletions do not raise it), so
        #: age eviction needs no scan until the cutoff passes it.
        self._min_created_us: int | None = None

    @property
    def total_count(self) -> int:
        """Every record held."""
        return len(self._rows)

    def oldest_ready_wall_us(self) -> int | None:
        """When the oldest uploadable record became uploadable (wall, µs), or None."""
        if not self._ready_count:
            return None
        return min((r.ready_us for r, _ in self._rows.values() if r.ready_us is not None),
                   default=None)

    async def add_session(self, record: SessionRecord) -> None:
        """Keep a finished session, uploadable."""
        self._put(record, True)

    async def confirmed(self, record: SurveyRecord) -> None:
        """Keep an answer, not yet uploadable."""
        self._put(record, False)

    async def finished(self, record: SurveyRecord) -> None:
        """Keep a survey record's final form, uploadable."""
        self._put(record, True)

    def _put(self, record: Record, ready: bool) -> None:
        now = to_micros(self._clock.wall())
        body = _encode(record)
        got = self._rows.get(record.id)
        if got is None:
            self._seq += 1
            seq, created = self._seq, now
            if self._min_created_us is None or now < self._min_created_us:
                self._min_created_us = now
        else:
            # An updated record keeps its place (assigning an existing key keeps the dict's
            # order, which is seq order) and its creation time.
            self._uncount(got[0])
            seq, created = got[0].seq, got[0].created_us
        row = Row(seq, record.id, record.kind, ready, created, now if ready else None,
                  len(body))
        self._rows[record.id] = (row, body)
        self._count(row)
        if isinstance(record, SurveyRecord):
            self._cooldowns = after_survey(self._cooldowns, record.outcome, record.shown_at)
        self._evict(now)
        if ready and (self._ready_count >= self._wake_count
                      or self._ready_bytes >= self._wake_bytes):
            self.changed.set()

    def _count(self, row: Row) -> None:
        self._bytes += row.size
        if row.ready:
            self._ready_count += 1
            self._ready_bytes += row.size

    def _uncount(self, row: Row) -> None:
        self._bytes -= row.size
        if row.ready:
            self._ready_count -= 1
            self._ready_bytes -= row.size

    def _drop(self, rid: str) -> None:
        got = self._rows.pop(rid, None)
        if got is not None:
            self._uncount(got[0])

    def _evict(self, now_us: int) -> None:
        if not may_need_eviction(len(self._rows), self._bytes, self._min_created_us,
                                 now_us, self._limits):
            return  # the common case: nothing to drop, no scan
        ev = choose_evictions((r for r, _ in self._rows.values()), now_us, self._limits)
        for r in ev.rows:
            self._drop(r.id)
        self._min_created_us = min((r.created_us for r, _ in self._rows.values()),
                                   default=None)
        if ev:
            self.evictions.update(ev.counts())
            _log_evictions(ev, self.evictions, self._limits)

    async def fetch(self, max_records: int, max_bytes: int) -> list[Stored]:
        """The oldest uploadable records within both limits."""
        out: list[Stored] = []
        size = 0
        for rid, (r, body) in self._rows.items():
            if not r.ready:
                continue
            if len(out) >= max_records or (out and size + r.size > max_bytes):
                break
            size += r.size
            out.append(Stored(rid, r.kind, body))
        return out

    async def delete(self, ids: list[str]) -> None:
        """Forget records the collector has."""
        for rid in ids:
            self._drop(rid)
        if not self._ready_count:
            self.changed.clear()

    async def close(self) -> None:
        """Nothing to release."""
