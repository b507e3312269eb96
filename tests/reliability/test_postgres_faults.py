"""PostgreSQL faults, on a real server of the test's own.

The machine's shared server must not be restarted, so each test starts a throwaway one
(``initdb`` and ``pg_ctl`` from ``/usr/lib/postgresql/*/bin``, run as the ``postgres``
user, in a temporary folder, on a free port) and stops, kills or restarts that one:

* restarted (an immediate shutdown: a crash) while boxes upload: the collector answers
  503 with ``Retry-After`` meanwhile, never 500, reconnects by itself, and every
  acknowledged record is stored exactly once;
* down when the collector starts: it says so and retries with backoff, and serves once
  the server is up; with a short ``start_timeout`` it gives up with a clear error;
* a statement stuck on a lock another connection holds: cancelled at the
  ``command_timeout`` (the server's ``statement_timeout``), answered 503 at once, no hang.

Needs root (to run the server as ``postgres``) and the PostgreSQL server binaries; where
they are missing the tests skip with a message, and fail under CI.
"""

from __future__ import annotations

import asyncio
import glob
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncpg
import orjson
import pytest

from tests.collector.conftest import batch, session_record

from .conftest import (
    ADMIN,
    ROOT,
    CollectorProcess,
    check_report_counts_acknowledged,
    enrol,
    free_port,
    read_back,
    require,
    uploading,
)
from .test_collector_kill9 import Uploader


