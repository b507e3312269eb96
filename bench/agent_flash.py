"""Benchmark of the box agent's flash writes (issue 15): bytes per session, per idle hour.

Starts ``stb-widget run`` as a process (source ``events``, no question: the sessions are
sampled out) with its data directory on this machine's disk, against an in-process
collector that acknowledges every batch, and reads the bytes the agent made the kernel
write to the block device (``write_bytes`` in ``/proc/<pid>/io``; the data directory is
the only file the agent writes, its log goes to a pipe):

- start: creating and opening the buffer;
- idle: ``--idle-s`` seconds with nothing playing and nothing to upload, extrapolated to
  an hour (goal 0 bytes);
- sessions: ``--sessions`` sessions played through the events socket, each stored, then
  uploaded and deleted after the collector's acknowledgement (goal under 16 KB a session,
  checkpoints and deletes included), then a clean stop, whose WAL checkpoint is charged
  to the sessions too.

The data directory must be on a block device (``write_bytes`` counts what reaches the
block layer; on tmpfs it stays 0): by default a temporary directory under ``bench/``.

With ``--asked`` every session is asked and answered at once (the test suite's fake
presenter, no screen): the session, the answer confirmed (``synchronous=FULL``), its final
form (``FULL``), the upload of both and their delete, per session.

``--drain N`` measures something else, in this process: N sessions stored into a
``SqliteBuffer`` (not counted), then the bytes written to fetch and delete them all in
batches of 500, as after an outage.

Usage: ``.venv/bin/python bench/agent_flash.py [--sessions 100] [--idle-s 60] [--asked]``,
or ``... --drain 3000``. Prints a Markdown table (or one line).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import orjson
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]


def io_counters(pid: int) -> dict[str, int]:
    rows = Path(f"/proc/{pid}/io").read_text().splitlines()
    return {name: int(value) for name, value in (row.split(": ") for row in rows)}


def written(pid: int) -> int:
    return io_counters(pid)["write_bytes"]


def sync_fs(path: Path) -> None:
    """Push the page cache to the disk, so that later counts start from a clean state."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.syncfs(fd) if hasattr(os, "syncfs") else os.sync()
    finally:
        os.close(fd)


