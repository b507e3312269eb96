"""The uploader against a fake collector that answers each status in turn."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestServer

from protocol import (
    SessionRecord,
    decode_batch,
    format_rfc3339,
    inflate,
    parse_rfc3339,
    record_to_json,
)
from stb_widget.buffer import MemoryBuffer, SqliteBuffer
from stb_widget.config import BufferSection, Config
from stb_widget.http_client import HttpClient, Response
from stb_widget.sync import MAX_BATCH_BYTES, Uploader, is_ack, parse_retry_after

from .conftest import BASE_WALL, FakeClock, make_config
from .fake_collector import FakeCollector
from .test_buffer import sess


class RecordingClock(FakeClock):
    def __init__(self) -> None:
        super().__init__()
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await super().sleep(seconds)


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    """The box's own client, as the agent makes it (the default timeouts)."""
    client = HttpClient(timeout_s=30, connect_timeout_s=10)
    yield client
    await client.close()


@pytest.fixture
async def collector() -> AsyncIterator[tuple[FakeCollector, str]]:
    fake = FakeCollector()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("/"))
    await server.close()


def config(tmp_path: Path, url: str, **collector: object) -> Config:
    return make_config(tmp_path, collector={
        "url": url, "backoff_base_s": 2, "backoff_cap_s": 600, "auth_pause_s": 1800,
        "upload_delay_s": 0, "boot_jitter_s": 0, **collector})


async def setup(http: HttpClient, tmp_path: Path, url: str, n: int = 3, **collector: object
                ) -> tuple[Uploader, MemoryBuffer, RecordingClock, HttpClient]:
    clock = RecordingClock()
    store = MemoryBuffer(BufferSection(), clock)
    for _ in range(n):
        await store.add_session(sess(clock))
    up = Uploader(config(tmp_path, url, **collector), store, http, clock, random.Random(1))
    return up, store, clock, http


@pytest.mark.parametrize("step", [408, 500, 502, 503, 504, "reset", "portal", 400, 415, 404])
async def test_retryable_and_other_errors_keep_records_and_back_off(
    tmp_path: Path, collector: tuple[FakeCollector, str], http: HttpClient, step: int | str
) -> None:
    fake, url = collector
    fake.script = [step, step, step]
    fake.retry_after = ""  # a 503 without Retry-After: plain backoff
    up, store, clock, _ = await setup(http, tmp_path, url)
    for attempt in range(3):
        result = await up.upload_once()
        assert result is not None and result.verdict in ("retry", "client_error")
        assert store.ready_count == 3
        ceiling = min(600, 2 * 2**attempt)
        assert 0 <= clock.sleeps[-1] <= ceiling
    assert len(clock.sleeps) == 3
    await up.upload_once()
    assert store.ready_count == 0 and len(fake.records) == 3
    # sent_at is set afresh on every attempt
    sent = [s.sent_at for s in fake.seen]
    assert len(set(sent)) == len(sent)


