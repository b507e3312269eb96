"""The collector SIGKILLed again and again while many boxes upload.

A real ``nps-collector serve`` on SQLite; 24 uploaders each send their own batches and
retry each one (same ids) until it is acknowledged, through every kill and restart.
Afterwards ``GET /v1/export`` must hold every acknowledged record exactly once, nothing
that was never sent, ``GET /v1/report`` must count each of them once, and the database
must pass ``PRAGMA integrity_check``.

Short mode: 5 kills. Long mode (``scripts/reliability-long``): 100 kills.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections import Counter
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.collector.conftest import batch, session_record, survey_record

from .conftest import (
    CollectorProcess,
    check_report_counts_acknowledged,
    enrol,
    read_back,
    scale,
    uploading,
)

BOXES = 24
RECORDS_PER_BATCH = 20


class Uploader:
    """One box: sends its batches in turn, each until it is acknowledged."""

    def __init__(self, box: str, token: str, rng: random.Random) -> None:
        self.box = box
        self.token = token
        self.rng = rng
        self.acked: list[str] = []
        self.acked_records: list[dict[str, object]] = []
        self.sent: set[str] = set()
        self.sent_records: list[dict[str, object]] = []
        self.attempts = 0
        self.failures: Counter[str] = Counter()

    def next_batch(self) -> list[dict[str, object]]:
        recs: list[dict[str, object]] = []
        while len(recs) < RECORDS_PER_BATCH:
            s = session_record()
            recs.append(s)
            if self.rng.random() < 0.3:
                recs.append(survey_record(session_id=str(s["id"]), score=self.rng.randint(0, 10)))
        return recs

    async def run(self, http: aiohttp.ClientSession, url: str, stop: asyncio.Event) -> None:
        while not stop.is_set():
            recs = self.next_batch()
            self.sent.update(str(r["id"]) for r in recs)
            self.sent_records.extend(recs)
            while True:  # this batch, until acknowledged: a box never gives a record up
                self.attempts += 1
                try:
                    body = orjson.dumps(batch(self.box, recs))  # sent_at afresh each try
                    async with http.post(url + "/v1/batches", data=body, headers={
                            "Authorization": f"Bearer {self.token}",
                            "Content-Type": "application/json"},
                            timeout=aiohttp.ClientTimeout(total=10)) as resp:
                        doc = await resp.json(content_type=None) if resp.status == 200 else None
                        status = resp.status
                except (aiohttp.ClientError, OSError, TimeoutError, orjson.JSONDecodeError) as exc:
                    self.failures[type(exc).__name__] += 1
                    await asyncio.sleep(0.05 + self.rng.random() * 0.1)
                    continue
                if status == 200 and isinstance(doc, dict) and \
                        doc["accepted"] + doc["duplicates"] + len(doc["rejected"]) == len(recs):
                    assert doc["rejected"] == []
                    self.acked.extend(str(r["id"]) for r in recs)
                    self.acked_records.extend(recs)
                    break
                self.failures[f"http_{status}"] += 1
                await asyncio.sleep(0.05)


@pytest.mark.timeout(1800)
async def test_sigkill_collector_under_load_loses_and_doubles_nothing(tmp_path: Path) -> None:
    kills = scale(5, 100)
    rng = random.Random(8)
    proc = CollectorProcess(tmp_path / "c.db", tmp_path / "collector.log", None,
                            "--box-rate", "100000", "--box-burst", "100000")
    await proc.start()
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as http:
        uploaders = [Uploader(f"kill-{i}", await enrol(http, proc.url, f"kill-{i}"),
                              random.Random(i)) for i in range(BOXES)]
        tasks = [asyncio.create_task(u.run(http, proc.url, stop)) for u in uploaders]
        acked_at_kill = []
        async with uploading(stop, tasks):
            for _ in range(kills):
                await asyncio.sleep(rng.uniform(0.3, 1.2))
                acked_at_kill.append(sum(len(u.acked) for u in uploaders))
                await proc.kill9()
                await asyncio.sleep(rng.uniform(0.0, 0.3))  # boxes retry into a closed port
                await proc.start()
            await asyncio.sleep(1.0)
        stored, report = await read_back(http, proc.url)
    assert await proc.stop() == 0

    acked = [i for u in uploaders for i in u.acked]
    sent = set().union(*(u.sent for u in uploaders))
    lost = [i for i in acked if stored[i] == 0]
    doubled = [i for i, n in stored.items() if n > 1]
    assert len(set(acked)) == len(acked)
    assert not lost, f"{len(lost)} acknowledged records lost"
    assert not doubled, f"{len(doubled)} records stored twice"
    assert set(stored) <= sent
    # Every batch finished after the last restart, so everything sent was acknowledged.
    assert set(stored) == set(acked) == sent
    # What the operator reads adds up to what was acknowledged, each record once: a resent
    # record counted again in the aggregates fails here, though its id is stored once.
    check_report_counts_acknowledged(report, [r for u in uploaders for r in u.acked_records])
    # The kills hit a collector at work: records were acknowledged between kills, and
    # uploads failed because of them.
    assert acked_at_kill[-1] > acked_at_kill[0] > 0
    assert sum(sum(u.failures.values()) for u in uploaders) >= kills
    con = sqlite3.connect(tmp_path / "c.db")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
    print(f"\ncollector kill -9: {kills} kills, {len(acked)} records acknowledged, "
          f"{sum(u.attempts for u in uploaders)} attempts, lost 0, doubled 0")
