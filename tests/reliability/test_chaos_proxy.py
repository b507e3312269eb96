"""Real agents (the box's buffer and uploader) behind a chaos proxy: nothing lost,
nothing doubled, Retry-After honoured, and each box's request rate bounded."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from collector.settings import Settings
from protocol import Qos, SessionRecord, SurveyRecord, record_to_json
from stb_widget.buffer import SqliteBuffer
from stb_widget.clock import SystemClock
from stb_widget.config import parse_config
from stb_widget.http_client import HttpClient
from stb_widget.ids import uuid7
from stb_widget.sync import Uploader
from tests.collector.conftest import serve

from .chaos import ChaosProxy
from .conftest import ADMIN, check_report_counts_acknowledged, export_ids, fetch_report, scale


def box_config(tmp: Path, box: str, url: str, token: str) -> Any:
    return parse_config({
        "box_id": box, "data_dir": str(tmp / box),
        "collector": {"url": url, "token": token, "upload_delay_s": 0.2, "boot_jitter_s": 0,
                      "timeout_s": 1, "connect_timeout_s": 1, "backoff_base_s": 0.1,
                      "backoff_cap_s": 2},
        "player": {"source": "events", "events_socket": str(tmp / f"{box}.sock")},
    })


def session(now: datetime, i: int) -> SessionRecord:
    return SessionRecord(id=uuid7(), kind="session", started_at=now - timedelta(minutes=30),
                         ended_at=now - timedelta(minutes=1), channel=f"ch{i % 7}",
                         content_type="live",
                         qos=Qos(startup_ms=900, watch_s=1740.0, rebuffer_count=0,
                                 rebuffer_s=0.0, avg_bitrate_kbps=4000.0,
                                 bitrate_switches=0, failed=False))


class Box:
    def __init__(self, name: str, buffer: SqliteBuffer, uploader: Uploader) -> None:
        self.name = name
        self.buffer = buffer
        self.uploader = uploader
        self.made: list[str] = []
        self.records: list[dict[str, Any]] = []
        self.confirmed: list[str] = []

    async def produce(self, n: int, rng: random.Random) -> None:
        """Viewing sessions and, now and then, an answered question, as an agent stores them."""
        for i in range(n):
            now = datetime.now(UTC)
            s = session(now, i)
            await self.buffer.add_session(s)
            self.made.append(s.id)
            self.records.append(orjson.loads(orjson.dumps(record_to_json(s))))
            if rng.random() < 0.25:
                sv = SurveyRecord(id=uuid7(), kind="survey", session_id=s.id, shown_at=now,
                                  answered_at=now, outcome="answered", score=rng.randint(0, 10),
                                  reason=None, locale="nl")
                await self.buffer.confirmed(sv)
                self.confirmed.append(sv.id)
                await self.buffer.finished(sv)
                self.made.append(sv.id)
                self.records.append(orjson.loads(orjson.dumps(record_to_json(sv))))
            await asyncio.sleep(rng.uniform(0.0, 0.08))


@pytest.mark.timeout(900)
async def test_agents_behind_a_chaos_proxy_lose_and_double_nothing(tmp_path: Path) -> None:
    boxes_n, records_n, chaos_s = scale(12, 40), scale(120, 600), scale(14, 120)
    settings = Settings(db=f"sqlite:///{tmp_path / 'c.db'}", admin_token=ADMIN)
    async with serve(settings) as client:
        upstream = str(client.make_url("")).rstrip("/")
        proxy = ChaosProxy(upstream, random.Random(5))
        url = await proxy.start()
        boxes: list[Box] = []
        tasks: list[asyncio.Task[None]] = []
        clients: list[HttpClient] = []
        try:
            for i in range(boxes_n):
                name = f"chaos-{i}"
                resp = await client.post("/v1/boxes", json={"box_id": name},
                                         headers={"Authorization": f"Bearer {ADMIN}"})
                token = (await resp.json())["token"]
                cfg = box_config(tmp_path, name, url, token)
                (tmp_path / name).mkdir()
                buf = await SqliteBuffer.open(cfg.db_path, cfg.buffer, SystemClock())
                # Each box with its own client and the config's 1 s timeouts, as on a box.
                http = HttpClient(timeout_s=cfg.collector.timeout_s,
                                  connect_timeout_s=cfg.collector.connect_timeout_s)
                clients.append(http)
                up = Uploader(cfg, buf, http, SystemClock(), random.Random(i))
                boxes.append(Box(name, buf, up))
                tasks.append(asyncio.create_task(up.run()))
            producers = [asyncio.create_task(b.produce(records_n, random.Random(100 + i)))
                         for i, b in enumerate(boxes)]
            await asyncio.gather(*producers)
            await asyncio.sleep(chaos_s)  # chaos goes on while the backlog drains
            proxy.enabled = False
            for _ in range(600):
                if all(b.buffer.ready_count == 0 for b in boxes):
                    break
                await asyncio.sleep(0.1)
            assert all(b.buffer.ready_count == 0 for b in boxes), "buffers did not drain"
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for b in boxes:
                await b.buffer.close()
            for http in clients:
                await http.close()
            await proxy.close()

        stored = Counter(await export_ids(client.session, upstream, "session")
                         + await export_ids(client.session, upstream, "survey"))
        report = await fetch_report(client.session, upstream)
    made = [i for b in boxes for i in b.made]
    lost = [i for i in made if stored[i] == 0]
    doubled = [i for i, n in stored.items() if n > 1]
    assert not lost, f"{len(lost)} of {len(made)} records lost"
    assert not doubled, f"{len(doubled)} records doubled"
    assert set(stored) == set(made)
    # Every box made every record once and the buffers drained: the report counts each of
    # them once (duplicates resent through the chaos must not add up again).
    check_report_counts_acknowledged(report, [r for b in boxes for r in b.records])
    faults = Counter(s.fault for seen in proxy.log.values() for s in seen)
    # Every fault happened, and the collector saw resends of stored batches.
    assert all(faults[f] > 0 for f in ("reset", "reset_after", "stall", "truncate", "429",
                                       "503", "pass")), faults
    dups = sum(b.uploader.stats["records_duplicate"] for b in boxes)
    assert dups > 0
    # Retry-After honoured, and the request rate of each box bounded.
    assert not proxy.early_retries(), proxy.early_retries()[:5]
    # Without backoff a box would retry a reset at once, thousands of times a minute;
    # with it (and upload_delay_s 0.2 s here, 60 s in production) it stays low.
    rates = proxy.rates()
    assert max(rates.values()) <= 120, rates
    for b in boxes:
        con = sqlite3.connect(tmp_path / b.name / "buffer.sqlite3")
        try:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            con.close()
    print(f"\nchaos proxy: {len(boxes)} boxes, {len(made)} records, {sum(faults.values())} "
          f"requests, faults {dict(faults)}, {dups} duplicate records resent, "
          f"max requests/box/min {max(rates.values())}, lost 0, doubled 0")
