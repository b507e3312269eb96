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
from .aggregates import (
    BIN_KEY,
    BIN_VEC,
    KEY,
    SESSION_VEC,
    SURVEY_VEC,
    Deltas,
    Joined,
    ReportData,
    SessionCounts,
    day_of,
    day_ranges,
    day_sql,
    read_report_data,
    rebuild_params,
    rebuild_sql,
    upsert_parts,
)
from .base import BadQuality, DetractorRow, ExportRow, Storage
from .group_commit import GroupCommitQueue, Upload, WriteResult, refusals, upload_token_hashes
from .impact_sql import ImpactData, read_impact_data
from .migrations import upgrade_sqlite
from .outbox import (
    OUTBOX_INSERT,
    PENDING_SQL,
    OutboxAlert,
    pending_rows,
    write_sqlite,
)
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
from .sqlite_writer import WriterThread, connect, insert_rows, transaction

log = logging.getLogger("collector.storage")

#: SQLite's limit on bound parameters is 32766 in current builds; stay well under.
_ID_CHUNK = 900
_T = TypeVar("_T")


def _chunks(ids: Sequence[_T]) -> list[list[_T]]:
    return [list(ids[i:i + _ID_CHUNK]) for i in range(0, len(ids), _ID_CHUNK)]


class SQLiteStorage(Storage):
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
        self._writes = GroupCommitQueue(
            self._write_group, name="sqlite-writer", max_batches=queue_batches,
            max_records=group_records, retry_after_s=retry_after_s,
            may_be_one_upload=_may_be_one_upload,
        )
        self._state = "new"

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
            await self._close_connections()
            raise
        except (OSError, sqlite3.Error) as exc:
            await self._close_connections()
            raise StorageError(f"cannot open SQLite store {self.location}: {exc}") from exc
        self._writes.start()
        self._state = "open"

    async def _connect_reader(self) -> aiosqlite.Connection:
        """A read-only connection on its own aiosqlite thread, with the writer's settings."""
        return await aiosqlite.Connection(partial(connect, self.path, query_only=True), 64)

    async def close(self) -> None:
        if self._state in ("closed", "new"):
            self._state = "closed"
            return
        self._state = "closing"
        await self._writes.stop()
        await self._close_connections()
        self._state = "closed"

    async def _close_connections(self) -> None:
        for conn in self._all_readers:
            await conn.close()
        self._all_readers.clear()
        await self._writer.close()

    def _check_open(self) -> None:
        if self._state != "open":
            raise StoreClosedError(f"store {self.location} is {self._state}, not open")

    # -- writes --------------------------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        """Batches waiting for the writer."""
        return self._writes.depth

    async def ingest(self, rows: Sequence[Row], auth: UploadAuth | None = None) -> list[bool]:
        self._check_open()
        if not rows:
            return []
        # The sessions' aggregate counts need no database: counted here, on the event
        # loop, not on the one writer, which adds them up if it stores every row.
        counts = Deltas.count_sessions(r for r in rows if isinstance(r, SessionRow))
        return await self._writes.submit(rows, auth, counts)

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Bring the schema to the latest version (see :mod:`.migrations`)."""
        upgrade_sqlite(db, self.location, at_start=True, progress=lambda m: log.info("%s", m))

    def _rebuild_all(self, db: sqlite3.Connection) -> None:
        days = sorted(int(r[0]) for r in db.execute(
            f"SELECT DISTINCT {day_sql('started_us', 'sqlite')} FROM sessions UNION "
            f"SELECT DISTINCT {day_sql('shown_us', 'sqlite')} FROM surveys"
        ).fetchall())
        for table in ("agg_sessions", "agg_surveys", "agg_bins"):
            db.execute(f"DELETE FROM {table}")
        # Day by day: each statement reads one day's rows through the time indexes.
        self._rebuild_days(db, [(d, d + 1) for d in days])

    @staticmethod
    def _rebuild_days(db: sqlite3.Connection, ranges: Sequence[tuple[int, int]]) -> None:
        """Recompute the aggregates of whole days from the raw rows (inside a transaction)."""
        for d0, d1 in ranges:
            for sql, kind in rebuild_sql("sqlite", "?"):
                db.execute(sql, rebuild_params(kind, d0, d1))

    async def rebuild_aggregates(self) -> None:
        """Recompute every aggregate from the raw rows (after a bulk load, or to check)."""
        self._check_open()
        await self._writer.run(lambda db: transaction(db, self._rebuild_all))

    async def _write_group(self, uploads: list[Upload]) -> list[WriteResult]:
        # The whole group, statements and aggregate deltas alike, in one hop to the writer.
        def write(db: sqlite3.Connection) -> tuple[list[WriteResult], int]:
            results = self._write_uploads(db, uploads)
            # The alerts in the same transaction as the records that raise them.
            return results, write_sqlite(db, self.outbox, uploads, results)

        results, dropped = await self._writer.run(lambda db: transaction(db, write))
        if dropped and self.outbox is not None:
            self.outbox.dropped(dropped)
        return results

    def _refusals(self, db: sqlite3.Connection, uploads: list[Upload]) -> dict[int, TokenRefusedError]:
        """The uploads whose token does not allow them, read in the write transaction: a
        token revoked by ``box-revoke`` (another process) stops working at once."""
        hashes = upload_token_hashes(uploads)
        if not hashes:
            return {}
        # One row for all the tokens: every row stepped is a release of the GIL, and taking
        # it back waits while the event loop decodes (see ``insert_rows``).
        found: dict[bytes, TokenInfo] = {}
        for (doc,) in self._select_in(
                db, "SELECT json_group_array(json_array(hex(token_hash), box_id, revoked)) "
                "FROM box_tokens WHERE token_hash IN ({ids})", hashes):
            for token_hex, box_id, revoked in orjson.loads(doc):
                found[bytes.fromhex(token_hex)] = TokenInfo(box_id, bool(revoked))
        return refusals(uploads, found)

    def _write_uploads(self, db: sqlite3.Connection, uploads: list[Upload]) -> list[WriteResult]:
        refused = self._refusals(db, uploads)
        # Nearly every group holds no record the store already has, so it is stored
        # straight away: a record held shows as a primary-key conflict, which rolls the
        # group back to be stored after asking. Asking first would look every id up twice
        # (the insert looks it up again). Only ids held as the other kind of record must be
        # asked for first, as no key catches them (a session's id among the surveys).
        db.execute("SAVEPOINT fresh")
        try:
            results = self._store_group(db, uploads, refused, self._held(db, uploads, refused, True))
        except sqlite3.IntegrityError:
            db.execute("ROLLBACK TO fresh")
            results = self._store_group(db, uploads, refused, self._held(db, uploads, refused, False))
        db.execute("RELEASE fresh")
        return results

    def _held(self, db: sqlite3.Connection, uploads: list[Upload],
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
            held.update(r[0] for r in self._select_in(
                db, f"SELECT id FROM {table} WHERE id IN ({{ids}})", list(ids)))
        return held

    def _store_group(self, db: sqlite3.Connection, uploads: list[Upload],
                     refused: dict[int, TokenRefusedError], held: set[str]) -> list[WriteResult]:
        """Store the records of the group that are not ``held`` (nor earlier in the group)."""
        held = set(held)
        results: list[WriteResult] = []
        sessions: list[SessionRow] = []
        surveys: list[SurveyRow] = []
        counts: list[SessionCounts] | None = []
        for i, u in enumerate(uploads):
            if i in refused:
                results.append(refused[i])
                continue
            if counts is not None:
                if u.counts is not None:
                    counts.append(u.counts)
                else:
                    counts = None
            res = []
            for r in u.rows:
                if r.id in held:
                    res.append(False)
                    counts = None  # not every row is stored: count the stored ones
                    continue
                held.add(r.id)
                res.append(True)
                if isinstance(r, SessionRow):
                    sessions.append(r)
                else:
                    assert isinstance(r, SurveyRow)
                    surveys.append(r)
            results.append(res)
        if sessions or surveys:
            self._store_new(db, sessions, surveys, counts)
        return results

    @staticmethod
    def _select_in(db: sqlite3.Connection, sql: str, ids: Sequence[Any]) -> list[Any]:
        """``sql`` with ``{ids}`` replaced by placeholders, run over ``ids`` in chunks."""
        out: list[Any] = []
        for chunk in _chunks(ids):
            out.extend(db.execute(sql.format(ids=",".join("?" * len(chunk))), chunk).fetchall())
        return out

    def _store_new(
        self, db: sqlite3.Connection, sessions: list[SessionRow], surveys: list[SurveyRow],
        counts: Sequence[SessionCounts] | None = None,
    ) -> None:
        """Insert new rows and keep the aggregates; the same steps as the PostgreSQL store.
        ``counts``, if given, counts ``sessions`` as not surveyed (:meth:`ingest`)."""
        deltas = Deltas()
        new_session_ids = [s.id for s in sessions]
        new_survey_ids = {v.id for v in surveys}
        if surveys:
            insert_rows(db, f"INSERT INTO surveys ({', '.join(SURVEY_COLUMNS)})",
                        surveys)
        # A survey and its session join in whatever order they arrive: the new sessions'
        # surveys, new or stored earlier, in one look-up.
        their_surveys = self._select_in(
            db, f"SELECT id, session_id, {', '.join(SURVEY_FACT_COLUMNS)} FROM surveys "
            "WHERE session_id IN ({ids})", new_session_ids)
        surveyed = {r[1] for r in their_surveys}
        if sessions:
            # Bound as they are, ``surveyed`` left to its default; the few sessions whose
            # survey is here already get their own statement.
            plain = [s for s in sessions if s.id not in surveyed] if surveyed else sessions
            insert_rows(db, f"INSERT INTO sessions ({', '.join(SessionRow._fields)})", plain)
            if surveyed:
                insert_rows(db, f"INSERT INTO sessions ({', '.join(SESSION_COLUMNS)})",
                            [session_values(s, True) for s in sessions if s.id in surveyed])
            if counts is None:
                deltas.new_sessions(sessions, surveyed)
            else:
                for c in counts:
                    deltas.add_counts(c)
                if surveyed:
                    deltas.surveyed_now(s for s in sessions if s.id in surveyed)
        new_sessions = {s.id: s for s in sessions}
        linked = list({v.session_id for v in surveys
                       if v.session_id is not None and v.session_id not in new_sessions})
        flipped = self._select_in(
            db, f"UPDATE sessions SET surveyed = 1 WHERE surveyed = 0 AND id IN ({{ids}}) "
            f"RETURNING {', '.join(SESSION_FACT_COLUMNS)}", linked)
        for r in flipped:
            facts = session_facts_row(r)
            deltas.session(facts, False, -1)
            deltas.session(facts, True, 1)
        # Only the sessions a survey needs (most sessions have none).
        joined: dict[str, Joined] = {
            sid: session_joined(new_sessions[sid]) for sid in
            {v.session_id for v in surveys} | {r[1] for r in their_surveys} if sid in new_sessions}
        for r in self._select_in(
            db, f"SELECT id, {', '.join(JOINED_COLUMNS)} FROM sessions WHERE id IN ({{ids}})", linked):
            joined[r[0]] = joined_row(r[1:])
        for v in surveys:
            deltas.survey(survey_facts_of(v), joined.get(v.session_id) if v.session_id else None)
        # Surveys stored earlier whose session arrives now move to its segment and bins.
        for r in their_surveys:
            if r[0] in new_survey_ids:
                continue
            moved = survey_facts_row(r[2:])
            deltas.survey(moved, None, -1)
            deltas.survey(moved, joined[r[1]], 1)
        self._apply(db, deltas)

    @staticmethod
    def _apply(db: sqlite3.Connection, deltas: Deltas) -> None:
        for table, key, vec, rows in (
            ("agg_sessions", KEY, SESSION_VEC, deltas.session_rows()),
            ("agg_surveys", KEY, SURVEY_VEC, deltas.survey_rows()),
            ("agg_bins", BIN_KEY, BIN_VEC, deltas.bin_rows()),
        ):
            if rows:
                head, tail = upsert_parts(table, key, vec, "sqlite")
                insert_rows(db, head, rows, tail)

    def _delete_records(
        self, db: sqlite3.Connection, session_cond: str, survey_cond: str, param: Any
    ) -> int:
        """Delete the sessions and surveys matching the conditions (``{p}`` is the table
        alias) inside the caller's transaction, and keep the aggregates and the surveyed
        flags of what remains right: the days they touch are recomputed from the rows."""
        def cond(c: str, alias: str) -> str:
            return c.format(p=alias)

        days: set[int] = set()
        for sql in (
            f"SELECT DISTINCT {day_sql('s.started_us', 'sqlite')} FROM sessions s WHERE {cond(session_cond, 's.')}",
            f"SELECT DISTINCT {day_sql('v.shown_us', 'sqlite')} FROM surveys v WHERE {cond(survey_cond, 'v.')}",
            # Surveys kept whose session goes: they leave its segment and bins.
            f"SELECT DISTINCT {day_sql('v.shown_us', 'sqlite')} FROM surveys v "
            f"JOIN sessions s ON s.id = v.session_id WHERE {cond(session_cond, 's.')}",
        ):
            days.update(r[0] for r in db.execute(sql, (param,)).fetchall())
        linked = [r[0] for r in db.execute(
            f"SELECT DISTINCT v.session_id FROM surveys v WHERE {cond(survey_cond, 'v.')} "
            "AND v.session_id IS NOT NULL", (param,),
        ).fetchall()]
        n = db.execute(f"DELETE FROM sessions WHERE {cond(session_cond, '')}", (param,)).rowcount
        n += db.execute(f"DELETE FROM surveys WHERE {cond(survey_cond, '')}", (param,)).rowcount
        # Sessions kept that lose their last survey are no longer surveyed.
        for r in self._select_in(
            db, "UPDATE sessions SET surveyed = 0 WHERE surveyed = 1 AND id IN ({ids}) AND NOT "
            "EXISTS (SELECT 1 FROM surveys v WHERE v.session_id = sessions.id) RETURNING started_us",
            linked,
        ):
            days.add(day_of(r[0]))
        self._rebuild_days(db, day_ranges(days))
        return n

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

    async def session_groups(self, filters: Filters) -> list[SessionGroup]:
        where, params = where_sessions(filters, "?")
        return [session_group_row(r) for r in await self._fetch(session_groups_sql(where), params)]

    async def report_data(self, filters: Filters) -> ReportData:
        return await read_report_data(self._fetch, filters, "?")

    async def impact_data(self, filters: Filters) -> ImpactData:
        return await read_impact_data(self._fetch, filters, "?")

    async def survey_facts(self, filters: Filters) -> list[SurveyFact]:
        where, params = where_surveys(filters, "?")
        return [survey_fact_row(r) for r in await self._fetch(survey_facts_sql(where), params)]

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

    async def counts(self) -> dict[str, int]:
        # From the rollup aggregates: exact, and a count(*) over millions of rows is not
        # what a readiness probe should cost.
        rows = await self._fetch(
            "SELECT (SELECT coalesce(sum(n), 0) FROM agg_sessions WHERE lvl = 1), "
            "(SELECT coalesce(sum(shown), 0) FROM agg_surveys WHERE lvl = 1)", ()
        )
        return {"sessions": int(rows[0][0]), "surveys": int(rows[0][1])}

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

        def delete(db: sqlite3.Connection) -> int:
            n = self._delete_records(db, "{p}box_id = ?", "{p}box_id = ?", box_id)
            db.execute("DELETE FROM box_tokens WHERE box_id = ?", (box_id,))
            db.execute("DELETE FROM alert_outbox WHERE box_id = ?", (box_id,))
            return n

        return await self._writer.run(lambda db: transaction(db, delete))

    # -- alert outbox --------------------------------------------------------------------
    async def outbox_pending(self, limit: int) -> list[OutboxAlert]:
        return pending_rows(await self._fetch(PENDING_SQL.format(p="?"), (limit,)))

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
    async def bad_detractors(
        self, filters: Filters, bad: BadQuality, limit: int
    ) -> list[DetractorRow]:
        where, params = where_surveys(filters, "?")
        cond = ("v.outcome = 'answered' AND v.score <= 6 AND (s.failed = 1 "
                "OR s.rebuffer_ratio > ? OR s.startup_ms > ? OR s.avg_bitrate_kbps <= ?)")
        where = f"{where} AND {cond}" if where else f"WHERE {cond}"
        rows = await self._fetch(
            "SELECT v.id, v.box_id, v.shown_us, v.score, v.reason, v.region, v.model, "
            "v.firmware, s.id, s.channel, s.content_type, s.startup_ms, s.watch_s, "
            "s.rebuffer_count, s.rebuffer_ratio, s.avg_bitrate_kbps, s.failed "
            f"FROM surveys v JOIN sessions s ON s.id = v.session_id {where} "
            "ORDER BY v.shown_us DESC, v.id LIMIT ?",
            [*params, bad.rebuffer_ratio_above, bad.startup_ms_above,
             bad.bitrate_kbps_at_most, limit],
        )
        return [
            DetractorRow(
                survey_id=r[0], box_id=r[1], shown_us=r[2], score=r[3], reason=r[4],
                region=r[5], model=r[6], firmware=r[7], session_id=r[8], channel=r[9],
                content_type=r[10], startup_ms=r[11], watch_s=r[12], rebuffer_count=r[13],
                rebuffer_ratio=r[14], avg_bitrate_kbps=r[15], failed=bool(r[16]),
            )
            for r in rows
        ]

    def sql_reader(self) -> tuple[Fetch, str]:
        return self._fetch, "?"

    async def segment_values(self, limit: int = 500) -> dict[str, list[str]]:
        return await read_segment_values(self._fetch, limit)

    async def response_counts(self, filters: Filters) -> dict[str, list[tuple[int, int]]]:
        return await read_response_counts(self._fetch, filters, "?")

    async def purge_before(self, cutoff_us: int) -> int:
        self._check_open()

        def purge(db: sqlite3.Connection) -> int:
            return self._delete_records(db, "{p}started_us < ?", "{p}shown_us < ?", cutoff_us)

        try:
            return await self._writer.run(lambda db: transaction(db, purge))
        except sqlite3.Error as exc:
            raise StorageError(f"purge failed: {exc}") from exc


def _may_be_one_upload(exc: BaseException) -> bool:
    """Whether a failed group write may come from a value one upload holds (an integer
    too large to bind, a constraint), rather than from the database file itself (I/O, a
    full disk, a lock: ``OperationalError``), which writing in parts cannot mend."""
    return not isinstance(exc, (sqlite3.OperationalError, OSError, StorageError))