class OwnPostgres:
    """A PostgreSQL server of our own, in a temporary folder owned by ``postgres``."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        require(bool(bins), "the PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
        require(os.geteuid() == 0, "root (to run a PostgreSQL server as the postgres user)")
        require(shutil.which("runuser") is not None, "runuser")
        self.bin = Path(bins[-1]).parent
        self.port = free_port()
        # Not under pytest's tmp_path: the postgres user cannot enter root's folders.
        self.dir = Path(tempfile.mkdtemp(prefix="nps-pg-"))
        self.data = self.dir / "data"
        shutil.chown(self.dir, "postgres", "postgres")
        self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, tool: str, *args: str) -> None:
        done = subprocess.run(["runuser", "-u", "postgres", "--", str(self.bin / tool), *args],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{tool} failed: {done.stdout}\n{done.stderr}"

    def start(self) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-w",
                 "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1", "start")

    def stop(self, mode: str = "fast") -> None:
        """``immediate``: as in a crash, no checkpoint (recovery from the WAL at start)."""
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(self.bin / "pg_ctl"), "-D",
                        str(self.data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    pg = OwnPostgres()
    try:
        yield pg
    finally:
        pg.remove()


async def _post(http: aiohttp.ClientSession, url: str, token: str,
                records: list[dict[str, object]], box: str) -> tuple[int, str | None, bytes]:
    async with http.post(url + "/v1/batches", data=orjson.dumps(batch(box, records)), headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=aiohttp.ClientTimeout(total=30)) as resp:
        return resp.status, resp.headers.get("Retry-After"), await resp.read()


@pytest.mark.timeout(600)
async def test_server_restarted_during_ingest(own_postgres: OwnPostgres, tmp_path: Path) -> None:
    own_postgres.start()
    proc = CollectorProcess(tmp_path / "unused.db", tmp_path / "collector.log", None,
                            "--box-rate", "100000", "--box-burst", "100000",
                            url=own_postgres.url + "?connect_timeout=3&command_timeout=10")
    await proc.start(wait_s=60)
    stop = asyncio.Event()
    rng = random.Random(5)
    restarts = 2
    probes: list[tuple[int, str | None, bytes]] = []
    probes_acked: list[dict[str, object]] = []  # sent after the server came back
    recovered_s: list[float] = []
    try:
        async with aiohttp.ClientSession() as http:
            uploaders = [Uploader(f"pgf-{i}", await enrol(http, proc.url, f"pgf-{i}"),
                                  random.Random(i)) for i in range(8)]
            probe_token = await enrol(http, proc.url, "pgf-probe")
            tasks = [asyncio.create_task(u.run(http, proc.url, stop)) for u in uploaders]
            async with uploading(stop, tasks):
                for _ in range(restarts):
                    await asyncio.sleep(rng.uniform(1.0, 2.0))
                    await asyncio.to_thread(own_postgres.stop, "immediate")
                    # While the server is down: 503 with Retry-After, not 500, not a hang.
                    probes.append(await _post(http, proc.url, probe_token,
                                              [session_record()], "pgf-probe"))
                    await asyncio.sleep(0.5)
                    await asyncio.to_thread(own_postgres.start)
                    # The same collector process serves again by itself.
                    t0 = time.monotonic()
                    while True:
                        probe = session_record()
                        if (await _post(http, proc.url, probe_token, [probe], "pgf-probe"))[0] == 200:
                            probes_acked.append(probe)
                            break
                        assert time.monotonic() - t0 < 30, "the collector did not reconnect"
                        await asyncio.sleep(0.2)
                    recovered_s.append(time.monotonic() - t0)
                await asyncio.sleep(1.0)
            stored, report = await read_back(http, proc.url)
        assert await proc.stop() == 0
    finally:
        if proc.proc is not None and proc.proc.returncode is None:
            await proc.kill9()
    for status, retry_after, body in probes:
        assert status == 503, (status, body)
        assert retry_after is not None and int(retry_after) >= 1
        assert orjson.loads(body)["error"] == "unavailable"
    acked = [i for u in uploaders for i in u.acked]
    assert not [i for i in acked if stored[i] == 0], "acknowledged records lost"
    assert not [i for i, n in stored.items() if n > 1], "records stored twice"
    sent = set().union(*(u.sent for u in uploaders))
    assert set(acked) == sent  # every batch was acknowledged in the end
    # What the operator reads adds up to what was acknowledged, each once (the probes sent
    # while the server was down were answered 503 and are not stored: the server was
    # stopped before they were sent).
    check_report_counts_acknowledged(
        report, [r for u in uploaders for r in u.acked_records] + probes_acked)
    failures: Counter[str] = sum((u.failures for u in uploaders), Counter())
    assert "http_500" not in failures, failures
    assert failures["http_503"] > 0  # the uploads did meet the restarts
    log = proc.log.read_text()
    # No request failed unhandled; asyncpg's pool warns (with a traceback) each time it
    # cannot reconnect while the server is down, which is expected.
    assert "unhandled error" not in log and '"status":500' not in log
    assert '"msg":"store failed"' in log  # each 503 says why
    print(f"\nPostgreSQL restarted {restarts} times during ingest: {len(acked)} records "
          f"acknowledged, uploads failed {dict(failures)}, served again "
          f"{', '.join(f'{s:.1f}' for s in recovered_s)} s after each restart; lost 0, doubled 0")


async def test_server_down_at_start_is_retried_with_backoff(
        own_postgres: OwnPostgres, tmp_path: Path) -> None:
    # Given up after start_timeout, with an error that names the store and the cause.
    done = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "collector.cli", "serve",
        "--db", own_postgres.url + "?start_timeout=2&connect_timeout=1",
        "--port", str(free_port()), cwd=ROOT,
        env={**os.environ, "NPS_ADMIN_TOKEN": ADMIN, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(done.communicate(), 60)
    text = out.decode()
    assert done.returncode == 2, text
    assert f"cannot open PostgreSQL store postgresql://127.0.0.1:{own_postgres.port}/postgres" \
        in text, text
    assert "not reachable" in text and "retrying in 1 s" in text, text
    assert "Traceback" not in text

    # Started before its database: it waits, retrying with growing delays, then serves.
    proc = CollectorProcess(tmp_path / "unused.db", tmp_path / "collector.log", None,
                            url=own_postgres.url + "?connect_timeout=1")
    starting = asyncio.create_task(proc.start(wait_s=120))
    try:
        # Three failed attempts logged (1 + 2 + 4 s of backoff), then the server starts.
        for _ in range(600):
            if proc.log.exists() and proc.log.read_text().count("retrying in") >= 3:
                break
            await asyncio.sleep(0.1)
        assert not starting.done()
        await asyncio.to_thread(own_postgres.start)
        await starting
        async with aiohttp.ClientSession() as http:
            token = await enrol(http, proc.url, "late-db")
            status, _, body = await _post(http, proc.url, token, [session_record()], "late-db")
            assert status == 200, body
        assert await proc.stop() == 0
    finally:
        if proc.proc is not None and proc.proc.returncode is None:
            await proc.kill9()
    delays = [int(d) for d in re.findall(r"retrying in (\d+) s", proc.log.read_text())]
    assert delays[:3] == [1, 2, 4], delays


async def test_a_statement_stuck_on_a_lock_is_cancelled_and_answered_503(
        own_postgres: OwnPostgres, tmp_path: Path) -> None:
    own_postgres.start()
    proc = CollectorProcess(tmp_path / "unused.db", tmp_path / "collector.log", None,
                            url=own_postgres.url + "?command_timeout=1")
    await proc.start(wait_s=60)
    try:
        async with aiohttp.ClientSession() as http:
            token = await enrol(http, proc.url, "stuck")
            records = [session_record()]
            locker = await asyncpg.connect(own_postgres.url)
            try:
                tx = locker.transaction()
                await tx.start()
                # Another connection holds the table every upload writes to.
                await locker.execute("LOCK TABLE record_ids IN ACCESS EXCLUSIVE MODE")
                t0 = time.monotonic()
                status, retry_after, body = await _post(http, proc.url, token, records, "stuck")
                took = time.monotonic() - t0
                await tx.rollback()
            finally:
                await locker.close()
            assert status == 503, body
            assert retry_after is not None and orjson.loads(body)["error"] == "unavailable"
            assert 0.9 < took < 5, took  # cancelled at the 1 s statement timeout, no hang
            # The lock gone, the same batch is stored: nothing of it was kept before.
            status, _, body = await _post(http, proc.url, token, records, "stuck")
            assert status == 200 and orjson.loads(body)["accepted"] == 1, body
        assert await proc.stop() == 0
    finally:
        if proc.proc is not None and proc.proc.returncode is None:
            await proc.kill9()
    assert "canceling statement due to statement timeout" in proc.log.read_text()
