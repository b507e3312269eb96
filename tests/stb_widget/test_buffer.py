"""The offline buffer: bounds, eviction order, survey states, restart, WAL."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from protocol import Qos, SessionRecord, SurveyRecord, record_to_json
from stb_widget.buffer import MemoryBuffer, RecordStore, SqliteBuffer
from stb_widget.config import BufferSection
from stb_widget.errors import StoreError
from stb_widget.ids import uuid7

from .conftest import FakeClock


def sess(clock: FakeClock) -> SessionRecord:
    qos = Qos(startup_ms=1, watch_s=1.0, rebuffer_count=0, rebuffer_s=0.0,
              avg_bitrate_kbps=1.0, bitrate_switches=0, failed=False)
    w = clock.wall()
    return SessionRecord(id=uuid7(), kind="session", started_at=w, ended_at=w,
                         channel="NPO1", content_type="live", qos=qos)


def survey(clock: FakeClock, outcome: str = "answered", reason: str | None = None) -> SurveyRecord:
    w = clock.wall()
    answered = outcome == "answered"
    return SurveyRecord(id=uuid7(), kind="survey", session_id=None, shown_at=w,
                        answered_at=w if answered else None, outcome=outcome,  # type: ignore[arg-type]
                        score=9 if answered else None, reason=reason, locale="nl")  # type: ignore[arg-type]


async def open_store(kind: str, tmp_path: Path, clock: FakeClock, **limits: float) -> RecordStore:
    section = BufferSection(**limits)  # type: ignore[arg-type]
    if kind == "sqlite":
        return await SqliteBuffer.open(tmp_path / "b.sqlite3", section, clock)
    return MemoryBuffer(section, clock)


@pytest.fixture(params=["sqlite", "memory"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_eviction_oldest_sessions_first_answers_last(kind: str, tmp_path: Path) -> None:
    clock = FakeClock()
    store = await open_store(kind, tmp_path, clock, max_records=10)
    answers = []
    for _ in range(3):
        a = survey(clock)
        await store.finished(a)
        answers.append(a.id)
        clock.advance(1)
    sessions = []
    for _ in range(12):
        s = sess(clock)
        await store.add_session(s)
        sessions.append(s.id)
        clock.advance(1)
    kept = {r.id for r in await store.fetch(100, 10**9)}
    assert kept == set(answers) | set(sessions[5:])
    assert store.evictions["full_session"] == 5
    # only answers left to drop: the oldest answer goes
    store2 = await open_store(kind, tmp_path / "2", clock, max_records=10)
    ids = []
    for _ in range(11):
        a = survey(clock)
        ids.append(a.id)
        await store2.finished(a)
    assert {r.id for r in await store2.fetch(100, 10**9)} == set(ids[1:])
    assert store2.evictions["full_survey"] == 1
    await store.close()
    await store2.close()


async def test_bytes_bound(kind: str, tmp_path: Path) -> None:
    clock = FakeClock()
    store = await open_store(kind, tmp_path, clock, max_bytes=4096)
    for _ in range(40):
        await store.add_session(sess(clock))
    held = await store.fetch(1000, 10**9)
    assert sum(len(r.body) for r in held) <= 4096
    assert len(held) + store.evictions["full_session"] == 40
    await store.close()


async def test_age_bound(kind: str, tmp_path: Path) -> None:
    clock = FakeClock()
    store = await open_store(kind, tmp_path, clock, max_age_days=30)
    old = sess(clock)
    await store.add_session(old)
    clock.advance(timedelta(days=31).total_seconds())
    new = sess(clock)
    await store.add_session(new)
    assert [r.id for r in await store.fetch(10, 10**9)] == [new.id]
    assert store.evictions["age_session"] == 1
    await store.close()


async def test_confirmed_is_not_uploadable_until_finished(kind: str, tmp_path: Path) -> None:
    clock = FakeClock()
    store = await open_store(kind, tmp_path, clock)
    a = survey(clock)
    await store.confirmed(a)
    assert store.ready_count == 0 and await store.fetch(10, 10**9) == []
    assert store.cooldowns().answered_shown == a.shown_at
    store.changed.clear()
    final = SurveyRecord(**{**{f: getattr(a, f) for f in a.__slots__}, "reason": "picture"})
    await store.finished(final)
    assert store.changed.is_set()
    got = await store.fetch(10, 10**9)
    assert len(got) == 1 and b'"reason":"picture"' in got[0].body
    await store.delete([a.id])
    assert store.ready_count == 0
    await store.close()


async def test_fetch_limits(kind: str, tmp_path: Path) -> None:
    clock = FakeClock()
    store = await open_store(kind, tmp_path, clock)
    made = []
    for _ in range(30):
        s = sess(clock)
        made.append(s.id)
        await store.add_session(s)
    assert [r.id for r in await store.fetch(7, 10**9)] == made[:7]
    one = len((await store.fetch(1, 10**9))[0].body)
    assert len(await store.fetch(100, one * 3 + 1)) == 3
    assert len(await store.fetch(100, 1)) == 1  # always at least one
    await store.close()


async def test_restart_keeps_records_cooldowns_and_releases_confirmed(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "b.sqlite3"
    store = await SqliteBuffer.open(path, BufferSection(), clock)
    s = sess(clock)
    a = survey(clock)
    d = survey(clock, "dismissed")
    await store.add_session(s)
    await store.confirmed(a)  # the pick-list never closed: power cut
    await store.finished(d)
    await store.close()
    store = await SqliteBuffer.open(path, BufferSection(), clock)
    assert {r.id for r in await store.fetch(10, 10**9)} == {s.id, a.id, d.id}
    assert store.cooldowns().answered_shown == a.shown_at
    assert store.cooldowns().dismissed_shown == d.shown_at
    assert store.changed.is_set()
    async with store._db.execute("PRAGMA journal_mode") as cur:
        row = await cur.fetchone()
    assert row is not None and row[0] == "wal"
    await store.close()


async def test_corrupt_file_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    store = await SqliteBuffer.open(path, BufferSection(), FakeClock())
    assert store.ready_count == 0
    assert list(tmp_path.glob("b.sqlite3.corrupt-*"))
    await store.close()


async def test_answers_are_written_with_synchronous_full(tmp_path: Path) -> None:
    clock = FakeClock()
    store = await SqliteBuffer.open(tmp_path / "b.sqlite3", BufferSection(), clock)
    statements: list[str] = []
    real = store._db.execute

    def spy(sql: str, *args: object) -> object:
        statements.append(sql.split()[0] + " " + sql.split()[1] if " " in sql else sql)
        return real(sql, *args)

    store._db.execute = spy  # type: ignore[method-assign,assignment]
    await store.add_session(sess(clock))
    assert "PRAGMA synchronous=FULL" not in statements  # sessions: no fsync per write
    statements.clear()
    await store.confirmed(survey(clock))
    first_insert = next(i for i, s in enumerate(statements) if s.startswith("INSERT INTO"))
    assert "PRAGMA synchronous=FULL" in statements[:first_insert]
    assert "COMMIT" in statements and statements.index("COMMIT") > first_insert
    assert statements.index("PRAGMA synchronous=NORMAL") > statements.index("COMMIT")
    await store.close()


# The layout before bench/agent_flash.py's single b-tree (as commit 7759866 created it).
_LAYOUT_0 = """
CREATE TABLE records (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
    ready INTEGER NOT NULL, created_us INTEGER NOT NULL, ready_us INTEGER,
    size INTEGER NOT NULL, body BLOB NOT NULL);
