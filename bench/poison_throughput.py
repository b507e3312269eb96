"""Good boxes' uploads while one box loops batches a database refuses (issue 16, finding 1).

A real ``nps-collector serve`` in its own process, on PostgreSQL (a database made for the
run and dropped after) or SQLite. ``--boxes`` good boxes upload 4 sessions at a time, back
to back, for ``--seconds``: first alone, then while one more box loops 100-record batches
of what PostgreSQL refuses (U+0000 in a channel, counts of 2^31), or, as the control
(``--attack valid``), 100 good records a batch. Prints, per phase, the
good uploads answered 200 and every other answer, and the ratio of good uploads with and
without the attacker. The per-box rate limit is lifted: the store is what is measured.

    .venv/bin/python bench/poison_throughput.py [--db postgres|sqlite] [--seconds 20] [--runs 3]
    .venv/bin/python bench/poison_throughput.py --root /path/to/an/older/checkout   # before/after

``--root`` runs the collector of another checkout (its own code, this script's load).
``--paced --boxes 200``: the fleet as it runs (default per-box limits, each good box about
once a second); without it the limits are lifted and every box uploads back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.collector_process import enrol, free_port, wait_ready  # noqa: E402

ADMIN = "bench-admin-token-0123456789abcdef"
PG = "postgresql://postgres@127.0.0.1:5432"


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def _session(channel: str = "NPO1", count: int = 0) -> dict[str, Any]:
    start = datetime.now(UTC) - timedelta(hours=1)
    return {
        "id": str(uuid.uuid4()), "kind": "session", "started_at": _iso(start),
        "ended_at": _iso(start + timedelta(minutes=20)), "channel": channel,
        "content_type": "live",
        "qos": {"startup_ms": 800, "watch_s": 1200.0, "rebuffer_count": count,
                "rebuffer_s": 0.0, "avg_bitrate_kbps": 5400.0, "bitrate_switches": 1,
                "failed": False},
    }


def _body(box_id: str, records: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"protocol": 1, "box_id": box_id, "sent_at": _iso(datetime.now(UTC)),
                         "records": records})


async def _post(http: aiohttp.ClientSession, url: str, token: str, body: bytes) -> int:
    async with http.post(f"{url}/v1/batches", data=body, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"}) as r:
        await r.read()
        return r.status


async def _good(http: aiohttp.ClientSession, url: str, box: str, token: str, seconds: float,
                answers: dict[int, int], pace_s: float) -> None:
    end = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < end:
        status = await _post(http, url, token, _body(box, [_session() for _ in range(4)]))
        answers[status] = answers.get(status, 0) + 1
        if pace_s:
            await asyncio.sleep(pace_s)


async def _attacker(http: aiohttp.ClientSession, url: str, token: str, stop: asyncio.Event,
                    answers: dict[int, int], kind: str) -> None:
    if kind == "poison":
        records = [_session(channel="NPO\u00001") for _ in range(50)] + \
                  [_session(count=2**31) for _ in range(50)]
    else:  # the control: a box as heavy, whose records are all good
        records = [_session() for _ in range(100)]
    while not stop.is_set():
        for r in records:
            r["id"] = str(uuid.uuid4())
        status = await _post(http, url, token, _body("attacker", records))
        answers[status] = answers.get(status, 0) + 1
        if status == 429:  # a hostile box need not wait; this one only yields the loop
            await asyncio.sleep(0)


async def one_run(db: str, root: Path, boxes: int, seconds: float, kind: str,
                  paced: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        dbname = f"nps_poison_{uuid.uuid4().hex[:8]}"
        if db == "postgres":
            conn = await asyncpg.connect(PG + "/postgres")
            await conn.execute(f"CREATE DATABASE {dbname}")
            await conn.close()
            url_db = f"{PG}/{dbname}"
        else:
            url_db = f"sqlite:///{tmp}/c.db"
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "NPS_ADMIN_TOKEN": ADMIN, "PYTHONPATH": str(root)}
        log = open(Path(tmp) / "collector.log", "wb")  # noqa: SIM115
        # Paced: the fleet as it runs, many boxes each under the default per-box rate
        # (60 a minute), and the collector's default limits; otherwise limits lifted.
        limits = [] if paced else ["--box-rate", "1000000", "--box-burst", "1000000"]
        pace_s = 1.1 if paced else 0.0
        proc = subprocess.Popen(
            [sys.executable, "-m", "collector.cli", "serve", "--db", url_db, "--port", str(port),
             *limits],
            cwd=root, env=env, stdout=log, stderr=log)
        try:
            await wait_ready(url)
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=boxes + 4)) as http:
                tokens = {f"good-{i}": await enrol(http, url, ADMIN, f"good-{i}") for i in range(boxes)}
                attacker = await enrol(http, url, ADMIN, "attacker")
                alone: dict[int, int] = {}
                await asyncio.gather(*(_good(http, url, b, t, seconds, alone, pace_s)
                                       for b, t in tokens.items()))
                attacked: dict[int, int] = {}
                bad: dict[int, int] = {}
                stop = asyncio.Event()
                task = asyncio.create_task(_attacker(http, url, attacker, stop, bad, kind))
                await asyncio.sleep(0.5)
                await asyncio.gather(*(_good(http, url, b, t, seconds, attacked, pace_s)
                                       for b, t in tokens.items()))
                stop.set()
                await task
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
            if db == "postgres":
                conn = await asyncpg.connect(PG + "/postgres")
                await conn.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
                await conn.close()
    ok_alone, ok_attacked = alone.get(200, 0), attacked.get(200, 0)
    return {"good_alone": {str(k): v for k, v in sorted(alone.items())},
            "good_attacked": {str(k): v for k, v in sorted(attacked.items())},
            "attacker": {str(k): v for k, v in sorted(bad.items())},
            "ratio_200": round(ok_attacked / ok_alone, 3) if ok_alone else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    p.add_argument("--boxes", type=int, default=8)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--root", type=Path, default=ROOT, help="the checkout whose collector runs")
    p.add_argument("--paced", action="store_true",
                   help="the collector's default limits; good boxes upload about once a second")
    p.add_argument("--attack", choices=("poison", "valid"), default="poison",
                   help="poisoned batches, or (the control) as many good records from one box")
    args = p.parse_args()
    for i in range(args.runs):
        run = asyncio.run(one_run(args.db, args.root.resolve(), args.boxes, args.seconds,
                                  args.attack, args.paced))
        run = {"attack": args.attack, "paced": args.paced, "boxes": args.boxes, **run}
        print(orjson.dumps({"run": i + 1, **run}).decode(), flush=True)


if __name__ == "__main__":
    main()
