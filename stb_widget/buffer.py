"""The offline buffer: finished records wait here until the collector has them.

sqlite in WAL mode through aiosqlite. Sessions are written once, when they end (never
per player event: flash wears). A confirmed answer is written with ``synchronous=FULL``
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
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

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

from .clock import Clock
from .config import BufferSection
from .errors import BufferError

log = logging.getLogger(__name__)

_DAY_US = 86_400 * 1_000_000


@dataclass(frozen=True, slots=True)
class Stored:
    """One record as kept: its id, kind and JSON bytes."""

    id: str
    kind: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Cooldowns:
    """When the last answered, and the last dismissed or timed-out, question was shown."""

    answered_shown: datetime | None = None
    dismissed_shown: datetime | None = None


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


def _cooldown_key(record: SurveyRecord) -> str:
    return "answered_shown_us" if record.outcome == "answered" else "dismissed_shown_us"


# Flash: every transaction appends each page it changes to the WAL. Small pages (set
# before the file exists; an existing buffer keeps its own) and no AUTOINCREMENT (whose
# sqlite_sequence row is one more page per insert) cut the bytes a session costs by about
# half (bench/agent_flash.py). ``seq`` stays increasing over the rows that exist (a new
# row gets the largest + 1), which is all the ordering needs.
_PAGE_SIZE = 1024
_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    ready INTEGER NOT NULL,
    created_us INTEGER NOT NULL,
    ready_us INTEGER,
    size INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_ready ON records (ready, seq);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class SqliteBuffer:
    """The durable buffer in ``data_dir``. Open with :meth:`open`."""

    def __init__(self, db: aiosqlite.Connection, limits: BufferSection, clock: Clock) -> None:
        self._db = db
        self._limits = limits
        self._clock = clock
        self._lock = asyncio.Lock()
        self.changed = asyncio.Event()
        self.evictions: Counter[str] = Counter()
        self._wake_count = 1
        self._wake_bytes = 1
        self._ready_count = 0
        self._ready_bytes = 0
        self._oldest_ready_us: int | None = None
        self._count = 0
        self._bytes = 0
        self._cooldowns = Cooldowns()

    @classmethod
    async def open(cls, path: str | Path, limits: BufferSection, clock: Clock) -> SqliteBuffer:
        """Open (or create) the buffer; a file sqlite calls corrupt is set aside, loudly."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BufferError(f"data_dir: cannot create {path.parent}: {exc}") from exc
        try:
            return await cls._open(path, limits, clock)
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):
                raise BufferError(f"cannot open the buffer {path}: {exc}") from exc
            aside = path.with_name(f"{path.name}.corrupt-{int(clock.wall().timestamp())}")
            log.error("buffer %s is corrupt (%s); moved to %s, starting empty", path, exc, aside)
            path.rename(aside)
            for suffix in ("-wal", "-shm"):
                # Once, on a corrupt file, before the buffer is in use: blocking is fine.
                Path(str(path) + suffix).unlink(missing_ok=True)  # noqa: ASYNC240
            try:
                return await cls._open(path, limits, clock)
            except sqlite3.Error as exc2:
                raise BufferError(f"cannot open the buffer {path}: {exc2}") from exc2

    @classmethod
    async def _open(cls, path: Path, limits: BufferSection, clock: Clock) -> SqliteBuffer:
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            await db.execute(f"PRAGMA page_size={_PAGE_SIZE}")  # a new file only
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            # Keep the WAL from growing on flash after a big upload burst.
            await db.execute("PRAGMA journal_size_limit=1048576")
            await db.executescript(_SCHEMA)
            async with db.execute("PRAGMA quick_check") as cur:
                row = await cur.fetchone()
            if row is None or row[0] != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {row[0] if row else 'no answer'}")
            self = cls(db, limits, clock)
            now = to_micros(clock.wall())
            # Answers confirmed before a restart go out as they were stored (contract §2).
            await db.execute("UPDATE records SET ready = 1, ready_us = ? WHERE ready = 0", (now,))
            await self._load_cooldowns()
            await self._evict()
            await self._refresh()
        except BaseException:
            await db.close()
            raise
        if self._ready_count:
            self.changed.set()
        return self

    async def close(self) -> None:
        """Close the database (the WAL is checkpointed by sqlite)."""
        await self._db.close()

    @property
    def ready_count(self) -> int:
        """Records that may be uploaded."""
        return self._ready_count

    @property
    def ready_bytes(self) -> int:
        """Their JSON size."""
        return self._ready_bytes

    @property
    def total_count(self) -> int:
        """Every record held."""
        return self._count

    @property
    def total_bytes(self) -> int:
        """Their JSON size."""
        return self._bytes

    def oldest_ready_wall_us(self) -> int | None:
        """When the oldest uploadable record became uploadable (wall, µs), or None."""
        return self._oldest_ready_us

    def wake_when(self, count: int, nbytes: int) -> None:
        """Set ``changed`` only where a new uploadable record brings the uploadable
        records to ``count`` or ``nbytes`` (see :class:`RecordStore`)."""
        self._wake_count, self._wake_bytes = count, nbytes

    def cooldowns(self) -> Cooldowns:
        """The cooldown marks, as stored."""
        return self._cooldowns

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
            try:
                if durable:
                    await self._db.execute("PRAGMA synchronous=FULL")
                await self._db.execute("BEGIN IMMEDIATE")
                await self._db.execute(
                    "INSERT INTO records (id, kind, ready, created_us, ready_us, size, body)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
                    " ready = excluded.ready, ready_us = excluded.ready_us,"
                    " size = excluded.size, body = excluded.body",
                    (record.id, record.kind, int(ready), now, now if ready else None,
                     len(body), body),
                )
                if isinstance(record, SurveyRecord):
                    key = _cooldown_key(record)
                    await self._db.execute(
                        "INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key)"
                        " DO UPDATE SET value = max(value, excluded.value)",
                        (key, to_micros(record.shown_at)),
                    )
                await self._db.execute("COMMIT")
                if durable:
                    await self._db.execute("PRAGMA synchronous=NORMAL")
                await self._evict()
                await self._refresh()
                if isinstance(record, SurveyRecord):
                    await self._load_cooldowns()
            except sqlite3.Error as exc:
                await self._rollback()
                raise BufferError(f"cannot store record {record.id}: {exc}") from exc
        if ready and (self._ready_count >= self._wake_count
                      or self._ready_bytes >= self._wake_bytes):
            self.changed.set()

    async def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):  # no transaction open: nothing to undo
            await self._db.execute("ROLLBACK")

    async def fetch(self, max_records: int, max_bytes: int) -> list[Stored]:
        """The oldest uploadable records within both limits (always at least one if any)."""
        out: list[Stored] = []
        size = 0
        # Under the lock: on this one connection a read must not see a write half done.
        async with self._lock:
            try:
                async with self._db.execute(
                    "SELECT id, kind, body FROM records WHERE ready = 1 ORDER BY seq LIMIT ?",
                    (max_records,),
                ) as cur:
                    async for row in cur:
                        body = bytes(row[2])
                        if out and size + len(body) > max_bytes:
                            break
                        size += len(body)
                        out.append(Stored(str(row[0]), str(row[1]), body))
            except sqlite3.Error as exc:
                raise BufferError(f"cannot read the buffer: {exc}") from exc
        return out

    async def delete(self, ids: list[str]) -> None:
        """Forget records the collector has (in one transaction)."""
        if not ids:
            return
        async with self._lock:
            try:
                await self._db.execute("BEGIN IMMEDIATE")
                await self._db.executemany(
                    "DELETE FROM records WHERE id = ?", [(i,) for i in ids]
                )
                await self._db.execute("COMMIT")
                await self._refresh()
            except sqlite3.Error as exc:
                await self._rollback()
                raise BufferError(f"cannot delete uploaded records: {exc}") from exc
        if not self._ready_count:
            self.changed.clear()

    async def _refresh(self) -> None:
        async with self._db.execute(
            "SELECT count(*), coalesce(sum(size), 0),"
            " coalesce(sum(ready), 0), coalesce(sum(CASE WHEN ready THEN size END), 0),"
            " min(CASE WHEN ready THEN ready_us END) FROM records"
        ) as cur:
            row = await cur.fetchone()
        assert row is not None
        self._count, self._bytes = int(row[0]), int(row[1])
        self._ready_count, self._ready_bytes = int(row[2]), int(row[3])
        self._oldest_ready_us = None if row[4] is None else int(row[4])

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

    async def _evict(self) -> None:
        limits = self._limits
        cutoff = to_micros(self._clock.wall()) - int(limits.max_age_days * _DAY_US)
        cur = await self._db.execute(
            "DELETE FROM records WHERE created_us < ? RETURNING kind", (cutoff,)
        )
        old = Counter(str(r[0]) for r in await cur.fetchall())
        await cur.close()
        await self._refresh()
        over_n = self._count - limits.max_records
        over_b = self._bytes - limits.max_bytes
        full: Counter[str] = Counter()
        if over_n > 0 or over_b > 0:
            victims: list[int] = []
            # Oldest sessions first, answers last (contract of issue 3).
            async with self._db.execute(
                "SELECT seq, kind, size FROM records"
                " ORDER BY kind = 'survey', seq"
            ) as c:
                async for seq, kind, size in c:
                    if over_n <= 0 and over_b <= 0:
                        break
                    victims.append(int(seq))
                    full[str(kind)] += 1
                    over_n -= 1
                    over_b -= int(size)
            await self._db.executemany(
                "DELETE FROM records WHERE seq = ?", [(s,) for s in victims]
            )
        self._count_evictions(old, full)

    def _count_evictions(self, old: Counter[str], full: Counter[str]) -> None:
        for kind, n in old.items():
            self.evictions[f"age_{kind}"] += n
        for kind, n in full.items():
            self.evictions[f"full_{kind}"] += n
        if old or full:
            log.warning(
                "buffer bounds: dropped %s record(s) older than %g days, %s for space"
                " (totals so far: %s)",
                sum(old.values()), self._limits.max_age_days,
                ", ".join(f"{n} {k}(s)" for k, n in full.items()) or "none",
                dict(self.evictions),
            )


