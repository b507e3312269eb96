"""SQLite storage: WAL, one writer thread with group commit, pooled aiosqlite readers."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import orjson

from ..errors import SchemaError, StorageError, StoreClosedError, TokenRefusedError
from ..model import Filters, SessionRow, SurveyRow, TokenInfo
from . import group_commit
from . import store_logic as logic
from .aggregate_sql import fold_statements
from .base import ExportRow
from .migrations import upgrade_sqlite
from .outbox import (
    OUTBOX_INSERT,
    OutboxAlert,
    write_sqlite,
)
from .segments import Fetch
from .sql_store import SqlStore, export_sql
from .sqlite_writer import WriterThread, connect, insert_rows, transaction

log = logging.getLogger("collector.storage")

#: SQLite's limit on bound parameters is 32766 in current builds; stay well under.
_ID_CHUNK = 900
_T = TypeVar("_T")


def _chunks(ids: Sequence[_T]) -> list[list[_T]]:
    return [list(ids[i:i + _ID_CHUNK]) for i in range(0, len(ids), _ID_CHUNK)]


#: A group's new rows are those above the largest rowids before it (``?1`` sessions, ``?2``
#: surveys, see :class:`~collector.storage.store_logic.Mark`): the writer is the only one.
DIALECT = logic.Dialect(
    name="sqlite", style="?",
    new_sessions="(SELECT * FROM sessions WHERE rowid > ?1)",
    new_surveys="(SELECT * FROM surveys WHERE rowid > ?2)",
    mark_table="sessions", mark_cond="rowid > ?1", old_survey="v.rowid <= ?2",
    publish={}, in_ids_param=" IN ({ids})",
    survey_table="surveys", survey_cond="surveys.rowid > ?2",
)
_GROUP_STATEMENTS = DIALECT.group_statements()
_FOLD = tuple(fold_statements("sqlite"))


class _Ops:
    """Performs :mod:`~collector.storage.store_logic` operations on the writer's connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.marks: tuple[int, int] = (0, 0)

    def __call__(self, op: logic.Op) -> Any:
        db = self.db
        if isinstance(op, logic.Run):
            params = op.params
            if not params:
                # The group's rowid marks, as many as the statement numbers.
                params = self.marks if "?2" in op.sql else self.marks[:1] if "?1" in op.sql else ()
            cur = db.execute(op.sql, params)
            return cur.fetchall() if op.fetch else None
        if isinstance(op, logic.RunIds):
            return _select_in(db, op.sql, op.ids)
        if isinstance(op, logic.Insert):
            columns = SessionRow._fields if op.table == "sessions" else SurveyRow._fields
            insert_rows(db, f"INSERT INTO {op.table} ({', '.join(columns)})", op.rows)
            return None
        if isinstance(op, logic.Mark):
            row = db.execute("SELECT (SELECT coalesce(max(rowid), 0) FROM sessions), "
                             "(SELECT coalesce(max(rowid), 0) FROM surveys)").fetchone()
            self.marks = (int(row[0]), int(row[1]))
            return None
        assert isinstance(op, logic.Forget)  # no id registry: nothing to forget
        return None


def _select_in(db: sqlite3.Connection, sql: str, ids: Sequence[Any]) -> list[Any]:
    """``sql`` with ``{ids}`` replaced by placeholders, run over ``ids`` in chunks."""
    out: list[Any] = []
    for chunk in _chunks(ids):
        out.extend(db.execute(sql.format(ids=",".join("?" * len(chunk))), chunk).fetchall())
    return out


