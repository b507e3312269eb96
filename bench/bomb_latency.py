"""A good box's upload latency while others send decompression bombs (issue 16, finding 2).

A real ``nps-collector serve`` (SQLite, in its own process). One good box uploads a
normal batch (20 sessions, gzip, as the agent sends them) back to back and times each
upload. First alone ("idle"), then while ``--attackers`` connections each send, back to
back, a gzip body of about 8 KB that inflates to 7.8 MB of JSON: an unknown key holding
millions of empty objects, the costliest JSON per byte to decode. The per-box rate limit
is lifted (one box each, but the limiter is not what is measured here).

    .venv/bin/python bench/bomb_latency.py [--attackers 24] [--seconds 20] [--runs 3] [--json]
    .venv/bin/python bench/bomb_latency.py --threshold

Prints, per run, the good box's median, p90 and max upload latency idle and under attack,
their ratio, and how many bombs the collector answered. ``--threshold`` instead measures
what chose ``collector.decoding.INLINE_MAX_BYTES``: the event loop's cost of the worst
JSON per byte at several inflated sizes, and a normal 500-record batch decoded on the
loop against the round trip through the worker process.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.collector_process import enrol, free_port, wait_ready  # noqa: E402

ADMIN = "bench-admin-token-0123456789abcdef"


def _session() -> dict[str, Any]:
    start = datetime.now(UTC) - timedelta(hours=1)
    return {
        "id": str(uuid.uuid4()), "kind": "session",
        "started_at": start.isoformat().replace("+00:00", "Z"),
        "ended_at": (start + timedelta(minutes=20)).isoformat().replace("+00:00", "Z"),
        "channel": "NPO1", "content_type": "live",
        "qos": {"startup_ms": 800, "watch_s": 1200.0, "rebuffer_count": 0, "rebuffer_s": 0.0,
                "avg_bitrate_kbps": 5400.0, "bitrate_switches": 1, "failed": False},
    }


def _batch(box_id: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"protocol": 1, "box_id": box_id,
            "sent_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"), "records": records}


def bomb(box_id: str, size: int = 7_800_000) -> bytes:
    """~8 KB of gzip inflating to ``size`` bytes of valid JSON: one good record and an
    unknown key holding empty objects."""
    head = orjson.dumps(_batch(box_id, [_session()]))[:-1]
    n = (size - len(head)) // 3
    return gzip.compress(head + b',"pad":[' + b"{}," * (n - 1) + b"{}]}", 9)


async def _good_box(http: aiohttp.ClientSession, url: str, token: str, seconds: float) -> list[float]:
    latencies: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        body = gzip.compress(orjson.dumps(_batch("good", [_session() for _ in range(20)])))
        start = time.perf_counter()
        async with http.post(f"{url}/v1/batches", data=body, headers={
                "Authorization": f"Bearer {token}", "Content-Type": "application/json",
                "Content-Encoding": "gzip"}) as r:
            await r.read()
            assert r.status == 200, r.status
        latencies.append(time.perf_counter() - start)
        await asyncio.sleep(0.05)  # a box does not upload back to back; nor should this
    return latencies


async def _attacker(http: aiohttp.ClientSession, url: str, token: str, body: bytes,
                    stop: asyncio.Event, answers: dict[int, int]) -> None:
    while not stop.is_set():
        try:
            async with http.post(f"{url}/v1/batches", data=body, headers={
                    "Authorization": f"Bearer {token}", "Content-Type": "application/json",
                    "Content-Encoding": "gzip"}) as r:
                await r.read()
                answers[r.status] = answers.get(r.status, 0) + 1
                if r.status in (429, 503):
                    await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
        except aiohttp.ClientError:
            answers[0] = answers.get(0, 0) + 1


def _summary(lat: list[float]) -> dict[str, float]:
    ms = sorted(x * 1000 for x in lat)
    return {"n": len(ms), "median_ms": round(statistics.median(ms), 1),
            # Nearest rank: the smallest latency that 90 % of uploads did not exceed.
            "p90_ms": round(ms[math.ceil(0.9 * len(ms)) - 1], 1), "max_ms": round(ms[-1], 1)}


async def one_run(attackers: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "NPS_ADMIN_TOKEN": ADMIN, "PYTHONPATH": str(ROOT)}
        log = open(Path(tmp) / "collector.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "collector.cli", "serve", "--db", f"sqlite:///{tmp}/c.db",
             "--port", str(port), "--box-rate", "1000000", "--box-burst", "1000000"],
            cwd=ROOT, env=env, stdout=log, stderr=log)
        try:
            await wait_ready(url)
            conn = aiohttp.TCPConnector(limit=attackers + 4)
            async with aiohttp.ClientSession(connector=conn) as http:
                good = await enrol(http, url, ADMIN, "good")
                tokens = [await enrol(http, url, ADMIN, f"bomb-{i}") for i in range(attackers)]
                # Warm up both paths (the worker process starts at the first large body).
                await _good_box(http, url, good, 1.0)
                async with http.post(f"{url}/v1/batches", data=bomb("bomb-0"), headers={
                        "Authorization": f"Bearer {tokens[0]}", "Content-Type": "application/json",
                        "Content-Encoding": "gzip"}) as r:
                    await r.read()
                idle = await _good_box(http, url, good, seconds)
                stop = asyncio.Event()
                answers: dict[int, int] = {}
                tasks = [asyncio.create_task(_attacker(http, url, t, bomb(f"bomb-{i}"), stop, answers))
                         for i, t in enumerate(tokens)]
                await asyncio.sleep(1.0)  # the attack is under way
                attacked = await _good_box(http, url, good, seconds)
                stop.set()
                await asyncio.gather(*tasks)
        finally:
            proc.terminate()
            proc.wait(20)
            log.close()
    i, a = _summary(idle), _summary(attacked)
    return {"idle": i, "attack": a, "ratio_median": round(a["median_ms"] / i["median_ms"], 2),
            "bomb_answers": {str(k): v for k, v in sorted(answers.items())}}


def _best_ms(fn: Any, repeat: int = 7) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return round(best * 1000, 2)


def threshold() -> dict[str, Any]:
    """The figures behind ``INLINE_MAX_BYTES`` (best of 7, to see past the machine's load)."""
    from collector.decoding import BodyDecoder
    from protocol import decode_batch, inflate

    worst: dict[str, float] = {}
    for kib in (64, 128, 256, 512, 1024):
        body = bomb("b", kib * 1024)
        worst[f"{kib}KiB"] = _best_ms(lambda body=body: decode_batch(inflate(body, gzipped=True)))
    normal = gzip.compress(orjson.dumps(_batch("b", [_session() for _ in range(500)])))
    inline_ms = _best_ms(lambda: decode_batch(inflate(normal, gzipped=True)))

    async def offloaded() -> float:
        decoder = BodyDecoder()
        try:
            await decoder.decode_in_worker(normal, True)  # the worker start is not measured
            best = float("inf")
            for _ in range(7):
                start = time.perf_counter()
                await decoder.decode_in_worker(normal, True)
                best = min(best, time.perf_counter() - start)
            return round(best * 1000, 2)
        finally:
            await decoder.close()

    async def stall_with_thread() -> tuple[float, float]:
        """The event loop's longest stall while one bomb is decoded in a thread (why a
        thread is not enough: orjson holds the GIL), and the decode's own time."""
        big = bomb("b")
        stalls: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                stalls.append(now - last)
                last = now

        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0.05)
        start = time.perf_counter()
        await asyncio.to_thread(lambda: decode_batch(inflate(big, gzipped=True)))
        took = time.perf_counter() - start
        done.set()
        await tick
        return round(max(stalls) * 1000, 1), round(took * 1000, 1)

    stall_ms, decode_ms = asyncio.run(stall_with_thread())
    return {"bomb_in_a_thread": {"decode_ms": decode_ms, "longest_loop_stall_ms": stall_ms},
            "worst_json_on_loop_ms": worst,
            "normal_500_records": {"inflated_bytes": len(inflate(normal, gzipped=True)),
                                   "on_loop_ms": inline_ms,
                                   "worker_round_trip_ms": asyncio.run(offloaded())}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--attackers", type=int, default=24)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--json", action="store_true")
    p.add_argument("--threshold", action="store_true", help="measure what chose the threshold")
    args = p.parse_args()
    if args.threshold:
        print(orjson.dumps(threshold(), option=orjson.OPT_INDENT_2).decode())
        return
    runs = [asyncio.run(one_run(args.attackers, args.seconds)) for _ in range(args.runs)]
    if args.json:
        print(orjson.dumps(runs, option=orjson.OPT_INDENT_2).decode())
        return
    for n, r in enumerate(runs, 1):
        print(f"run {n}: idle median {r['idle']['median_ms']} ms (p90 {r['idle']['p90_ms']}, "
              f"max {r['idle']['max_ms']}, n {r['idle']['n']}); under {args.attackers} bombers "
              f"median {r['attack']['median_ms']} ms (p90 {r['attack']['p90_ms']}, max "
              f"{r['attack']['max_ms']}, n {r['attack']['n']}); ratio {r['ratio_median']}; "
              f"bomb answers {r['bomb_answers']}")


if __name__ == "__main__":
    main()
