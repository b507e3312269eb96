"""SQLite storage through aiosqlite: WAL, one writer with group commit, pooled readers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from ..errors import OverloadedError, StorageError, StoreClosedError
from ..model import Filters, Row, SessionGroup, SessionRow, SurveyFact, SurveyRow, TokenInfo
from .base import ExportRow, Storage
from .sql import (
    SESSION_COLUMNS,
    SURVEY_COLUMNS,
    session_values,
    survey_values,
    where_sessions,
    where_surveys,
)

log = logging.getLogger("collector.storage")

SCHEMA = """
CREATE TABLE IF NOT EXISTS nps_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS box_tokens (
    token_hash BLOB PRIMARY KEY,
    box_id TEXT NOT NULL,
    issued_us INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS box_tokens_box ON box_tokens (box_id);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    box_id TEXT NOT NULL,
    received_us INTEGER NOT NULL,
    started_us INTEGER NOT NULL,
    ended_us INTEGER NOT NULL,
    channel TEXT,
    content_type TEXT,
    startup_ms INTEGER,
    watch_s REAL NOT NULL,
    rebuffer_count INTEGER NOT NULL,
    rebuffer_s REAL NOT NULL,
    avg_bitrate_kbps REAL,
    bitrate_switches INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    rebuffer_ratio REAL NOT NULL,
    rb_bucket INTEGER,
    br_bucket INTEGER,
    su_bucket INTEGER,
    model TEXT,
    firmware TEXT,
    region TEXT,
    clock_shift_s REAL NOT NULL,
    surveyed INTEGER NOT NULL DEFAULT 0,
    raw BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_started ON sessions
    (started_us, rb_bucket, br_bucket, su_bucket, failed, surveyed);
CREATE INDEX IF NOT EXISTS sessions_box ON sessions (box_id);
CREATE TABLE IF NOT EXISTS surveys (
    id TEXT PRIMARY KEY,
    box_id TEXT NOT NULL,
    received_us INTEGER NOT NULL,
    session_id TEXT,
    shown_us INTEGER NOT NULL,
    answered_us INTEGER,
    outcome TEXT NOT NULL,
    score INTEGER,
    reason TEXT,
    locale TEXT,
    model TEXT,
    firmware TEXT,
    region TEXT,
    clock_shift_s REAL NOT NULL,
    raw BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS surveys_shown ON surveys (shown_us);
CREATE INDEX IF NOT EXISTS surveys_session ON surveys (session_id);
CREATE INDEX IF NOT EXISTS surveys_box ON surveys (box_id);
"""

#: SQLite's limit on bound parameters is 32766 in current builds; stay well under.
_ID_CHUNK = 900


class _Pending:
    __slots__ = ("future", "rows")

    def __init__(self, rows: Sequence[Row], future: asyncio.Future[list[bool]]) -> None:
        self.rows = rows
        self.future = future


class SQLiteStorage(Storage):
    """The embedded default: one file, WAL, ``synchronous=FULL``, group commit."""

    def __init__(
        self, path: Path, *, queue_batches: int = 512, group_records: int = 10_000,
        retry_after_s: int = 10, read_connections: int = 2,
    ) -> None:
        self.path = path
        self.location = str(path.resolve())
        self._queue_batches = queue_batches
        self._group_records = group_records
        self._retry_after_s = retry_after_s
        self._n_readers = read_connections
        self._writer: aiosqlite.Connection | None = None
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all_readers: list[aiosqlite.Connection] = []
        self._pending: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._pending_batches = 0
        self._writer_task: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()
        self._state = "new"

    # -- life cycle ----------------------------------------------------------------------
    async def open(self) -> None:
        if self._state != "new":
            raise StorageError(f"store {self.location} was already opened")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = await self._connect()
            await self._writer.executescript(SCHEMA)
            for _ in range(self._n_readers):
                conn = await self._connect()
                await conn.execute("PRAGMA query_only = ON")
                self._all_readers.append(conn)
                self._readers.put_nowait(conn)
        except (OSError, aiosqlite.Error) as exc:
            await self._close_connections()
            raise StorageError(f"cannot open SQLite store {self.location}: {exc}") from exc
        self._writer_task = asyncio.create_task(self._write_loop(), name="sqlite-writer")
        self._state = "open"

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        await conn.execute("PRAGMA journal_mode = WAL")
        # FULL: an acknowledgement means the commit is on disk, even after power loss.
        await conn.execute("PRAGMA synchronous = FULL")
        await conn.execute("PRAGMA busy_timeout = 10000")
        await conn.execute("PRAGMA cache_size = -65536")
        return conn

    async def close(self) -> None:
        if self._state in ("closed", "new"):
            self._state = "closed"
            return
        self._state = "closing"
        self._pending.put_nowait(None)
        if self._writer_task is not None:
            await self._writer_task
        await self._close_connections()
        self._state = "closed"

    async def _close_connections(self) -> None:
        for conn in self._all_readers:
            await conn.close()
        self._all_readers.clear()
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

    def _check_open(self) -> None:
        if self._state != "open":
            raise StoreClosedError(f"store {self.location} is {self._state}, not open")

    # -- writes --------------------------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        """Batches waiting for the writer."""
        return self._pending_batches

    async def ingest(self, rows: Sequence[Row]) -> list[bool]:
        self._check_open()
        if not rows:
            return []
        if self._pending_batches >= self._queue_batches:
            raise OverloadedError(self._retry_after_s)
        future: asyncio.Future[list[bool]] = asyncio.get_running_loop().create_future()
        self._pending_batches += 1
        self._pending.put_nowait(_Pending(rows, future))
        return await future

    async def _write_loop(self) -> None:
        stop = False
        while not stop:
            first = await self._pending.get()
            if first is None:
                break
            group = [first]
            size = len(first.rows)
            # Everything already queued joins this commit: one fsync for many uploads.
            while size < self._group_records and not self._pending.empty():
                nxt = self._pending.get_nowait()
                if nxt is None:
                    stop = True
                    break
                group.append(nxt)
                size += len(nxt.rows)
            self._pending_batches -= len(group)
            try:
                async with self._write_lock:
                    results = await self._write_group([p.rows for p in group])
            except Exception as exc:
                log.error("group commit of %d batches failed: %s", len(group), exc)
                err = StorageError(f"write failed: {exc}")
                for p in group:
                    if not p.future.done():
                        p.future.set_exception(err)
                continue
            for p, res in zip(group, results, strict=True):
                if not p.future.done():
                    p.future.set_result(res)

    async def _write_group(self, batches: list[Sequence[Row]]) -> list[list[bool]]:
        db = self._writer
        assert db is not None
        all_ids = list({r.id for rows in batches for r in rows})
        held: set[str] = set()
        for i in range(0, len(all_ids), _ID_CHUNK):
            chunk = all_ids[i:i + _ID_CHUNK]
            marks = ",".join("?" * len(chunk))
            async with db.execute(
                f"SELECT id FROM sessions WHERE id IN ({marks}) "
                f"UNION ALL SELECT id FROM surveys WHERE id IN ({marks})", chunk + chunk,
            ) as cur:
                held.update(r[0] for r in await cur.fetchall())
        results: list[list[bool]] = []
        sessions: list[tuple[Any, ...]] = []
        surveys: list[tuple[Any, ...]] = []
        new_session_ids: list[str] = []
        linked_session_ids: list[str] = []
        for rows in batches:
            res = []
            for r in rows:
                if r.id in held:
                    res.append(False)
                    continue
                held.add(r.id)
                res.append(True)
                if isinstance(r, SessionRow):
                    sessions.append(session_values(r))
                    new_session_ids.append(r.id)
                else:
                    assert isinstance(r, SurveyRow)
                    surveys.append(survey_values(r))
                    if r.session_id is not None:
                        linked_session_ids.append(r.session_id)
            results.append(res)
        if not sessions and not surveys:
            return results
        await db.execute("BEGIN IMMEDIATE")
        try:
            if sessions:
                await db.executemany(
                    f"INSERT OR IGNORE INTO sessions ({', '.join(SESSION_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(SESSION_COLUMNS))})", sessions,
                )
            if surveys:
                await db.executemany(
                    f"INSERT OR IGNORE INTO surveys ({', '.join(SURVEY_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(SURVEY_COLUMNS))})", surveys,
                )
            # A survey and its session join in whatever order they arrive.
            for i in range(0, len(linked_session_ids), _ID_CHUNK):
                chunk = linked_session_ids[i:i + _ID_CHUNK]
                await db.execute(
                    f"UPDATE sessions SET surveyed = 1 WHERE surveyed = 0 AND id IN "
                    f"({','.join('?' * len(chunk))})", chunk,
                )
            for i in range(0, len(new_session_ids), _ID_CHUNK):
                chunk = new_session_ids[i:i + _ID_CHUNK]
                await db.execute(
                    f"UPDATE sessions SET surveyed = 1 WHERE surveyed = 0 AND id IN "
                    f"({','.join('?' * len(chunk))}) AND EXISTS "
                    "(SELECT 1 FROM surveys WHERE surveys.session_id = sessions.id)", chunk,
                )
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        return results

    async def _write(self, sql: str, params: Sequence[Any]) -> int:
        self._check_open()
        db = self._writer
        assert db is not None
        async with self._write_lock:
            try:
                cur = await db.execute(sql, params)
                return cur.rowcount
            except aiosqlite.Error as exc:
                raise StorageError(f"write failed: {exc}") from exc

    # -- reads ---------------------------------------------------------------------------
    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Any]:
        self._check_open()
        conn = await self._readers.get()
        try:
            async with conn.execute(sql, params) as cur:
                return list(await cur.fetchall())
        except aiosqlite.Error as exc:
            raise StorageError(f"read failed: {exc}") from exc
        finally:
            self._readers.put_nowait(conn)

    async def session_groups(self, filters: Filters) -> list[SessionGroup]:
        where, params = where_sessions(filters, "?")
        rows = await self._fetch(
            "SELECT rb_bucket, br_bucket, su_bucket, failed, surveyed, count(*) FROM sessions "
            f"{where} GROUP BY 1, 2, 3, 4, 5", params,
        )
        return [SessionGroup(r[0], r[1], r[2], bool(r[3]), bool(r[4]), r[5]) for r in rows]

    async def survey_facts(self, filters: Filters) -> list[SurveyFact]:
        where, params = where_surveys(filters, "?")
        rows = await self._fetch(
            "SELECT v.outcome, v.score, v.reason, s.id IS NOT NULL, s.rebuffer_ratio, "
            "s.avg_bitrate_kbps, s.startup_ms FROM surveys v "
            f"LEFT JOIN sessions s ON s.id = v.session_id {where}", params,
        )
        return [SurveyFact(r[0], r[1], r[2], bool(r[3]), r[4], r[5], r[6]) for r in rows]

    async def export_rows(self, kind: str, filters: Filters) -> AsyncIterator[ExportRow]:
        self._check_open()
        if kind == "session":
            where, params = where_sessions(filters, "?")
            sql = ("SELECT raw, box_id, received_us, model, firmware, region, clock_shift_s "
                   f"FROM sessions {where} ORDER BY rowid")
        else:
            where, params = where_surveys(filters, "?")
            sql = ("SELECT v.raw, v.box_id, v.received_us, v.model, v.firmware, v.region, "
                   f"v.clock_shift_s FROM surveys v LEFT JOIN sessions s ON s.id = v.session_id "
                   f"{where} ORDER BY v.rowid")
        # Its own connection: a long export must not hold a reader the report needs.
        conn = await aiosqlite.connect(self.path)
        try:
            await conn.execute("PRAGMA query_only = ON")
            async with conn.execute(sql, params) as cur:
                while True:
                    chunk = await cur.fetchmany(1000)
                    if not chunk:
                        break
                    for r in chunk:
                        yield ExportRow(bytes(r[0]), r[1], r[2], r[3], r[4], r[5], r[6])
        finally:
            await conn.close()

    async def counts(self) -> dict[str, int]:
        rows = await self._fetch(
            "SELECT (SELECT count(*) FROM sessions), (SELECT count(*) FROM surveys)", ()
        )
        return {"sessions": rows[0][0], "surveys": rows[0][1]}

    # -- tokens and meta -----------------------------------------------------------------
    async def add_box_token(self, box_id: str, token_hash: bytes, issued_us: int) -> None:
        await self._write(
            "INSERT INTO box_tokens (token_hash, box_id, issued_us) VALUES (?, ?, ?)",
            (token_hash, box_id, issued_us),
        )

    async def revoke_box(self, box_id: str) -> int:
        return await self._write(
            "UPDATE box_tokens SET revoked = 1 WHERE box_id = ? AND revoked = 0", (box_id,)
        )

    async def lookup_token(self, token_hash: bytes) -> TokenInfo | None:
        rows = await self._fetch(
            "SELECT box_id, revoked FROM box_tokens WHERE token_hash = ?", (token_hash,)
        )
        return TokenInfo(rows[0][0], bool(rows[0][1])) if rows else None

    async def get_meta(self, key: str) -> str | None:
        rows = await self._fetch("SELECT value FROM nps_meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    async def set_meta_once(self, key: str, value: str) -> str:
        await self._write("INSERT OR IGNORE INTO nps_meta (key, value) VALUES (?, ?)", (key, value))
        kept = await self.get_meta(key)
        assert kept is not None
        return kept

    async def delete_box(self, box_id: str) -> int:
        self._check_open()
        db = self._writer
        assert db is not None
        async with self._write_lock:
            await db.execute("BEGIN IMMEDIATE")
            try:
                n = (await db.execute("DELETE FROM sessions WHERE box_id = ?", (box_id,))).rowcount
                n += (await db.execute("DELETE FROM surveys WHERE box_id = ?", (box_id,))).rowcount
                await db.execute("DELETE FROM box_tokens WHERE box_id = ?", (box_id,))
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise
        return n
