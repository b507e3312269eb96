"""Disk full on the collector and on the box, modelled by a small tmpfs mounted for the
test (``mount -t tmpfs -o size=...``, as root) and filled with a filler file.

Collector: uploads while the disk is full are answered 503 with Retry-After and the
contract's error body (never a 500, never a traceback); the process stays up; when the
space returns, the same batches are acknowledged, every acknowledged record is stored
once, and the database passes integrity_check.

Box: a real agent whose buffer is on the full disk logs the failure and keeps running;
when the space returns it buffers and uploads again, and its buffer is intact.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import signal
import sqlite3
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from collector.settings import Settings
from tests.collector.conftest import batch, serve, session_record

from .conftest import ADMIN, CollectorProcess, enrol, export_ids, require
from .test_agent_kill9 import Agent, integrity


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True, check=False)
    require(done.returncode == 0, f"a tmpfs mount (mount -t tmpfs needs root): {done.stderr}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk``; answer the filler file (delete it to free them)."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * 4096)
    return filler


def _rows(db: Path) -> list[tuple[str, str, int]]:
    con = sqlite3.connect(db)
    try:
        return [(str(a), str(b), int(c)) for a, b, c in
                con.execute("SELECT id, kind, ready FROM records ORDER BY seq")]
    finally:
        con.close()


@pytest.mark.timeout(300)
async def test_collector_disk_full_answers_503_then_recovers(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "6m") as disk:
        proc = CollectorProcess(disk / "c.db", tmp_path / "collector.log", None,
                                "--box-burst", "1000")
        await proc.start()
        try:
            async with aiohttp.ClientSession() as http:
                token = await enrol(http, proc.url, "full-1")
                h = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
                acked: list[str] = []
                filler = fill(disk)
                pending: list[bytes] = []
                statuses: Counter[int] = Counter()
                for _ in range(12):
                    recs = [session_record() for _ in range(300)]
                    body = orjson.dumps(batch("full-1", recs))
                    async with http.post(proc.url + "/v1/batches", data=io.BytesIO(body),
                                         headers=h) as resp:
                        statuses[resp.status] += 1
                        text = await resp.text()
                        assert "Traceback" not in text
                        if resp.status == 200:
                            acked.extend(str(r["id"]) for r in recs)
                        else:
                            assert resp.status == 503, text
                            assert orjson.loads(text)["error"] in ("unavailable", "overloaded")
                            assert int(resp.headers["Retry-After"]) >= 1
                            pending.append(body)
                assert statuses[503] >= 1, statuses
                async with http.get(proc.url + "/healthz") as resp:
                    assert resp.status == 200  # still up
                # Space returns: the same batches go through.
                filler.unlink()
                for body in pending:
                    async with http.post(proc.url + "/v1/batches", data=io.BytesIO(body),
                                         headers=h) as resp:
                        assert resp.status == 200, await resp.text()
                    acked.extend(str(r["id"]) for r in orjson.loads(body)["records"])
                stored = Counter(await export_ids(http, proc.url, "session"))
            assert all(stored[i] == 1 for i in acked) and len(stored) == len(acked)
        finally:
            assert await proc.stop() == 0
        con = sqlite3.connect(disk / "c.db")
        try:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            con.close()
        log = (tmp_path / "collector.log").read_text()
        assert "full" in log.lower()  # the operator sees why
        assert "Traceback" not in log or "disk" in log.lower()
    print(f"\ncollector disk full: answers {dict(statuses)} while full, all "
          f"{len(acked)} records stored once after recovery")


@pytest.mark.timeout(300)
async def test_box_disk_full_keeps_running_and_recovers(tmp_path: Path) -> None:
    # 8 MiB: room, once the filler is gone, for a WAL of 1000 pages (SQLite checkpoints then).
    with small_disk(tmp_path / "disk", "8m") as disk:
        settings = Settings(db=f"sqlite:///{tmp_path / 'c.db'}", admin_token=ADMIN)
        async with serve(settings) as client:
            resp = await client.post("/v1/boxes", json={"box_id": "stb-full"},
                                     headers={"Authorization": f"Bearer {ADMIN}"})
            token = (await resp.json())["token"]
            base = str(client.make_url("")).rstrip("/")
            agent = Agent(disk, "stb-full", base + "/", token)
            agent.log = tmp_path / "agent.log"
            await agent.start()
            assert agent.proc is not None
            stop = asyncio.Event()
            try:
                filler = fill(disk)
                viewer = asyncio.create_task(agent.view(stop))
                await asyncio.sleep(2.0)
                stop.set()
                await viewer
                assert agent.proc.returncode is None, "the agent died on a full disk"
                filler.unlink()
                stop.clear()
                before = agent.session_no
                viewer = asyncio.create_task(agent.view(stop))
                await asyncio.sleep(1.5)
                stop.set()
                await viewer
                for _ in range(200):
                    ok, ids = integrity(agent.db, agent.proc.pid)  # a copy: it runs
                    if not ids:
                        break
                    await asyncio.sleep(0.05)
                assert agent.proc.returncode is None
            finally:
                if agent.proc.returncode is None:
                    agent.proc.send_signal(signal.SIGTERM)
                    await asyncio.wait_for(agent.proc.wait(), 20)
            ok, ids = integrity(agent.db)
            assert ok == "ok", ok
            assert not ids, _rows(agent.db)
            sessions = await export_ids(client.session, base, "session")
            stored = Counter(sessions)
            assert all(n == 1 for n in stored.values())
            # Sessions watched after the space returned arrived.
            export = await (await client.get(
                "/v1/export", params={"kind": "session"},
                headers={"Authorization": f"Bearer {ADMIN}"})).read()
            channels = {orjson.loads(line)["channel"] for line in export.splitlines()}
            assert any(f"ch{n}" in channels for n in range(before + 1, agent.session_no + 1))
            confirmed = agent.confirmed()
            surveys = Counter(await export_ids(client.session, base, "survey"))
            assert all(surveys[i] == 1 for i in confirmed)
        log = agent.log.read_text()
        assert "full" in log.lower(), log[-2000:]
    print(f"\nbox disk full: agent kept running; {len(confirmed)} confirmed answers and "
          f"{len(stored)} sessions stored once")




async def test_the_uploader_survives_a_buffer_that_cannot_write(tmp_path: Path) -> None:
    """On a full disk the buffer cannot delete what the collector acknowledged (SQLite
    needs room in the WAL to delete). The uploader must log it, back off and go on (the
    records are sent again and counted as duplicates), not die and leave the box mute
    until a restart. Found by the box disk-full test above."""
    import random
    from datetime import UTC, datetime

    from aiohttp.test_utils import TestServer

    from stb_widget.buffer import MemoryBuffer
    from stb_widget.clock import SystemClock
    from stb_widget.errors import StoreError
    from stb_widget.http_client import HttpClient
    from stb_widget.sync import Uploader
    from tests.stb_widget.fake_collector import FakeCollector

    from .test_chaos_proxy import box_config, session

    class FullDisk(MemoryBuffer):
        failures = 2

        async def delete(self, ids: list[str]) -> None:
            if self.failures:
                self.failures -= 1
                raise StoreError("cannot delete uploaded records: database or disk is full")
            await super().delete(ids)

    fake = FakeCollector()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    try:
        cfg = box_config(tmp_path, "stb-del", str(server.make_url("/")), "t")
        buf = FullDisk(cfg.buffer, SystemClock())
        http = HttpClient(timeout_s=30, connect_timeout_s=10)
        try:
            up = Uploader(cfg, buf, http, SystemClock(), random.Random(1))
            task = asyncio.create_task(up.run())
            recs = [session(datetime.now(UTC), i) for i in range(5)]
            for r in recs:
                await buf.add_session(r)
            for _ in range(100):
                if buf.ready_count == 0 or task.done():
                    break
                await asyncio.sleep(0.05)
            assert not task.done(), task.exception() if task.done() else None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        finally:
            await http.close()
        assert buf.ready_count == 0
        assert set(fake.records) == {r.id for r in recs}
        assert fake.duplicates >= 5  # acknowledged, not deleted, sent again: counted once
    finally:
        await server.close()


async def test_an_answer_whose_final_write_fails_becomes_uploadable_without_a_restart(
        tmp_path: Path) -> None:
    """The answer is confirmed (stored), then the disk fills before its final form is
    written. It must become uploadable once the disk has room again, not wait for the
    agent's next restart. Found by the box disk-full test above."""
    from stb_widget.agent import Agent as InProcessAgent
    from stb_widget.buffer import MemoryBuffer
    from stb_widget.config import BufferSection
    from stb_widget.errors import StoreError
    from tests.stb_widget.conftest import FakeClock, make_config
    from tests.stb_widget.test_agent import ScriptedPresenter, watch

    class FillsUp(MemoryBuffer):
        failures = 3

        async def finished(self, record: object) -> None:
            if self.failures:
                self.failures -= 1
                raise StoreError("cannot store record: database or disk is full")
            await super().finished(record)  # type: ignore[arg-type]

    clock = FakeClock()
    store = FillsUp(BufferSection(), clock)
    presenter = ScriptedPresenter(clock=clock)
    cfg = make_config(tmp_path, survey={"min_watch_s": 600, "sample_rate": 1.0})
    agent = InProcessAgent(cfg, clock=clock, store=store, presenters=lambda: presenter,
                           upload=False)
    await agent.start()
    try:
        await watch(agent, clock)
        await agent.wait_question()
        kinds = sorted(orjson.loads(r.body)["kind"] for r in await store.fetch(100, 10**9))
        assert kinds == ["session", "survey"], kinds
        assert store.failures == 0
    finally:
        await agent.stop()
