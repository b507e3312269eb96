"""Real power cuts under the collector: its SQLite store on LazyFS.

LazyFS (a FUSE file system; sources and build script in ``shared/tools/lazyfs`` beside
the clone) keeps every write in its own cache
until the program syncs it; ``lazyfs::clear-cache`` drops whatever is unsynced, as a power
cut does. While 12 boxes upload (each batch retried with the same ids until acknowledged)
and an operator enrols new boxes, the power is cut several times: the collector is frozen
(SIGSTOP: nothing more reaches the disk, as when the power goes), the unsynced writes are
dropped, the collector is SIGKILLed and started again on what survived. Afterwards, after
one more cut: every acknowledged record is stored exactly once, every enrolled token
still uploads, ``GET /v1/report``'s counts are exactly those of the acknowledged records
(nothing counted twice, nothing missing from the aggregates), and the database passes
``PRAGMA integrity_check``.

Needs root, /dev/fuse and the LazyFS build: built once into ``NPS_LAZYFS_DIR`` (default
``/var/tmp/lazyfs-build``) with ``../shared/tools/lazyfs/build`` where missing (about a
minute, apt-installs g++ cmake libfuse3-dev fuse3). Missing prerequisites skip with a
message, and fail under CI.

Short mode: 4 cuts; long mode: 25.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import select
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.collector.conftest import batch, session_record

from .conftest import ADMIN, ROOT, CollectorProcess, enrol, export_ids, require, scale, uploading
from .test_collector_kill9 import Uploader

BOXES = 12
LAZYFS_DIR = Path(os.environ.get("NPS_LAZYFS_DIR", "/var/tmp/lazyfs-build"))
BUILD_SCRIPT = ROOT.parent / "shared" / "tools" / "lazyfs" / "build"

CONFIG = """\
[faults]
fifo_path="{run}/faults.fifo"
fifo_path_completed="{run}/done.fifo"
[cache]
apply_eviction=false
[cache.simple]
custom_size="512mb"
blocks_per_page=1
[filesystem]
log_all_operations=false
logfile="{run}/lazyfs.log"
"""


def _lazyfs_binary() -> Path:
    """The LazyFS binary, built where missing (skips, or fails under CI, when it cannot be)."""
    binary = LAZYFS_DIR / "lazyfs"
    require(os.geteuid() == 0, "root (LazyFS mounts a FUSE file system)")
    require(Path("/dev/fuse").exists(), "/dev/fuse (no FUSE in this machine or container)")
    if not binary.exists():
        require(BUILD_SCRIPT.exists(), f"the LazyFS sources ({BUILD_SCRIPT})")
        # dpkg may be locked by another apt-get: wait and try again a few times.
        for _attempt in range(10):
            done = subprocess.run([str(BUILD_SCRIPT), str(LAZYFS_DIR)], capture_output=True,
                                  text=True, timeout=1800)
            if done.returncode == 0 or "dpkg" not in done.stderr + done.stdout:
                break
            time.sleep(30)
        assert done.returncode == 0, f"LazyFS build failed:\n{done.stdout}\n{done.stderr}"
    require(shutil.which("fusermount3") is not None, "fusermount3 (Debian package fuse3)")
    return binary


class LazyFS:
    """One LazyFS mount, run in the foreground as our own child process."""

    def __init__(self, binary: Path, run: Path) -> None:
        self.run = run
        self.mount = run / "mnt"
        self.backing = run / "backing"
        self.config = run / "lazyfs.toml"
        self.binary = binary
        self.proc: subprocess.Popen[bytes] | None = None
        self._done: int | None = None

    def start(self) -> None:
        for d in (self.mount, self.backing):
            d.mkdir(parents=True, exist_ok=True)
        self.config.write_text(CONFIG.format(run=self.run))
        # LazyFS opens both FIFOs, and holds the "done" one open for writing from its
        # start: we keep a reader on it all along (a write with no reader would kill it
        # with SIGPIPE).
        os.mkfifo(self.run / "faults.fifo")
        os.mkfifo(self.run / "done.fifo")
        self._done = os.open(self.run / "done.fifo", os.O_RDONLY | os.O_NONBLOCK)
        with (self.run / "lazyfs.out").open("ab") as out:
            self.proc = subprocess.Popen(
                [str(self.binary), str(self.mount), "--config-path", str(self.config),
                 "-o", "allow_other", "-o", "modules=subdir", "-o", f"subdir={self.backing}", "-f"],
                stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not os.path.ismount(self.mount):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("LazyFS did not mount: "
                                     + (self.run / "lazyfs.out").read_text()[-2000:])
            time.sleep(0.05)

    def clear_cache(self, timeout_s: float = 30) -> None:
        """The power cut: drop every write not yet synced; returns once LazyFS has."""
        assert self._done is not None
        with open(self.run / "faults.fifo", "w") as f:
            f.write("lazyfs::clear-cache\n")
        got = b""
        deadline = time.monotonic() + timeout_s
        while b"finished::clear-cache" not in got:
            left = deadline - time.monotonic()
            assert left > 0, f"LazyFS did not confirm the clear-cache (got {got!r})"
            ready, _, _ = select.select([self._done], [], [], left)
            if ready:
                got += os.read(self._done, 4096)

    def stop(self) -> None:
        subprocess.run(["fusermount3", "-u", str(self.mount)], capture_output=True, check=False)
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._done is not None:
            os.close(self._done)
            self._done = None


@pytest.fixture
def lazyfs() -> Any:
    binary = _lazyfs_binary()
    # Not under pytest's tmp_path: LazyFS takes a --config-path containing "-o" (as
    # "pytest-of-root" does) for a mount option and falls back to its default config.
    run = Path(tempfile.mkdtemp(prefix="npslazyfs"))
    fs = LazyFS(binary, run)
    fs.start()
    try:
        yield fs
    finally:
        fs.stop()
        shutil.rmtree(run, ignore_errors=True)


async def _power_cut(proc: CollectorProcess, fs: LazyFS) -> None:
    assert proc.proc is not None and proc.proc.returncode is None
    # Frozen first: between the cache drop and the kill the collector must write nothing
    # more (a commit finishing then would rest on writes that were just dropped, which a
    # real power cut cannot produce).
    proc.proc.send_signal(signal.SIGSTOP)
    await asyncio.to_thread(fs.clear_cache)
    await proc.kill9()


@contextlib.asynccontextmanager
async def _running(proc: CollectorProcess) -> AsyncIterator[CollectorProcess]:
    try:
        yield proc
    finally:
        if proc.proc is not None and proc.proc.returncode is None:
            await proc.kill9()


class Enroller:
    """The operator: enrols boxes one after another; a token counts once answered 201."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        self.attempts = 0

    async def run(self, http: aiohttp.ClientSession, url: str, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            box = f"enrolled-{n}"
            self.attempts += 1
            try:
                async with http.post(url + "/v1/boxes", json={"box_id": box}, headers={
                        "Authorization": f"Bearer {ADMIN}"},
                        timeout=aiohttp.ClientTimeout(total=5)) as resp:
                    if resp.status == 201:
                        self.tokens[box] = (await resp.json())["token"]
                        n += 1
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            await asyncio.sleep(0.05)


@pytest.mark.timeout(1800)
async def test_power_cuts_lose_no_acknowledged_record_or_token(lazyfs: LazyFS) -> None:
    cuts = scale(4, 25)
    rng = random.Random(16)
    # The cut is real: a write not synced is gone after it, a synced one is not.
    for name, sync in (("unsynced", False), ("synced", True)):
        with open(lazyfs.mount / name, "wb") as f:
            f.write(b"x" * 65536)
            if sync:
                os.fsync(f.fileno())
    lazyfs.clear_cache()
    assert (lazyfs.mount / "synced").read_bytes() == b"x" * 65536
    assert (lazyfs.mount / "unsynced").read_bytes() != b"x" * 65536
    db = lazyfs.mount / "c.db"
    proc = CollectorProcess(db, lazyfs.run / "collector.log", None,
                            "--box-rate", "100000", "--box-burst", "100000")
    await proc.start(wait_s=60)
    stop = asyncio.Event()
    async with _running(proc), aiohttp.ClientSession() as http:
        uploaders = [Uploader(f"power-{i}", await enrol(http, proc.url, f"power-{i}"),
                              random.Random(i)) for i in range(BOXES)]
        enroller = Enroller()
        tasks = [asyncio.create_task(u.run(http, proc.url, stop)) for u in uploaders]
        tasks.append(asyncio.create_task(enroller.run(http, proc.url, stop)))
        acked_at_cut: list[int] = []
        async with uploading(stop, tasks):
            for _ in range(cuts):
                await asyncio.sleep(rng.uniform(0.5, 1.5))
                acked_at_cut.append(sum(len(u.acked) for u in uploaders))
                await _power_cut(proc, lazyfs)
                await asyncio.sleep(rng.uniform(0.0, 0.3))
                await proc.start(wait_s=60)
            await asyncio.sleep(1.0)
        # Every token enrolled (answered 201) must still upload: one session each.
        for box, token in enroller.tokens.items():
            s = session_record()
            async with http.post(proc.url + "/v1/batches", data=orjson.dumps(batch(box, [s])),
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"}) as resp:
                assert resp.status == 200, (box, resp.status, await resp.text())
                assert (await resp.json())["accepted"] == 1
        extra_sessions = len(enroller.tokens)
        # One more cut once everything is acknowledged: nothing acknowledged was only in
        # the cache.
        await _power_cut(proc, lazyfs)
        await proc.start(wait_s=60)
        sessions = await export_ids(http, proc.url, "session")
        surveys = await export_ids(http, proc.url, "survey")
        async with http.get(proc.url + "/v1/report",
                            headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
            assert resp.status == 200
            report = await resp.json()
        assert await proc.stop() == 0

    acked = [i for u in uploaders for i in u.acked]
    acked_set = set(acked)
    acked_surveys = {str(r["id"]): r for u in uploaders for r in u.sent_records
                     if r["kind"] == "survey" and str(r["id"]) in acked_set}
    stored = Counter(sessions + surveys)
    lost = [i for i in acked if stored[i] == 0]
    doubled = [i for i, n in stored.items() if n > 1]
    assert not lost, f"{len(lost)} acknowledged records lost"
    assert not doubled, f"{len(doubled)} records stored twice"
    n_sessions = len(acked) - len(acked_surveys) + extra_sessions
    # The report's figures: exactly the acknowledged records, each counted once.
    scores = [int(str(r["score"])) for r in acked_surveys.values()]
    assert report["sessions"]["count"] == n_sessions == len(sessions)
    assert report["sessions"]["surveyed"] == len(acked_surveys)
    assert report["surveys"]["shown"] == report["surveys"]["answered"] == len(acked_surveys)
    assert report["promoters"] == sum(s >= 9 for s in scores)
    assert report["passives"] == sum(7 <= s <= 8 for s in scores)
    assert report["detractors"] == sum(s <= 6 for s in scores)
    # The cuts hit a collector at work.
    assert acked_at_cut[-1] > acked_at_cut[0] > 0
    assert sum(sum(u.failures.values()) for u in uploaders) >= cuts
    assert len(enroller.tokens) >= cuts
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
    print(f"\npower cuts (LazyFS): {cuts} cuts, {len(acked)} records acknowledged "
          f"({len(acked_surveys)} answers), {sum(u.attempts for u in uploaders)} upload attempts, "
          f"{len(enroller.tokens)} boxes enrolled in {enroller.attempts} attempts; "
          f"lost 0, doubled 0, report counts exact")
