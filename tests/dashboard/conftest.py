"""Fixtures for the dashboard: the collector as a real process, data through the real
upload API, and a real headless Chromium driven by Playwright (Debian's chromium)."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.collector.conftest import (  # noqa: F401  (fixtures shared with tests/collector)
    api,
    batch,
    db_url,
    new_id,
    session_record,
    settings_factory,
    store,
    survey_record,
)

ADMIN = "dash-admin-token-0123456789"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ROOT = Path(__file__).resolve().parents[2]
# The README's screenshots are refreshed only on request (NPS_UPDATE_SCREENSHOTS=1), so that
# a test run never leaves the work tree changed; otherwise they go to a scratch folder.
SCREENSHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("NPS_UPDATE_SCREENSHOTS")
    else Path(tempfile.gettempdir()) / "nps-dashboard-screenshots"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Collector:
    """A running ``nps-collector serve`` process."""

    url: str
    db: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN}"}


def start_collector(tmp: Path, *extra: str, env: dict[str, str] | None = None,
                    db: str | None = None) -> Collector:
    """Start the collector on a free port and wait until it is ready."""
    port = free_port()
    db = db or f"sqlite:///{tmp / 'collector.db'}"
    log = tmp / "collector.log"
    full_env = {**os.environ, "NPS_ADMIN_TOKEN": ADMIN, **(env or {})}
    exe = Path(sys.executable).with_name("nps-collector")
    with log.open("wb") as out:
        proc = subprocess.Popen([str(exe), "serve", "--db", db, "--port", str(port), *extra],
                                stdout=out, stderr=subprocess.STDOUT, env=full_env)
    url = f"http://127.0.0.1:{port}"
    import time
    import urllib.request

    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"collector did not start:\n{log.read_text()}")
        time.sleep(0.1)
    return Collector(url, db, proc, log)


def stop_collector(c: Collector) -> None:
    c.proc.terminate()
    try:
        c.proc.wait(10)
    except subprocess.TimeoutExpired:
        c.proc.kill()
        c.proc.wait()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def collector(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Collector]:
    """The collector as a real process, on SQLite and on PostgreSQL: the dashboard must
    show the same figures whatever database is behind it."""
    db = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    c = start_collector(tmp_path, db=db)
    try:
        yield c
    finally:
        stop_collector(c)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        yield s


async def enrol(http: aiohttp.ClientSession, c: Collector, box_id: str) -> str:
    async with http.post(c.url + "/v1/boxes", json={"box_id": box_id}, headers=c.admin) as r:
        assert r.status == 201, await r.text()
        token: str = (await r.json())["token"]
        return token


async def upload(http: aiohttp.ClientSession, c: Collector, token: str, doc: dict[str, Any]) -> dict[str, Any]:
    async with http.post(c.url + "/v1/batches", data=orjson.dumps(doc), headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"}) as r:
        assert r.status == 200, await r.text()
        answer: dict[str, Any] = await r.json()
        return answer


async def report(http: aiohttp.ClientSession, c: Collector, **params: str) -> dict[str, Any]:
    async with http.get(c.url + "/v1/report", params=params, headers=c.admin) as r:
        assert r.status == 200, await r.text()
        data: dict[str, Any] = await r.json()
        return data


REGIONS = ("NL-NH", "NL-ZH", "NL-UT")
MODELS = ("X-200", "X-300")
CHANNELS = ("NPO1", "NPO2", "RTL4", "Ziggo Sport")


async def load_fleet(http: aiohttp.ClientSession, c: Collector, *, boxes: int = 12, days: int = 40,
                     per_day: int = 6, seed: int = 7, now: datetime | None = None) -> int:
    """Upload a realistic fleet: sessions with varied quality, surveys whose score falls with
    rebuffering; answers ``days`` back from ``now``. Returns the records sent."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    sent = 0
    for b in range(boxes):
        box_id = f"stb-{b:04d}"
        token = await enrol(http, c, box_id)
        attrs = {"region": REGIONS[b % 3], "model": MODELS[b % 2], "firmware": f"4.{b % 3}.0"}
        records: list[dict[str, Any]] = []
        for d in range(days):
            for _ in range(per_day):
                started = now - timedelta(days=d, hours=rng.uniform(1, 20))
                watch = rng.uniform(600, 5400)
                bad = rng.random() < 0.25
                rb = watch * rng.choice((0.0, 0.003, 0.008)) if not bad else watch * rng.uniform(0.02, 0.1)
                startup = rng.choice((600, 900, 1500, 2500)) if not bad else rng.choice((3000, 6500, 9000))
                bitrate = rng.choice((6000.0, 4500.0, 9000.0)) if not bad else rng.choice((800.0, 2000.0))
                failed = bad and rng.random() < 0.2
                s = session_record(started=started, watch_s=round(watch, 1), rebuffer_s=round(rb, 2),
                                   rebuffer_count=0 if rb == 0 else rng.randint(1, 9), startup_ms=startup,
                                   bitrate=bitrate, failed=failed, channel=rng.choice(CHANNELS),
                                   content_type=rng.choice(("live", "vod", "catchup")))
                records.append(s)
                if rng.random() < 0.35:
                    shown = started + timedelta(seconds=watch + 2)
                    outcome = rng.choices(("answered", "dismissed", "timeout"),
                                          weights=(0.55 if bad else 0.75, 0.25, 0.15))[0]
                    base = 5.0 if bad else 8.6
                    score = max(0, min(10, round(rng.gauss(base, 2.0))))
                    reason = (rng.choice(("buffering", "picture")) if bad
                              else rng.choice(("content", "price", "interface", "other", None)))
                    records.append(survey_record(session_id=s["id"], shown=shown, outcome=outcome,
                                                 score=score, reason=reason))
        for i in range(0, len(records), 400):
            chunk = records[i:i + 400]
            answer = await upload(http, c, token, batch(box_id, chunk, box=attrs))
            assert answer["accepted"] == len(chunk), answer
            sent += len(chunk)
    return sent


def chromium_or_fail() -> str:
    """Chromium's path; a missing browser fails under CI (it must be installed there) and
    skips on a developer machine without it."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: scripts/setup-system installs Debian's chromium")
    found = shutil.which("chromium")
    if found:
        return found
    pytest.skip("no chromium on this machine (apt-get install chromium)")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    path = chromium_or_fail()
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    ctx = await browser.new_context(viewport={"width": 1360, "height": 900}, device_scale_factor=1)
    pg = await ctx.new_page()
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(str(e)))
    pg.problems = problems
    # Every request the page makes, to check that nothing is fetched from elsewhere.
    requests: list[str] = []
    pg.on("request", lambda r: requests.append(r.url))
    pg.requests = requests
    try:
        yield pg
    finally:
        await ctx.close()


async def login(page: Any, c: Collector) -> None:
    await page.goto(c.url + "/dashboard")
    assert page.url.endswith("/dashboard/login")
    await page.fill("#token", ADMIN)
    await page.click("button[type=submit]")
    await page.wait_for_url(c.url + "/dashboard")
    await page.wait_for_selector("body[data-charts=ready]")


__all__ = ["asyncio", "new_id"]
