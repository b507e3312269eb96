"""The box agent (a real ``stb-widget run``) SIGKILLed at random moments, and power
loss on the box modelled by snapshots of its buffer files.

This extends tests/stb_widget/test_durability.py (two scripted kills at chosen points)
with kills at random moments, many times, while viewers keep watching and answering,
against the real collector. A fake presenter answers every question at once and logs
each answer's id after ``confirmed()`` returned: those answers are confirmed and must
reach the collector exactly once; nothing may be stored twice; the buffer must pass
``PRAGMA integrity_check`` after every kill.

Short mode: 8 kills and 6 snapshots. Long mode (``scripts/reliability-long``): 200 kills
and 60 snapshots.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from collector.settings import Settings
from tests.collector.conftest import serve
from tests.stb_widget.buffer_peek import peek

from .conftest import ADMIN, ROOT, export_ids, scale

CONFIG = """
box_id = "{box}"
data_dir = "{data}"
log_level = "info"
[collector]
url = "{url}"
token = "{token}"
upload_delay_s = 0.2
boot_jitter_s = 0
backoff_base_s = 0.05
backoff_cap_s = 0.5
[player]
source = "events"
events_socket = "{sock}"
[survey]
sample_rate = 1.0
min_watch_s = 0
settle_s = 0
cooldown_answered_days = 0
cooldown_dismissed_days = 0
tty = "/dev/null"
presenter = "tests.stb_widget.fake_presenter:FakePresenter"
"""


class Agent:
    """One box: its config, its process, and a viewer feeding it sessions."""

    def __init__(self, tmp: Path, box: str, url: str, token: str) -> None:
        self.tmp = tmp
        self.sock = tmp / f"{box}.sock"
        self.data = tmp / box
        self.db = self.data / "buffer.sqlite3"
        self.cfg = tmp / f"{box}.toml"
        self.cfg.write_text(CONFIG.format(box=box, data=self.data, url=url, token=token,
                                          sock=self.sock))
        self.confirmed_log = tmp / f"{box}.confirmed"
        self.log = tmp / f"{box}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.session_no = 0

    async def start(self) -> None:
        self.sock.unlink(missing_ok=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "FAKE_PRESENTER_MODE": "answer",
               "FAKE_PRESENTER_LOG": str(self.confirmed_log)}
        with open(self.log, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "stb_widget.cli", "run", "--config", str(self.cfg),
                cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=log)
        for _ in range(600):
            if self.sock.exists():
                return
            if self.proc.returncode is not None:
                raise AssertionError(self.log.read_text()[-3000:])
            await asyncio.sleep(0.02)
        raise AssertionError("no events socket")

    async def view(self, stop: asyncio.Event) -> None:
        """Watch session after session (each is asked, and answered) until ``stop``."""
        while not stop.is_set():
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_unix_connection(str(self.sock))
                try:
                    while not stop.is_set():
                        self.session_no += 1
                        t = self.session_no * 100.0
                        for ev in ({"event": "play", "channel": f"ch{self.session_no}",
                                    "content_type": "live", "at": t},
                                   {"event": "first_frame", "at": t + 1},
                                   {"event": "stop", "at": t + 30}):
                            writer.write(orjson.dumps(ev) + b"\n")
                        await writer.drain()
                        await asyncio.sleep(0.03)
                except OSError:
                    pass
                finally:
                    writer.close()
            await asyncio.sleep(0.05)

    async def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    def confirmed(self) -> list[str]:
        if not self.confirmed_log.exists():
            return []
        return [line for line in self.confirmed_log.read_text().split("\n") if len(line) == 36]


def integrity(db: Path, pid: int | None = None) -> tuple[str, set[str]]:
    """The buffer's integrity_check and ids; ``pid``: the agent, if it runs (then a copy
    is read, see tests/stb_widget/buffer_peek.py)."""
    with peek(db, pid) as con:
        if con is None:
            return "ok", set()
        ok = str(con.execute("PRAGMA integrity_check").fetchone()[0])
        try:
            ids = {str(r[0]) for r in con.execute("SELECT id FROM records")}
        except sqlite3.OperationalError:  # killed before the schema was made
            ids = set()
        return ok, ids


@contextlib.asynccontextmanager
async def collector_and_agent(tmp: Path) -> AsyncIterator[tuple[Agent, str, object]]:
    settings = Settings(db=f"sqlite:///{tmp / 'c.db'}", admin_token=ADMIN)
    async with serve(settings) as client:
        resp = await client.post("/v1/boxes", json={"box_id": "stb-k9"},
                                 headers={"Authorization": f"Bearer {ADMIN}"})
        token = (await resp.json())["token"]
        base = str(client.make_url("")).rstrip("/")
        yield Agent(tmp, "stb-k9", base + "/", token), base, client.session


async def drain_and_check(agent: Agent, base: str, http: object) -> tuple[int, int]:
    """Run the agent until its buffer is empty; every confirmed answer stored once."""
    await agent.start()
    assert agent.proc is not None
    for _ in range(1200):
        ok, ids = integrity(agent.db, agent.proc.pid)
        if not ids and agent.db.exists():
            break
        await asyncio.sleep(0.05)
    assert agent.proc is not None
    agent.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(agent.proc.wait(), 20) == 0
    ok, ids = integrity(agent.db)
    assert ok == "ok" and not ids, f"buffer not drained: {ok}, {len(ids)} left"
    surveys = await export_ids(http, base, "survey")  # type: ignore[arg-type]
    sessions = await export_ids(http, base, "session")  # type: ignore[arg-type]
    stored = Counter(surveys + sessions)
    doubled = [i for i, n in stored.items() if n > 1]
    confirmed = agent.confirmed()
    lost = [i for i in confirmed if stored[i] != 1]
    assert not doubled, f"{len(doubled)} records stored twice"
    assert not lost, f"{len(lost)} of {len(confirmed)} confirmed answers lost"
    assert len(set(confirmed)) == len(confirmed)
    return len(confirmed), len(stored)


@pytest.mark.timeout(3600)
async def test_agent_killed_at_random_moments(tmp_path: Path) -> None:
    kills = scale(8, 200)
    rng = random.Random(9)
    async with collector_and_agent(tmp_path) as (agent, base, http):
        stop = asyncio.Event()
        for k in range(kills):
            await agent.start()
            viewer = asyncio.create_task(agent.view(stop))
            await asyncio.sleep(rng.uniform(0.05, 1.5))
            await agent.kill9()
            stop.set()
            await viewer
            stop.clear()
            ok, _ = integrity(agent.db)
            assert ok == "ok", f"kill {k}: {ok}"
        confirmed, stored = await drain_and_check(agent, base, http)
    assert confirmed > 0  # answers were being confirmed between the kills
    print(f"\nagent kill -9: {kills} kills, {confirmed} confirmed answers, {stored} records "
          f"stored, lost 0, doubled 0, integrity ok after every kill")


@pytest.mark.timeout(3600)
async def test_power_loss_snapshots_of_the_buffer(tmp_path: Path) -> None:
    """Power loss: the buffer's files (db, -wal, -shm) copied while the agent is frozen
    (SIGSTOP) at a random moment of its writing, as a disk would hold them; each copy is
    reopened: it passes integrity_check, and every answer confirmed before the snapshot
    is in it or already acknowledged by the collector."""
    snaps = scale(6, 60)
    rng = random.Random(10)
    async with collector_and_agent(tmp_path) as (agent, base, http):
        stop = asyncio.Event()
        await agent.start()
        viewer = asyncio.create_task(agent.view(stop))
        assert agent.proc is not None
        try:
            for n in range(snaps):
                await asyncio.sleep(rng.uniform(0.1, 0.8))
                agent.proc.send_signal(signal.SIGSTOP)
                try:
                    confirmed = agent.confirmed()
                    snap = tmp_path / f"snap{n}"
                    snap.mkdir()
                    for suffix in ("", "-wal", "-shm"):
                        src = Path(str(agent.db) + suffix)
                        if src.exists():
                            shutil.copyfile(src, snap / ("buffer.sqlite3" + suffix))
                    acked = set(await export_ids(http, base, "survey"))  # type: ignore[arg-type]
                finally:
                    agent.proc.send_signal(signal.SIGCONT)
                # Reopen without the -shm too: a power loss may leave a stale one.
                if rng.random() < 0.5:
                    (snap / "buffer.sqlite3-shm").unlink(missing_ok=True)
                ok, ids = integrity(snap / "buffer.sqlite3")
                assert ok == "ok", f"snapshot {n}: {ok}"
                missing = [i for i in confirmed if i not in ids and i not in acked]
                assert not missing, f"snapshot {n}: {len(missing)} confirmed answers missing"
        finally:
            stop.set()
            await viewer
            agent.proc.send_signal(signal.SIGKILL)
            await agent.proc.wait()
        confirmed_n, _ = await drain_and_check(agent, base, http)
    assert confirmed_n > 0
    print(f"\npower-loss snapshots: {snaps} snapshots, {confirmed_n} confirmed answers, "
          "every snapshot intact and holding every answer confirmed before it")