class SQLiteStorage(SqlStore):
    """The embedded default: one file, WAL, ``synchronous=FULL``, group commit."""

    def __init__(
        self, path: Path, *, queue_batches: int = 512, group_records: int = 10_000,
        retry_after_s: int = 10, read_connections: int = 2,
    ) -> None:
        self.path = path
        self.location = str(path.resolve())
        self._n_readers = read_connections
        self._writer = WriterThread(path)
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all_readers: list[aiosqlite.Connection] = []
        self._writes = group_commit.GroupCommitQueue(
            self._write_group, name="sqlite-writer", max_batches=queue_batches,
            max_records=group_records, retry_after_s=retry_after_s,
            may_be_one_upload=_may_be_one_upload,
        )
        self._state = "new"
        self._fold = logic.FoldClock()

    # -- life cycle ----------------------------------------------------------------------
    async def open(self) -> None:
        if self._state != "new":
            raise StorageError(f"store {self.location} was already opened")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            await self._writer.open()
            await self._writer.run(self._migrate)
            for _ in range(self._n_readers):
                conn = await self._connect_reader()
                self._all_readers.append(conn)
                self._readers.put_nowait(conn)
        except SchemaError:
            await self._release()
            raise
        except (OSError, sqlite3.Error) as exc:
            await self._release()
            raise StorageError(f"cannot open SQLite store {self.location}: {exc}") from exc
        self._writes.start()
        self._state = "open"

    async def _connect_reader(self) -> aiosqlite.Connection:
        """A read-only connection on its own aiosqlite thread, with the writer's settings."""
        return await aiosqlite.Connection(partial(connect, self.path, query_only=True), 64)

    async def _release(self) -> None:
        for conn in self._all_readers:
            await conn.close()
        self._all_readers.clear()
        await self._writer.close()

    def _check_open(self) -> None:
        if self._state != "open":
            raise StoreClosedError(f"store {self.location} is {self._state}, not open")

    # -- writes --------------------------------------------------------------------------
    def _migrate(self, db: sqlite3.Connection) -> None:
        """Bring the schema to the latest version (see :mod:`.migrations`)."""
        upgrade_sqlite(db, self.location, at_start=True, progress=lambda m: log.info("%s", m))

    @staticmethod
    def _rebuild_all(db: sqlite3.Connection) -> None:
        logic.drive_sync(logic.rebuild_all(DIALECT), _Ops(db))

    async def rebuild_aggregates(self) -> None:
        """Recompute every aggregate from the raw rows (after a bulk load, or to check)."""
        self._check_open()
        await self._writer.run(lambda db: transaction(db, self._rebuild_all))

    async def fold_aggregates(self) -> None:
        self._check_open()

        def fold(db: sqlite3.Connection) -> None:
            for sql in _FOLD:
                db.execute(sql)

        await self._writer.run(lambda db: transaction(db, fold))
        self._fold.stored(0, True)

    async def _write_group(self, uploads: list[group_commit.Upload]) -> list[group_commit.WriteResult]:
        fold = _FOLD if self._fold.due else ()

        # The whole group, statements and aggregate deltas alike, in one hop to the writer.
        def write(db: sqlite3.Connection) -> tuple[list[group_commit.WriteResult], int]:
            results = self._write_uploads(db, uploads, fold)
            # The alerts in the same transaction as the records that raise them.
            return results, write_sqlite(db, self.outbox, uploads, results)

        results, dropped = await self._writer.run(lambda db: transaction(db, write))
        self._fold.stored(sum(len(u.rows) for u in uploads), bool(fold))
        if dropped and self.outbox is not None:
            self.outbox.dropped(dropped)
        return results

    def _refusals(self, db: sqlite3.Connection, uploads: list[group_commit.Upload]) -> dict[int, TokenRefusedError]:
        """The uploads whose token does not allow them, read in the write transaction: a
        token revoked by ``box-revoke`` (another process) stops working at once."""
        hashes = group_commit.upload_token_hashes(uploads)
        if not hashes:
            return {}
        # One row for all the tokens: every row stepped is a release of the GIL, and taking
        # it back waits while the event loop decodes (see ``insert_rows``).
        found: dict[bytes, TokenInfo] = {}
        for (doc,) in _select_in(
                db, "SELECT json_group_array(json_array(hex(token_hash), box_id, revoked)) "
                "FROM box_tokens WHERE token_hash IN ({ids})", hashes):
            for token_hex, box_id, revoked in orjson.loads(doc):
                found[bytes.fromhex(token_hex)] = TokenInfo(box_id, bool(revoked))
        return group_commit.refusals(uploads, found)

    def _write_uploads(self, db: sqlite3.Connection, uploads: list[group_commit.Upload],
                       fold: Sequence[str]) -> list[group_commit.WriteResult]:
        refused = self._refusals(db, uploads)
        # Nearly every group holds no record the store already has, so it is stored
        # straight away: a record held shows as a primary-key conflict, which rolls the
        # group back to be stored after asking. Asking first would look every id up twice
        # (the insert looks it up again). Only ids held as the other kind of record must be
        # asked for first, as no key catches them (a session's id among the surveys).
        db.execute("SAVEPOINT fresh")
        try:
            results = self._store_group(db, uploads, refused, self._held(db, uploads, refused, True), fold)
        except sqlite3.IntegrityError:
            db.execute("ROLLBACK TO fresh")
            results = self._store_group(db, uploads, refused, self._held(db, uploads, refused, False), fold)
        db.execute("RELEASE fresh")
        return results

    def _held(self, db: sqlite3.Connection, uploads: list[group_commit.Upload],
              refused: dict[int, TokenRefusedError], other_kind_only: bool) -> set[str]:
        """The ids of the group's records that the store holds: as the other kind of record
        only, or as either."""
        sessions: set[str] = set()
        surveys: set[str] = set()
        for i, u in enumerate(uploads):
            if i not in refused:
                for r in u.rows:
                    (sessions if isinstance(r, SessionRow) else surveys).add(r.id)
        held: set[str] = set()
        for table, ids in (("surveys", sessions), ("sessions", surveys)) if other_kind_only else (
                ("sessions", sessions | surveys), ("surveys", sessions | surveys)):
            held.update(r[0] for r in _select_in(
                db, f"SELECT id FROM {table} WHERE id IN ({{ids}})", list(ids)))
        return held

    def _store_group(self, db: sqlite3.Connection, uploads: list[group_commit.Upload],
                     refused: dict[int, TokenRefusedError], held: set[str],
                     fold: Sequence[str]) -> list[group_commit.WriteResult]:
        """Store the records of the group that are not ``held`` (nor earlier in the group)."""
        new = {i: r for i, r in group_commit.first_rows(uploads, refused).items() if i not in held}
        sessions = [r for r in new.values() if isinstance(r, SessionRow)]
        surveys = [r for r in new.values() if isinstance(r, SurveyRow)]
        logic.drive_sync(logic.store_new(DIALECT, _GROUP_STATEMENTS, sessions, surveys, fold), _Ops(db))
        return group_commit.results_of(uploads, refused, set(new))

    async def _write(self, sql: str, params: Sequence[Any]) -> int:
        self._check_open()
        try:
            return await self._writer.run(lambda db: db.execute(sql, params).rowcount)
        except sqlite3.Error as exc:
            raise StorageError(f"write failed: {exc}") from exc

    # -- reads ---------------------------------------------------------------------------
    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Any]:
        self._check_open()
        conn = await self._readers.get()
        try:
            # One hop to the reader's thread (execute, fetch and close there), not three:
            # a token look-up runs on every upload.
            return list(await conn.execute_fetchall(sql, params))
        except aiosqlite.Error as exc:
            raise StorageError(f"read failed: {exc}") from exc
        finally:
            self._readers.put_nowait(conn)

    async def export_rows(self, kind: str, filters: Filters) -> AsyncIterator[ExportRow]:
        self._check_open()
        sql, params = export_sql(kind, filters, "?", ("rowid", "v.rowid"))
        # Its own connection: a long export must not hold a reader the report needs.
        conn = await self._connect_reader()
        try:
            async with conn.execute(sql, params) as cur:
                while True:
                    chunk = await cur.fetchmany(1000)
                    if not chunk:
                        break
                    for r in chunk:
                        yield ExportRow(bytes(r[0]), r[1], r[2], r[3], r[4], r[5], r[6])
        finally:
            await conn.close()

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

    async def set_meta_once(self, key: str, value: str) -> str:
        await self._write("INSERT OR IGNORE INTO nps_meta (key, value) VALUES (?, ?)", (key, value))
        kept = await self.get_meta(key)
        assert kept is not None
        return kept

    async def delete_box(self, box_id: str) -> int:
        self._check_open()

        def delete(db: sqlite3.Connection) -> int:
            n = logic.drive_sync(logic.delete_records(DIALECT, "{p}box_id = ?", "{p}box_id = ?", box_id),
                           _Ops(db))
            db.execute("DELETE FROM box_tokens WHERE box_id = ?", (box_id,))
            db.execute("DELETE FROM alert_outbox WHERE box_id = ?", (box_id,))
            return n

        return await self._writer.run(lambda db: transaction(db, delete))

    # -- alert outbox --------------------------------------------------------------------
    async def outbox_delete(self, alert_id: str) -> None:
        await self._write("DELETE FROM alert_outbox WHERE id = ?", (alert_id,))

    async def outbox_put_once(self, mark_key: str, alert: OutboxAlert) -> bool:
        self._check_open()

        def put(db: sqlite3.Connection) -> bool:
            if db.execute("INSERT OR IGNORE INTO nps_meta (key, value) VALUES (?, ?)",
                          (mark_key, alert.id)).rowcount == 0:
                return False
            db.execute(OUTBOX_INSERT.format(p="?, ?, ?, ?", conflict="OR IGNORE", tail=""),
                       (alert.id, alert.box_id, time.time_ns() // 1000, alert.body))
            return True

        try:
            return await self._writer.run(lambda db: transaction(db, put))
        except sqlite3.Error as exc:
            raise StorageError(f"write failed: {exc}") from exc

    # -- dashboard and retention ---------------------------------------------------------
    def sql_reader(self, *, large: bool = False) -> tuple[Fetch, str]:
        # SQLite sorts and groups in the reader's page cache, whatever the statement.
        return self._fetch, "?"

    async def purge_before(self, cutoff_us: int) -> int:
        self._check_open()

        def purge(db: sqlite3.Connection) -> int:
            return logic.drive_sync(
                logic.delete_records(DIALECT, "{p}started_us < ?", "{p}shown_us < ?", cutoff_us), _Ops(db))

        try:
            return await self._writer.run(lambda db: transaction(db, purge))
        except sqlite3.Error as exc:
            raise StorageError(f"purge failed: {exc}") from exc


def _may_be_one_upload(exc: BaseException) -> bool:
    """Whether a failed group write may come from a value one upload holds (an integer
    too large to bind, a constraint), rather than from the database file itself (I/O, a
    full disk, a lock: ``OperationalError``), which writing in parts cannot mend."""
    return not isinstance(exc, (sqlite3.OperationalError, OSError, StorageError))