async def test_retry_after_is_honoured(tmp_path: Path, collector: tuple[FakeCollector, str], http: HttpClient) -> None:
    fake, url = collector
    fake.script = [429, 503]
    fake.retry_after = "7"
    up, store, clock, _ = await setup(http, tmp_path, url, backoff_base_s=0.01)
    await up.upload_once()
    await up.upload_once()
    assert clock.sleeps[0] >= 7 and clock.sleeps[1] >= 7
    assert store.ready_count == 3
    await up.upload_once()
    assert store.ready_count == 0


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_errors_keep_everything_and_pause(
    tmp_path: Path, collector: tuple[FakeCollector, str], http: HttpClient, status: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, url = collector
    fake.script = [status]
    up, store, clock, _ = await setup(http, tmp_path, url)
    with caplog.at_level(logging.DEBUG):
        await up.upload_once()
    assert store.ready_count == 3
    assert clock.sleeps == [1800]
    assert any(r.levelno == logging.ERROR and "UPLOADS PAUSED" in r.getMessage()
               for r in caplog.records)
    assert "secret-token" not in caplog.text
    assert fake.seen[0].headers["Authorization"] == "Bearer secret-token"
    await up.upload_once()
    assert store.ready_count == 0


async def test_413_splits_the_batch(tmp_path: Path, collector: tuple[FakeCollector, str], http: HttpClient) -> None:
    fake, url = collector
    fake.script = [413, 413]
    up, store, clock, _ = await setup(http, tmp_path, url, n=10)
    await up.upload_once()
    await up.upload_once()
    await up.upload_once()
    assert [len(s.ids) for s in fake.seen] == [10, 5, 2]
    assert clock.sleeps == []
    assert store.ready_count == 8
    for _ in range(2):
        await up.upload_once()
    # after a success, batches are full size again
    assert [len(s.ids) for s in fake.seen][-1] == 8
    assert store.ready_count == 0 and len(fake.records) == 10


async def test_good_200_deletes_and_wire_is_the_contract(
    tmp_path: Path, collector: tuple[FakeCollector, str], http: HttpClient
) -> None:
    fake, url = collector
    up, store, _, _ = await setup(http, tmp_path, url, n=3)
    await up.upload_once()
    seen = fake.seen[0]
    assert seen.headers["Content-Encoding"] == "gzip"
    assert seen.headers["Content-Type"] == "application/json"
    assert parse_rfc3339(seen.sent_at) == BASE_WALL
    assert store.ready_count == 0


async def test_batch_waits_upload_delay_unless_full(
    tmp_path: Path, collector: tuple[FakeCollector, str], http: HttpClient
) -> None:
    import asyncio

    fake, url = collector
    clock = RecordingClock()
    store = MemoryBuffer(BufferSection(), clock)
    up = Uploader(config(tmp_path, url, upload_delay_s=60, boot_jitter_s=0), store, http, clock)
    task = asyncio.create_task(up.run())
    await asyncio.sleep(0.05)
    assert fake.seen == []  # nothing to send: waits on the store, no polling
    await store.add_session(sess(clock))
    for _ in range(200):
        if fake.seen:
            break
        await asyncio.sleep(0.01)
    assert parse_rfc3339(fake.seen[0].sent_at) - BASE_WALL >= timedelta(seconds=60)
    # 500 records make a full batch: it goes at once
    start = clock.wall()
    for _ in range(600):
        await store.add_session(sess(clock))
    for _ in range(300):
        if len(fake.seen) >= 2:
            break
        await asyncio.sleep(0.01)
    assert len(fake.seen[1].ids) == 500
    assert parse_rfc3339(fake.seen[1].sent_at) == start
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_boot_jitter(tmp_path: Path, collector: tuple[FakeCollector, str], http: HttpClient) -> None:
    import asyncio

    fake, url = collector
    up, _, clock, _ = await setup(http, tmp_path, url, boot_jitter_s=300)
    task = asyncio.create_task(up.run())
    for _ in range(200):
        if fake.seen:
            break
        await asyncio.sleep(0.01)
    assert 0 < clock.sleeps[0] <= 300
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_every_status_in_turn_then_everything_arrives_once(
    tmp_path: Path, collector: tuple[FakeCollector, str], http: HttpClient
) -> None:
    fake, url = collector
    fake.script = [200, "portal", 401, 403, 408, 413, 429, 500, 502, 503, 504, "reset", 200]
    up, store, _, _ = await setup(http, tmp_path, url, n=700)
    for _ in range(40):
        if store.ready_count == 0:
            break
        await up.upload_once()
    assert store.ready_count == 0
    assert len(fake.records) == 700 and fake.duplicates == 0


def test_ack_and_retry_after_parsing() -> None:
    assert is_ack({"accepted": 2, "duplicates": 1, "rejected": [{"index": 0}]}, 4)
    assert not is_ack({"accepted": 2, "duplicates": 1, "rejected": []}, 4)
    assert not is_ack({"accepted": True, "duplicates": 0, "rejected": []}, 1)
    assert not is_ack([], 0) and not is_ack({"accepted": 1}, 1)
    assert parse_retry_after("12", 0) == 12
    assert parse_retry_after(None, 0) == 0 and parse_retry_after("soon", 0) == 0
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", 40.0) == 60.0


class AckPoster:
    """An in-process collector: decodes each batch with the real decoder and answers the
    contract's 200 (valid records accepted, the others rejected)."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.bodies: list[bytes] = []

    async def post(self, url: str, *, body: bytes, headers: Mapping[str, str]) -> Response:
        raw = inflate(body, gzipped=True)
        self.bodies.append(raw)
        batch = decode_batch(raw)
        self.batches.append([a.record.id for a in batch.accepted])
        answer = {"accepted": len(batch.accepted), "duplicates": 0,
                  "rejected": [{"index": r.index, "id": r.id, "error": r.error}
                               for r in batch.rejected]}
        return Response(200, {}, orjson.dumps(answer))


class _Timer:
    def __init__(self, due: float, callback: Callable[[], object]) -> None:
        self.due, self.callback, self.cancelled = due, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock(FakeClock):
    """Time moves only by ``advance``; sleeps and timers (``call_later``, so it is a
    TimerClock, like the box's and the simulator's clocks) wait for it."""

    def __init__(self) -> None:
        super().__init__()
        self.timers: list[_Timer] = []

    def call_later(self, seconds: float, callback: Callable[[], object]) -> _Timer:
        timer = _Timer(self.monotonic() + max(0.0, seconds), callback)
        self.timers.append(timer)
        return timer

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        timer = self.call_later(seconds, lambda: fut.done() or fut.set_result(None))
        try:
            await fut
        finally:
            timer.cancel()

    def advance(self, seconds: float) -> None:
        super().advance(seconds)
        due = [t for t in self.timers if t.due <= self.monotonic() and not t.cancelled]
        self.timers = [t for t in self.timers if t.due > self.monotonic() and not t.cancelled]
        for t in sorted(due, key=lambda t: t.due):
            t.callback()


class CountingBuffer(MemoryBuffer):
    """Counts the uploader's plans: each looks up the oldest record's due time once."""

    plans = 0

    def oldest_ready_wall_us(self) -> int | None:
        self.plans += 1
        return super().oldest_ready_wall_us()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_uploader_does_not_wake_per_record_until_due_or_full(tmp_path: Path) -> None:
    clock = ManualClock()
    store = CountingBuffer(BufferSection(), clock)
    poster = AckPoster()
    up = Uploader(config(tmp_path, "http://127.0.0.1:9", upload_delay_s=3600), store, poster,
                  clock, random.Random(1))
    task = asyncio.create_task(up.run())
    try:
        await settle()
        assert store.plans == 0  # nothing stored: waits for the first record
        first = clock.wall()
        for _ in range(100):
            await store.add_session(sess(clock))
            await settle()
            clock.advance(30)
        await settle()
        # 100 records over 3,000 s: one plan (at the first record), one timer, no upload.
        assert poster.batches == [] and store.plans == 1
        clock.advance(599)
        await settle()
        assert poster.batches == []
        clock.advance(1)  # the first record is upload_delay_s old: the batch goes
        await settle()
        assert [len(b) for b in poster.batches] == [100] and store.ready_count == 0
        assert store.plans == 2  # the timer's
        assert orjson.loads(poster.bodies[0])["sent_at"] == format_rfc3339(
            first + timedelta(seconds=3600))
        # A full batch by count goes the moment its 500th record is stored.
        for _ in range(499):
            await store.add_session(sess(clock))
            await settle()
        assert len(poster.batches) == 1 and store.plans == 3
        await store.add_session(sess(clock))
        await settle()
        assert [len(b) for b in poster.batches] == [100, 500] and store.plans == 3
        # ... and by bytes (256 KiB of record JSON) the moment it is reached.
        wide = [SessionRecord(**{**{f: getattr(s, f) for f in s.__slots__},
                                 "channel": "C" * 1000}) for s in (sess(clock) for _ in range(300))]
        total = 0
        for r in wide:
            total += len(record_body(r))
            await store.add_session(r)
            await settle()
            if total >= MAX_BATCH_BYTES:
                break
            assert len(poster.batches) == 2
        assert len(poster.batches) == 3
        assert sum(len(record_body(r)) for r in wide[:len(poster.batches[2])]) <= MAX_BATCH_BYTES
        # One plan for the wide records; one more for a record the full batch left over.
        assert store.plans == 4 + (store.ready_count > 0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def record_body(record: SessionRecord) -> bytes:
    return orjson.dumps(record_to_json(record))


async def test_unreadable_stored_rows_are_dropped_and_the_rest_uploads(
    tmp_path: Path, collector: tuple[FakeCollector, str], http: HttpClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, url = collector
    clock = FakeClock()
    store = await SqliteBuffer.open(tmp_path / "b.sqlite3", BufferSection(), clock)
    try:
        made = [sess(clock) for _ in range(6)]
        for r in made:
            await store.add_session(r)
        damaged = {made[0].id: b'{"id": "trunc', made[2].id: b"[1, 2]",
                   made[3].id: b'{"kind": "session"}', made[5].id: b"\xff\xfe\x00"}
        for rid, body in damaged.items():
            await store._db.execute("UPDATE records SET body = ? WHERE id = ?", (body, rid))
        up = Uploader(config(tmp_path, url), store, http, clock, random.Random(1))
        with caplog.at_level(logging.ERROR):
            result = await up.upload_once()
        assert result is not None and result.verdict == "ok"
        assert fake.seen[0].ids == [made[1].id, made[4].id]
        assert up.stats["dropped_unreadable"] == 4 and up.stats["records_accepted"] == 2
        assert "dropping 4 unreadable record(s)" in caplog.text
        assert store.ready_count == 0 and await store.fetch(10, 10**9) == []
        # The queue moves on.
        later = sess(clock)
        await store.add_session(later)
        await up.upload_once()
        assert fake.seen[1].ids == [later.id] and store.ready_count == 0
    finally:
        await store.close()


async def test_a_stored_record_the_collector_rejects_is_deleted_with_its_batch(
    tmp_path: Path,
) -> None:
    """Stored bodies are not validated again per upload: one the agent got wrong would be
    the collector's to reject, alone, on a 200; it is deleted and does not block."""
    clock = FakeClock()
    store = MemoryBuffer(BufferSection(), clock)
    good, bad = sess(clock), sess(clock)
    await store.add_session(good)
    await store.add_session(SessionRecord(**{**{f: getattr(bad, f) for f in bad.__slots__},
                                             "qos": replace(bad.qos, watch_s=-1.0)}))
    poster = AckPoster()
    up = Uploader(config(tmp_path, "http://127.0.0.1:9"), store, poster, clock)
    result = await up.upload_once()
    assert result is not None and result.verdict == "ok"
    assert poster.batches == [[good.id]]
    assert up.stats["records_rejected"] == 1 and up.stats["dropped_unreadable"] == 0
    assert store.ready_count == 0