class MemoryBuffer:
    """The buffer's behaviour in memory: same bounds and eviction order, no durability.

    Counts and sizes are kept as running totals, not summed per call: every store of a
    record checks them against the uploader's wake-up thresholds, and a simulator runs
    thousands of these.
    """

    def __init__(self, limits: BufferSection, clock: Clock) -> None:
        self._limits = limits
        self._max_age_us = int(limits.max_age_days * _DAY_US)
        self._clock = clock
        self.changed = asyncio.Event()
        self.evictions: Counter[str] = Counter()
        self._wake_count = 1
        self._wake_bytes = 1
        # id -> [seq, kind, ready, created_us, ready_us, body]; dict order is insertion order.
        self._rows: dict[str, list[Any]] = {}
        self._seq = 0
        self._cooldowns = Cooldowns()
        self._ready_count = 0
        self._ready_bytes = 0
        self._bytes = 0
        #: No row was created before this (a lower bound: deletions do not raise it), so
        #: age eviction needs no scan until the cutoff passes it.
        self._min_created_us: int | None = None

    @property
    def ready_count(self) -> int:
        """Records that may be uploaded."""
        return self._ready_count

    @property
    def ready_bytes(self) -> int:
        """Their JSON size."""
        return self._ready_bytes

    @property
    def total_count(self) -> int:
        """Every record held."""
        return len(self._rows)

    def oldest_ready_wall_us(self) -> int | None:
        """When the oldest uploadable record became uploadable (wall, µs), or None."""
        if not self._ready_count:
            return None
        oldest: int = min(r[4] for r in self._rows.values() if r[2])
        return oldest

    def wake_when(self, count: int, nbytes: int) -> None:
        """Set ``changed`` only where a new uploadable record brings the uploadable
        records to ``count`` or ``nbytes`` (see :class:`RecordStore`)."""
        self._wake_count, self._wake_bytes = count, nbytes

    def cooldowns(self) -> Cooldowns:
        """The cooldown marks."""
        return self._cooldowns

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
        row = self._rows.get(record.id)
        body = _encode(record)
        if row is None:
            self._seq += 1
            row = [self._seq, record.kind, ready, now, now if ready else None, body]
            self._rows[record.id] = row
            if self._min_created_us is None or now < self._min_created_us:
                self._min_created_us = now
        else:
            self._uncount(row)
            row[2], row[4], row[5] = ready, now if ready else None, body
        self._count(row)
        if isinstance(record, SurveyRecord):
            c = self._cooldowns
            if record.outcome == "answered":
                if c.answered_shown is None or record.shown_at > c.answered_shown:
                    self._cooldowns = Cooldowns(record.shown_at, c.dismissed_shown)
            elif c.dismissed_shown is None or record.shown_at > c.dismissed_shown:
                self._cooldowns = Cooldowns(c.answered_shown, record.shown_at)
        self._evict(now)
        if ready and (self._ready_count >= self._wake_count
                      or self._ready_bytes >= self._wake_bytes):
            self.changed.set()

    def _count(self, row: list[Any]) -> None:
        size = len(row[5])
        self._bytes += size
        if row[2]:
            self._ready_count += 1
            self._ready_bytes += size

    def _uncount(self, row: list[Any]) -> None:
        size = len(row[5])
        self._bytes -= size
        if row[2]:
            self._ready_count -= 1
            self._ready_bytes -= size

    def _drop(self, rid: str) -> list[Any] | None:
        row = self._rows.pop(rid, None)
        if row is not None:
            self._uncount(row)
        return row

    def _evict(self, now: int) -> None:
        cutoff = now - self._max_age_us
        over_n = len(self._rows) - self._limits.max_records
        over_b = self._bytes - self._limits.max_bytes
        aged = self._min_created_us is not None and self._min_created_us < cutoff
        if not aged and over_n <= 0 and over_b <= 0:
            return  # the common case: nothing to drop, nothing to count
        old: Counter[str] = Counter()
        if aged:
            for rid in [k for k, r in self._rows.items() if r[3] < cutoff]:
                old[self._rows[rid][1]] += 1
                self._drop(rid)
            self._min_created_us = min((r[3] for r in self._rows.values()), default=None)
            over_n = len(self._rows) - self._limits.max_records
            over_b = self._bytes - self._limits.max_bytes
        full: Counter[str] = Counter()
        if over_n > 0 or over_b > 0:
            order = sorted(self._rows.items(), key=lambda kv: (kv[1][1] == "survey", kv[1][0]))
            for rid, r in order:
                if over_n <= 0 and over_b <= 0:
                    break
                self._drop(rid)
                full[r[1]] += 1
                over_n -= 1
                over_b -= len(r[5])
        if not old and not full:
            return
        for kind, n in old.items():
            self.evictions[f"age_{kind}"] += n
        for kind, n in full.items():
            self.evictions[f"full_{kind}"] += n
        log.warning("buffer bounds: dropped %s (totals so far: %s)",
                    dict(old + full), dict(self.evictions))

    async def fetch(self, max_records: int, max_bytes: int) -> list[Stored]:
        """The oldest uploadable records within both limits."""
        out: list[Stored] = []
        size = 0
        for rid, r in self._rows.items():
            if not r[2]:
                continue
            if len(out) >= max_records or (out and size + len(r[5]) > max_bytes):
                break
            size += len(r[5])
            out.append(Stored(rid, r[1], r[5]))
        return out

    async def delete(self, ids: list[str]) -> None:
        """Forget records the collector has."""
        for rid in ids:
            self._drop(rid)
        if not self._ready_count:
            self.changed.clear()

    async def close(self) -> None:
        """Nothing to release."""
