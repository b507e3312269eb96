"""A fleet returning after a collector outage: the thundering herd, with the real uploader.

Every box has an hour of records buffered (the outage) and its retry timer fires in
the same second: the worst case, where full-jitter backoff has not spread the fleet
out. Each box is the agent's own :class:`stb_widget.sync.Uploader` over a
:class:`stb_widget.buffer.MemoryBuffer` (production backoff: base 2 s, cap 600 s,
Retry-After honoured), all in this process against a real ``nps-collector serve`` on
SQLite in another process. The collector must shed (503/429 with Retry-After), stay up,
and drain the backlog; nothing may be lost or doubled.

Figures: requests a second at the collector (from its access log: one JSON line per
request), answers by status, time to drain (the last buffer empty), records lost and
doubled (``GET /v1/export`` against what the boxes made), the collector's peak RSS.

    .venv/bin/python bench/outage_return.py                       # 10,000 boxes
    .venv/bin/python bench/outage_return.py --boxes 1000 --json   # smaller

The realistic return, where the boxes' backoff spreads them (``box-sim fleet
--outage``), is the gentler case; ``--box-sim`` runs it too, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.collector_process import free_port, wait_ready  # noqa: E402
from protocol import Qos, SessionRecord, SurveyRecord  # noqa: E402
from simulators.transport import SessionPoster  # noqa: E402
from stb_widget.buffer import MemoryBuffer  # noqa: E402
from stb_widget.clock import SystemClock  # noqa: E402
from stb_widget.config import parse_config  # noqa: E402
from stb_widget.ids import uuid7  # noqa: E402
from stb_widget.sync import Uploader  # noqa: E402

ADMIN = "outage-bench-admin-token-0123456789"


class PastClock(SystemClock):
    """The system clock, ``shift_s`` in the past: records made "during the outage"."""

    def __init__(self) -> None:
        self.shift_s = 0.0

    def wall(self) -> datetime:
        return super().wall() - timedelta(seconds=self.shift_s)


def start_collector(db: Path, port: int, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, NPS_ADMIN_TOKEN=ADMIN, NPS_LOG_LEVEL="INFO", PYTHONPATH=str(ROOT))
    with open(log, "wb") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "collector.cli", "serve", "--db", f"sqlite:///{db}",
             "--port", str(port), *extra], cwd=ROOT, env=env, stdout=fh, stderr=fh)


async def enrol_all(http: aiohttp.ClientSession, url: str, n: int) -> list[str]:
    gate = asyncio.Semaphore(64)

    async def one(i: int) -> str:
        async with gate:
            while True:
                async with http.post(url + "/v1/boxes", json={"box_id": f"herd-{i:05d}"},
                                     headers={"Authorization": f"Bearer {ADMIN}"}) as r:
                    if r.status == 201:
                        token: str = (await r.json())["token"]
                        return token
                await asyncio.sleep(0.1)

    return list(await asyncio.gather(*(one(i) for i in range(n))))


def box_records(rng: random.Random, now: datetime, n: int) -> list[SessionRecord | SurveyRecord]:
    out: list[SessionRecord | SurveyRecord] = []
    for _ in range(n):
        start = now - timedelta(minutes=rng.uniform(5, 60))
        watch = rng.uniform(60, 3000)
        s = SessionRecord(
            id=uuid7(), kind="session", started_at=start, ended_at=start + timedelta(seconds=watch),
            channel=f"ch{rng.randrange(30)}", content_type="live",
            qos=Qos(startup_ms=rng.randrange(300, 4000), watch_s=watch,
                    rebuffer_count=rng.randrange(3), rebuffer_s=rng.uniform(0, 5),
                    avg_bitrate_kbps=rng.uniform(800, 9000), bitrate_switches=rng.randrange(4),
                    failed=False))
        out.append(s)
        if rng.random() < 0.05:
            shown = s.ended_at
            out.append(SurveyRecord(id=uuid7(), kind="survey", session_id=s.id, shown_at=shown,
                                    answered_at=shown, outcome="answered",
                                    score=rng.randint(0, 10), reason=None, locale="nl"))
    return out


def access_figures(log: Path, t0: float) -> dict[str, Any]:
    """Requests a second and answers by status, from the collector's access log."""
    per_s: Counter[int] = Counter()
    statuses: Counter[int] = Counter()
    for line in log.read_text().splitlines():
        if not line.startswith("{"):
            continue
        doc = orjson.loads(line)
        if doc.get("msg") != "request" or doc.get("path") != "/v1/batches":
            continue
        ts = datetime.fromisoformat(doc["ts"]).timestamp()
        if ts < t0:
            continue
        per_s[int(ts - t0)] += 1
        statuses[int(doc["status"])] += 1
    return {"peak_requests_per_s": max(per_s.values(), default=0),
            "mean_requests_per_s": (sum(per_s.values()) / (max(per_s) + 1)) if per_s else 0,
            "requests": sum(per_s.values()),
            "answers": {str(k): v for k, v in sorted(statuses.items())}}


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


