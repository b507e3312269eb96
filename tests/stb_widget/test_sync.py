"""The uploader against a fake collector that answers each status in turn."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from protocol import parse_rfc3339
from stb_widget.buffer import MemoryBuffer
from stb_widget.config import BufferSection, Config
from stb_widget.http_client import HttpClient
from stb_widget.sync import Uploader, is_ack, parse_retry_after

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