async def main(sessions: int, idle_s: float, data_parent: Path, asked: bool = False) -> None:
    per_session = 2 if asked else 1  # records uploaded per session
    acked: list[int] = []

    async def batches(request: web.Request) -> web.Response:
        n = len(orjson.loads(await request.read())["records"])
        acked.append(n)
        return web.json_response({"accepted": n, "duplicates": 0, "rejected": []})

    app = web.Application()
    app.router.add_post("/v1/batches", batches)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    data_parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="flash-", dir=data_parent))
    data = work / "data"
    sock = Path(tempfile.mkdtemp(prefix="flash-")) / "ev.sock"  # short path, any fs
    cfg = work / "agent.toml"
    cfg.write_text(f"""
box_id = "stb-flash"
data_dir = "{data}"
[collector]
url = "http://127.0.0.1:{port}/"
token = "k3Q9vX2mZ8"
upload_delay_s = 0.05
boot_jitter_s = 0
[player]
source = "events"
events_socket = "{sock}"
[survey]
tty = "/dev/null"
""" + ("""sample_rate = 1.0
min_watch_s = 0
settle_s = 0
cooldown_answered_days = 0
cooldown_dismissed_days = 0
presenter = "tests.stb_widget.fake_presenter:FakePresenter"
""" if asked else """sample_rate = 0.0
min_watch_s = 600
"""))
    # The agent's own counters at exit (after its clean stop's checkpoint), written by an
    # atexit hook: a process's /proc entry is gone once it is reaped.
    at_exit = work / "io-at-exit"
    wrapper = (
        "import atexit, runpy, sys\n"
        f"atexit.register(lambda: open({str(at_exit)!r}, 'w').write(open('/proc/self/io').read()))\n"
        f"sys.argv = ['stb-widget', 'run', '--config', {str(cfg)!r}]\n"
        "runpy.run_module('stb_widget.cli', run_name='__main__')\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", wrapper, cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    wal = data / "buffer.sqlite3-wal"
    wal_peak = 0
    try:
        for _ in range(400):
            if sock.exists():
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        sync_fs(work)
        started = written(proc.pid)

        t0 = time.monotonic()
        before = written(proc.pid)
        await asyncio.sleep(idle_s)
        sync_fs(work)
        idle = written(proc.pid) - before
        idle_elapsed = time.monotonic() - t0

        before = written(proc.pid)
        rng = random.Random(15)
        _, writer = await asyncio.open_unix_connection(str(sock))
        for i in range(sessions):
            t = i * 4000.0
            lines = [{"event": "play", "channel": "NPO1", "content_type": "live", "at": t},
                     {"event": "first_frame", "at": t + rng.uniform(0.3, 3)},
                     {"event": "bitrate", "kbps": 5400, "at": t + 1}]
            for k in range(rng.randint(0, 4)):
                s = t + 100 + 500 * k
                lines += [{"event": "stall_start", "at": s},
                          {"event": "stall_end", "at": s + rng.uniform(0.5, 5)},
                          {"event": "bitrate", "kbps": rng.choice([3000, 5400]), "at": s + 6}]
            lines.append({"event": "stop", "at": t + rng.uniform(700, 3600)})
            for ev in lines:
                writer.write(orjson.dumps(ev) + b"\n")
            await writer.drain()
            # On a box sessions end minutes apart: each is uploaded in a batch of its own
            # and deleted, and the kernel writes the dirty pages back in between (without
            # the sync here, pages dirtied twice within the writeback delay would count once).
            for _ in range(400):
                if sum(acked) >= per_session * (i + 1):
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # the delete after the acknowledgement
            if wal.exists():
                wal_peak = max(wal_peak, wal.stat().st_size)
            sync_fs(work)
        writer.close()
        await writer.wait_closed()
        for _ in range(1200):
            if sum(acked) >= per_session * sessions:
                break
            await asyncio.sleep(0.05)
            if wal.exists():
                wal_peak = max(wal_peak, wal.stat().st_size)
        await asyncio.sleep(2.0)  # the deletes after the last acknowledgement
        if wal.exists():
            wal_peak = max(wal_peak, wal.stat().st_size)
        sync_fs(work)
        running = written(proc.pid) - before
        before = written(proc.pid)
        proc.terminate()
        await proc.wait()
        rows = at_exit.read_text().splitlines()
        last = dict((name, int(value)) for name, value in (r.split(": ") for r in rows))[
            "write_bytes"]
        closing = last - before
        with sqlite3.connect(data / "buffer.sqlite3") as db:
            page = db.execute("PRAGMA page_size").fetchone()[0]
            left = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        db_size = (data / "buffer.sqlite3").stat().st_size
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await runner.cleanup()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(sock.parent, ignore_errors=True)
        with contextlib.suppress(OSError):
            data_parent.rmdir()  # only where empty
    uploaded = sum(acked)
    per_session_b = (running + closing) / max(sessions, 1)
    per_idle_hour = idle * 3600 / idle_elapsed
    print(f"{sessions} sessions{' (each asked and answered)' if asked else ''}, {uploaded} records acknowledged in {len(acked)} batches; "
          f"idle window {idle_elapsed:.0f} s; page size {page} B; {left} schema objects\n")
    print("| figure | value | goal |")
    print("| --- | --- | --- |")
    print(f"| bytes written at start (create and open the buffer) | {started} B | |")
    print(f"| bytes written per idle hour (measured {idle_elapsed:.0f} s: {idle} B) | "
          f"{per_idle_hour:.0f} B | 0 B |")
    print(f"| bytes written while storing, uploading and deleting {sessions} sessions | "
          f"{running} B | |")
    print(f"| bytes written by the clean stop (WAL checkpoint) | {closing} B | |")
    print(f"| **bytes written per session**, all included | {per_session_b:.0f} B | < 16384 B |")
    print(f"| WAL high-water mark / database file after stop | {wal_peak} B / {db_size} B | |")


async def drain(n: int, data_parent: Path) -> None:
    from datetime import UTC, datetime

    from protocol import Qos, SessionRecord
    from stb_widget.buffer import SqliteBuffer
    from stb_widget.clock import SystemClock
    from stb_widget.config import BufferSection
    from stb_widget.ids import uuid7

    data_parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="drain-", dir=data_parent))
    try:
        buf = await SqliteBuffer.open(work / "buffer.sqlite3", BufferSection(), SystemClock())
        qos = Qos(startup_ms=900, watch_s=1800.0, rebuffer_count=1, rebuffer_s=2.5,
                  avg_bitrate_kbps=5400.0, bitrate_switches=2, failed=False)
        for _ in range(n):
            now = datetime.now(UTC)
            await buf.add_session(SessionRecord(
                id=uuid7(), kind="session", started_at=now, ended_at=now, channel="NPO1",
                content_type="live", qos=qos))
        sync_fs(work)
        before = written(os.getpid())
        while batch := await buf.fetch(500, 256 * 1024):
            await buf.delete([r.id for r in batch])
        await buf.close()
        sync_fs(work)
        print(f"drain of {n} sessions (fetch and delete, batches of 500, then close): "
              f"{written(os.getpid()) - before} B written")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        with contextlib.suppress(OSError):
            data_parent.rmdir()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--idle-s", type=float, default=60.0)
    parser.add_argument("--data-parent", type=Path, default=ROOT / "bench" / ".flash",
                        help="where the data directory is made (must be a block device)")
    parser.add_argument("--asked", action="store_true",
                        help="ask every session, answered at once (fake presenter)")
    parser.add_argument("--drain", type=int, default=0, metavar="N",
                        help="instead: bytes written to upload and delete a backlog of N")
    args = parser.parse_args()
    if args.drain:
        sys.path.insert(0, str(ROOT))
        asyncio.run(drain(args.drain, args.data_parent))
    else:
        asyncio.run(main(args.sessions, args.idle_s, args.data_parent, args.asked))
