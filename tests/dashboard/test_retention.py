"""Retention and privacy: ``nps-collector purge`` and the hourly purge delete old records;
``nps-collector delete-box`` deletes everything of one box."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from tests.collector.conftest import batch, session_record, survey_record

from .conftest import ADMIN, enrol, report, start_collector, stop_collector, upload

CLI = str(Path(sys.executable).with_name("nps-collector"))


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "NPS_ADMIN_TOKEN": ADMIN})


async def test_purge_and_delete_box_commands(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    c = start_collector(tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            for box in ("stb-a", "stb-b"):
                token = await enrol(http, c, box)
                records = []
                for days_back in (5, 45, 100):
                    s = session_record(started=now - timedelta(days=days_back))
                    records += [s, survey_record(session_id=s["id"],
                                                 shown=now - timedelta(days=days_back) + timedelta(hours=1))]
                await upload(http, c, token, batch(box, records, box={"region": "NL-NH"}))
            everything = {"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"}
            assert (await report(http, c, **everything))["sessions"]["count"] == 6
    finally:
        stop_collector(c)

    done = cli("purge", "--older-than-days", "30", "--db", c.db)
    assert done.returncode == 0, done.stderr
    assert "purged 8 record(s)" in done.stderr
    done = cli("delete-box", "stb-b", "--db", c.db)
    assert done.returncode == 0, done.stderr
    assert "deleted 2 record(s)" in done.stderr
    bad = cli("purge", "--older-than-days", "-1", "--db", c.db)
    assert bad.returncode == 2 and "older-than-days" in bad.stderr

    c = start_collector(tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            rep = await report(http, c, **everything)
            assert rep["sessions"]["count"] == 1 and rep["surveys"]["shown"] == 1
            # delete-box took the box's tokens too: it can no longer upload.
            async with http.post(c.url + "/v1/batches", data=b"{}", headers={
                    "Authorization": "Bearer nbx_x", "Content-Type": "application/json"}) as r:
                assert r.status == 401
            async with http.get(c.url + "/v1/export", params={"kind": "session"},
                                headers=c.admin) as r:
                assert "stb-b" not in await r.text()
    finally:
        stop_collector(c)


async def test_retention_setting_purges_in_the_background(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    c = start_collector(tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            token = await enrol(http, c, "stb-r")
            old = session_record(started=now - timedelta(days=20))
            new = session_record(started=now - timedelta(days=2))
            await upload(http, c, token, batch("stb-r", [old, new]))
    finally:
        stop_collector(c)
    # Restarted with a 10-day retention: the purge runs at start, then hourly.
    c = start_collector(tmp_path, "--retention-days", "10")
    try:
        async with aiohttp.ClientSession() as http:
            import asyncio

            for _ in range(100):
                async with http.get(c.url + "/metrics") as r:
                    text = await r.text()
                if "nps_records_purged_total 1" in text:
                    break
                await asyncio.sleep(0.05)
            assert "nps_records_purged_total 1" in text
            rep = await report(http, c, **{"from": "2000-01-01T00:00:00Z"})
            assert rep["sessions"]["count"] == 1
    finally:
        stop_collector(c)
