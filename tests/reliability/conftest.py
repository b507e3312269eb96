"""Shared helpers for the reliability suite: a collector in-process or as a real
``nps-collector serve`` subprocess, enrolment, and the long-mode switch.

Long modes run only with ``NPS_RELIABILITY_LONG=1`` (``scripts/reliability-long`` sets it);
the short modes run in the normal suite and in CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests import reference as contract
from tests.collector.conftest import db_url  # noqa: F401  (a fixture: SQLite and PostgreSQL)

ROOT = Path(__file__).parents[2]
ADMIN = "reliability-admin-token-0123456789abcdef"
LONG = os.environ.get("NPS_RELIABILITY_LONG") == "1"


def scale(short: int, long: int) -> int:
    """``short`` in the normal suite, ``long`` under ``scripts/reliability-long``."""
    return long if LONG else short


def require(condition: bool, what: str) -> None:
    """Skip where something needed is missing, except under CI, where that fails."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and {what} is missing")
    pytest.skip(f"{what} is missing")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class CollectorProcess:
    """A real ``nps-collector serve`` on SQLite, started and SIGKILLed at will."""

    def __init__(self, db: Path, log: Path, port: int | None = None, *extra: str,
                 env: dict[str, str] | None = None, url: str | None = None) -> None:
        self.db = db
        #: ``--db`` as given (PostgreSQL, say); else SQLite at ``db``.
        self.db_url = url or f"sqlite:///{db}"
        self.log = log
        self.port = port or free_port()
        self.extra = extra
        self.env = env or {}
        self.proc: asyncio.subprocess.Process | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    async def start(self, wait_s: float = 30) -> None:
        env = {**os.environ, "NPS_ADMIN_TOKEN": ADMIN, "PYTHONPATH": str(ROOT), **self.env}
        with open(self.log, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "collector.cli", "serve", "--db", self.db_url,
                "--port", str(self.port), *self.extra, cwd=ROOT, env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            )
        async with aiohttp.ClientSession() as http:
            for _ in range(int(wait_s / 0.05)):
                if self.proc.returncode is not None:
                    raise AssertionError(f"collector exited {self.proc.returncode}: "
                                         + self.log.read_text()[-2000:])
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(self.url + "/readyz") as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise AssertionError("collector did not become ready: " + self.log.read_text()[-2000:])

    async def kill9(self) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        rc = self.proc.returncode
        assert rc is not None
        return rc


@contextlib.asynccontextmanager
async def collector_process(tmp: Path, *extra: str) -> AsyncIterator[CollectorProcess]:
    proc = CollectorProcess(tmp / "collector.db", tmp / "collector.log", None, *extra)
    await proc.start()
    try:
        yield proc
    finally:
        await proc.stop()


async def enrol(http: aiohttp.ClientSession, base: str, box_id: str) -> str:
    async with http.post(base + "/v1/boxes", json={"box_id": box_id},
                         headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
        assert resp.status == 201, await resp.text()
        token: str = (await resp.json())["token"]
        return token


async def export_ids(http: aiohttp.ClientSession, base: str, kind: str) -> list[str]:
    """Every stored id of ``kind``, as ``GET /v1/export`` streams them (with repeats, if any)."""
    import orjson

    async with http.get(base + "/v1/export", params={"kind": kind},
                        headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.read()
    return [orjson.loads(line)["id"] for line in body.splitlines() if line.strip()]




@contextlib.asynccontextmanager
async def uploading(stop: asyncio.Event, tasks: Sequence[asyncio.Task[Any]]) -> AsyncIterator[None]:
    """The uploader tasks run while the block does. When it ends they are told to stop and
    awaited (each ends after the batch in hand: 2 minutes at most); whatever still runs is
    cancelled, at once if the block failed."""
    try:
        yield
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
    finally:
        stop.set()
        for t in tasks:
            t.cancel()


async def read_back(http: aiohttp.ClientSession, base: str) -> tuple[Counter[str], dict[str, Any]]:
    """Every stored id, sessions and surveys, with how often the export streams it (more
    than once would be a record stored twice), and the report."""
    stored = Counter(await export_ids(http, base, "session") + await export_ids(http, base, "survey"))
    return stored, await fetch_report(http, base)


async def fetch_report(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with http.get(base + "/v1/report", headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
        assert resp.status == 200, await resp.text()
        doc: dict[str, Any] = await resp.json()
        return doc


def check_report_counts_acknowledged(report: dict[str, Any], acked: list[dict[str, Any]]) -> None:
    """The report's figures are those of the acknowledged records (wire JSON), each once.

    Stored primary keys cannot double; the report's counts can (a resent record added to
    the aggregates again), so this checks what an operator reads: sessions, surveys,
    answers, the histogram and every bucket's sessions and answers."""
    ids = [r["id"] for r in acked]
    assert len(set(ids)) == len(ids), "the same record acknowledged twice in the test's list"
    sessions = [r for r in acked if r["kind"] == "session"]
    surveys = [r for r in acked if r["kind"] == "survey"]
    by_id = {s["id"]: s for s in sessions}
    surveyed = {v["session_id"] for v in surveys}
    answered = [v for v in surveys if v["outcome"] == "answered"]

    def metric(s: dict[str, Any], m: str) -> float | None:
        q = s["qos"]
        if m == "rebuffer_ratio":
            return q["rebuffer_s"] / q["watch_s"] if q["watch_s"] else 0.0
        # Optional metrics (video_height) may be absent: absent is null (contract section 3).
        value: float | None = q.get(m)
        return value

    want: dict[str, Any] = {
        "sessions": contract.session_figures(
            (s["qos"]["startup_ms"], s["qos"]["failed"], s["id"] in surveyed) for s in sessions),
        "surveys": {"shown": len(surveys), "answered": len(answered),
                    "dismissed": sum(1 for v in surveys if v["outcome"] == "dismissed"),
                    "timeout": sum(1 for v in surveys if v["outcome"] == "timeout")},
        **contract.answer_figures([v["score"] for v in answered],
                                  [v.get("reason") for v in answered]),
        "by_qos": {m: contract.by_qos(m, [metric(s, m) for s in sessions],
                                      [(metric(by_id[v["session_id"]], m), v["score"])
                                       for v in answered if v["session_id"] in by_id])
                   for m in contract.BUCKET_EDGES},
    }
    contract.assert_close(report, want)