CREATE INDEX records_ready ON records (ready, seq);
CREATE TABLE state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


async def test_a_buffer_of_the_old_layout_is_rebuilt_with_its_records(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "b.sqlite3"
    recs = [sess(clock), survey(clock), sess(clock)]
    con = sqlite3.connect(path)
    con.executescript(_LAYOUT_0)
    # Stored out of seq order on purpose: the order kept must be seq's, not the file's.
    now = int(clock.wall().timestamp() * 1e6)
    for seq, r, ready in ((7, recs[0], 1), (9, recs[2], 1), (8, recs[1], 0)):
        body = orjson.dumps(record_to_json(r))
        con.execute("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (seq, r.id, r.kind, ready, now, now if ready else None, len(body), body))
    con.execute("INSERT INTO state VALUES ('answered_shown_us', 1234567)")
    con.commit()
    con.close()
    store = await SqliteBuffer.open(path, BufferSection(), clock)
    # The unready answer was confirmed before the restart: it goes out too (contract §2).
    got = await store.fetch(10, 10**9)
    assert [r.id for r in got] == [recs[0].id, recs[1].id, recs[2].id]
    assert store.cooldowns().answered_shown == datetime(1970, 1, 1, 0, 0, 1, 234567,
                                                        tzinfo=UTC)
    await store.delete([recs[1].id])
    await store.close()
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 1
        indexes = con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
        assert indexes == [("sqlite_autoindex_state_1",)]
        assert [r[0] for r in con.execute("SELECT id FROM records ORDER BY seq")] == [
            recs[0].id, recs[2].id]
    finally:
        con.close()


async def test_a_buffer_newer_than_the_agent_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version = 9")
    con.close()
    with pytest.raises(StoreError, match="layout 9 is newer than this agent's"):
        await SqliteBuffer.open(path, BufferSection(), FakeClock())
    assert path.exists() and not list(tmp_path.glob("*.corrupt-*"))  # not set aside


async def test_no_other_process_opens_the_buffer_while_it_is_open(tmp_path: Path) -> None:
    """The price of the wal-index in the agent's heap (exclusive locking, no -shm file):
    readers wait until it closes; then every record is there for them."""
    clock = FakeClock()
    path = tmp_path / "b.sqlite3"
    store = await SqliteBuffer.open(path, BufferSection(), clock)
    s = sess(clock)
    await store.add_session(s)
    assert not Path(f"{path}-shm").exists()
    con = sqlite3.connect(path, timeout=0.1)
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            con.execute("SELECT count(*) FROM records").fetchone()
    finally:
        con.close()
    await store.close()
    con = sqlite3.connect(path)
    try:
        assert con.execute("SELECT id FROM records").fetchall() == [(s.id,)]
    finally:
        con.close()


async def test_an_id_not_handed_out_is_still_deleted(tmp_path: Path) -> None:
    # delete() finds rows by the seq remembered from fetch(); an id it was never handed
    # (a caller's own list) is found by a scan.
    clock = FakeClock()
    store = await SqliteBuffer.open(tmp_path / "b.sqlite3", BufferSection(), clock)
    a, b = sess(clock), sess(clock)
    await store.add_session(a)
    await store.add_session(b)
    await store.delete([b.id])
    assert [r.id for r in await store.fetch(10, 10**9)] == [a.id]
    assert store.ready_count == 1
    await store.close()


async def test_a_confirmed_answer_evicted_before_it_is_final_is_stored_again(
        tmp_path: Path) -> None:
    clock = FakeClock()
    store = await SqliteBuffer.open(tmp_path / "b.sqlite3", BufferSection(max_records=10),
                                    clock)
    a = survey(clock)
    await store.confirmed(a)
    later = []
    for _ in range(10):  # only answers in the buffer: the oldest, ``a``, goes
        x = survey(clock)
        later.append(x.id)
        await store.finished(x)
    assert store.evictions["full_survey"] == 1
    await store.finished(a)  # its final form comes after all: kept as a new record
    ids = [r.id for r in await store.fetch(100, 10**9)]
    assert a.id in ids and len(ids) == 10
    await store.close()
