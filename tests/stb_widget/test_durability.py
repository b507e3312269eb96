"""kill -9 of the agent while the collector is down and during uploads: after restarts,
every finished session and the confirmed answer reach the collector exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from .buffer_peek import peek
from .fake_collector import FakeCollector

ROOT = Path(__file__).parents[2]

CONFIG = """
box_id = "stb-kill-9"
data_dir = "{data}"
log_level = "debug"
[collector]
url = "{url}"
token = "tok"
upload_delay_s = 0
boot_jitter_s = 0
backoff_base_s = 0.05
backoff_cap_s = 0.3
[player]
source = "events"
events_socket = "{sock}"
[survey]
sample_rate = 1.0
min_watch_s = 0
tty = "/dev/null"
presenter = "tests.stb_widget.fake_presenter:FakePresenter"
"""


class Gate:
    """Collector modes: down (503), hold (store, then never answer), up."""

    def __init__(self, fake: FakeCollector) -> None:
        self.fake = fake
        self.mode = "down"
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.mode == "down":
            return web.json_response({"error": "overloaded"}, status=503)
        response = await self.fake.handle(request)
        if self.mode == "hold":
            self.held.set()
            await self.release.wait()  # the box is killed before it hears the answer
        return response


async def until(check: Callable[[], bool | Awaitable[bool]], what: str, seconds: float = 20) -> None:
    for _ in range(int(seconds / 0.05)):
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def buffered(db: Path, pid: int | None) -> int:
    """Records in the buffer of the agent ``pid`` (None: not running)."""
    with peek(db, pid) as con:
        if con is None:
            return 0
        try:
            return int(con.execute("SELECT count(*) FROM records").fetchone()[0])
        except sqlite3.OperationalError:  # no schema yet
            return 0


async def feed_sessions(sock: Path, n: int, first: int) -> None:
    _, writer = await asyncio.open_unix_connection(str(sock))
    for i in range(first, first + n):
        t = i * 100.0
        for ev in ({"event": "play", "channel": f"ch{i}", "content_type": "live", "at": t},
                   {"event": "first_frame", "at": t + 1}, {"event": "stop", "at": t + 60}):
            writer.write(orjson.dumps(ev) + b"\n")
    await writer.drain()
    writer.close()
    await writer.wait_closed()


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_kill_9_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    fake = FakeCollector()
    gate = Gate(fake)
    app = web.Application()
    app.router.add_post("/v1/batches", gate.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    sock = tmp_path / "ev.sock"
    db = tmp_path / "data" / "buffer.sqlite3"
    cfg = tmp_path / "agent.toml"
    cfg.write_text(CONFIG.format(data=tmp_path / "data", url=server.make_url("/"), sock=sock))
    presenter_log = tmp_path / "confirmed.txt"

    async def start(mode: str) -> asyncio.subprocess.Process:
        sock.unlink(missing_ok=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "FAKE_PRESENTER_MODE": mode,
               "FAKE_PRESENTER_LOG": str(presenter_log)}
        with open(tmp_path / "agent.log", "ab") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "stb_widget.cli", "run", "--config", str(cfg),
                cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=log,
            )
        await until(sock.exists, "the events socket")
        return proc

    async def kill9(proc: asyncio.subprocess.Process) -> None:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()

    try:
        # 1. Collector down; 20 sessions; the first is asked, the answer confirmed and the
        #    pick-list left open; kill -9 while the agent retries.
        proc = await start("hang")
        await feed_sessions(sock, 20, 0)
        await until(lambda: presenter_log.exists(), "a confirmed answer")
        await until(lambda: buffered(db, proc.pid) >= 21, "20 sessions and the answer buffered")
        await asyncio.sleep(0.5)  # a few failed uploads
        await kill9(proc)
        assert fake.records == {}

        # 2. Restart; collector stores the first batch but the box dies before the answer.
        gate.mode = "hold"
        proc = await start("answer")
        await feed_sessions(sock, 20, 100)
        await asyncio.wait_for(gate.held.wait(), 20)
        await until(lambda: buffered(db, proc.pid) >= 41, "40 sessions and the answer buffered")
        await kill9(proc)
        gate.release.set()
        stored_before = len(fake.records)
        assert stored_before >= 1

        # 3. Restart with the collector up: everything arrives, once.
        gate.mode = "up"
        proc = await start("answer")
        await until(lambda: len(fake.records) == 41, "all 41 records at the collector")
        await until(lambda: buffered(db, proc.pid) == 0, "an empty buffer")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        gate.release.set()
        await server.close()

    kinds = [r["kind"] for r in fake.records.values()]
    assert kinds.count("session") == 40 and kinds.count("survey") == 1
    channels = sorted(r["channel"] for r in fake.records.values() if r["kind"] == "session")
    assert channels == sorted([f"ch{i}" for i in range(20)] + [f"ch{i}" for i in range(100, 120)])
    survey = next(r for r in fake.records.values() if r["kind"] == "survey")
    assert survey["id"] == presenter_log.read_text().split()[0]
    assert survey["score"] == 3 and survey.get("reason") is None  # as stored at the kill
    assert fake.duplicates >= stored_before  # the unacknowledged batch was sent again