async def herd(boxes: int, records_per_box: int, *, concurrency: int, write_queue: int,
               retry_after: int, backoff_base: float, backoff_cap: float, seed: int,
               drain_limit_s: float) -> dict[str, Any]:
    """Run the herd once; answers the figures."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="outage-") as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = Path(tmp) / "collector.log"
        proc = start_collector(Path(tmp) / "c.db", port, log, "--write-queue", str(write_queue),
                               "--retry-after", str(retry_after))
        connector = aiohttp.TCPConnector(limit=concurrency)
        try:
            async with aiohttp.ClientSession(connector=connector) as http:
                await wait_ready(url)
                tokens = await enrol_all(http, url, boxes)
                clock = PastClock()
                clock.shift_s = 3600.0  # the hour of the outage
                now = datetime.now(UTC) - timedelta(hours=1)
                made: list[str] = []
                uploaders: list[Uploader] = []
                buffers: list[MemoryBuffer] = []
                # The boxes share this process's pool (a box has its own client, one
                # connection; 10,000 of those would measure this process, not the herd).
                poster = SessionPoster(http)
                for i, token in enumerate(tokens):
                    cfg = parse_config({
                        "box_id": f"herd-{i:05d}", "data_dir": tmp,
                        "collector": {"url": url, "token": token, "boot_jitter_s": 0,
                                      "upload_delay_s": 60, "backoff_base_s": backoff_base,
                                      "backoff_cap_s": backoff_cap, "timeout_s": 30},
                        "player": {"source": "events", "events_socket": f"{tmp}/x.sock"},
                    })
                    buf = MemoryBuffer(cfg.buffer, clock)
                    for rec in box_records(rng, now + timedelta(hours=1), records_per_box):
                        if isinstance(rec, SessionRecord):
                            await buf.add_session(rec)
                        else:
                            await buf.finished(rec)
                        made.append(rec.id)
                    buffers.append(buf)
                    uploaders.append(Uploader(cfg, buf, poster, SystemClock(),
                                              random.Random(seed * 100_000 + i)))
                clock.shift_s = 0.0
                # The outage ends: every box's retry timer fires in this second.
                t0 = time.time()
                start = time.monotonic()
                tasks = [asyncio.create_task(u.run()) for u in uploaders]
                left = boxes
                health_fail = 0
                async with aiohttp.ClientSession() as probe:
                    while time.monotonic() - start < drain_limit_s:
                        await asyncio.sleep(0.5)
                        left = sum(1 for b in buffers if b.ready_count)
                        try:
                            async with probe.get(url + "/healthz",
                                                 timeout=aiohttp.ClientTimeout(total=10)) as r:
                                health_fail += r.status != 200
                        except (aiohttp.ClientError, TimeoutError):
                            health_fail += 1
                        if left == 0:
                            break
                drain_s = time.monotonic() - start
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                async with http.get(url + "/v1/export", params={"kind": "session"},
                                    headers={"Authorization": f"Bearer {ADMIN}"}) as r:
                    body = await r.read()
                async with http.get(url + "/v1/export", params={"kind": "survey"},
                                    headers={"Authorization": f"Bearer {ADMIN}"}) as r:
                    body += await r.read()
                stored = Counter(orjson.loads(x)["id"] for x in body.splitlines() if x.strip())
                alive = proc.poll() is None
                peak_rss = rss_kb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
        figures = access_figures(log, t0)
        stats: Counter[str] = Counter()
        for u in uploaders:
            stats.update(u.stats)
        return {
            "boxes": boxes, "records": len(made), "records_per_box": records_per_box,
            "client_connections": concurrency, "write_queue": write_queue,
            "retry_after_s": retry_after, "backoff_base_s": backoff_base,
            "backoff_cap_s": backoff_cap,
            "drained": left == 0, "drain_s": round(drain_s, 1),
            "lost": sum(1 for i in made if stored[i] == 0),
            "doubled": sum(1 for n in stored.values() if n > 1),
            "collector_up": alive, "healthz_failures": health_fail,
            "collector_peak_rss_mb": round(peak_rss / 1024, 1),
            **figures,
            "box_side": {k: v for k, v in sorted(stats.items()) if k.startswith(("http_", "network"))},
        }


def box_sim(boxes: int) -> dict[str, Any]:
    """The realistic return: ``box-sim fleet`` with a one-hour outage in the evening."""
    with tempfile.TemporaryDirectory(prefix="outage-sim-") as tmp:
        port = free_port()
        log = Path(tmp) / "collector.log"
        # Virtual time packs hours of a box's uploads into seconds: lift the per-box rate
        # limit, which counts real time (as scripts/demo and bench/fleet.py do).
        proc = start_collector(Path(tmp) / "c.db", port, log, "--box-rate", "1000000",
                               "--box-burst", "1000000")
        try:
            time.sleep(2)
            out = subprocess.run(
                [str(ROOT / ".venv" / "bin" / "box-sim"), "fleet", "--collector",
                 f"http://127.0.0.1:{port}", "--boxes", str(boxes), "--days", "1", "--seed", "8",
                 "--outage", "19:1", "--json", "--concurrency", "256"],
                env=dict(os.environ, NPS_ADMIN_TOKEN=ADMIN), capture_output=True, check=True,
                timeout=3600)
        finally:
            proc.terminate()
            proc.wait(30)
        doc: dict[str, Any] = orjson.loads(out.stdout)
        return {k: doc[k] for k in ("boxes", "sessions", "records_made", "records_accepted",
                                    "records_duplicate", "records_buffered", "drained", "real_s",
                                    "network") if k in doc}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--boxes", type=int, default=10_000)
    p.add_argument("--records-per-box", type=int, default=3,
                   help="records each box buffered during the hour (default 3)")
    p.add_argument("--connections", type=int, default=1000,
                   help="most connections open to the collector at once (default 1000)")
    p.add_argument("--write-queue", type=int, default=512, help="the collector's --write-queue")
    p.add_argument("--retry-after", type=int, default=10, help="the collector's --retry-after")
    p.add_argument("--backoff-base", type=float, default=2.0)
    p.add_argument("--backoff-cap", type=float, default=600.0)
    p.add_argument("--drain-limit", type=float, default=1800.0, help="give up after (s)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--box-sim", action="store_true",
                   help="also run box-sim fleet --outage with the same number of boxes")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    import logging

    # Ten thousand boxes each warn on every shed answer: keep the figures readable.
    logging.basicConfig(level=logging.ERROR)
    result: dict[str, Any] = {"herd": asyncio.run(herd(
        a.boxes, a.records_per_box, concurrency=a.connections, write_queue=a.write_queue,
        retry_after=a.retry_after, backoff_base=a.backoff_base, backoff_cap=a.backoff_cap,
        seed=a.seed, drain_limit_s=a.drain_limit))}
    if a.box_sim:
        result["box_sim"] = box_sim(a.boxes)
    if a.json:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return
    for name, figures in result.items():
        print(f"== {name}")
        for k, v in figures.items():
            print(f"{k:>28}: {v}")


if __name__ == "__main__":
    main()
