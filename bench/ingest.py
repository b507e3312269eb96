"""Collector benchmark (issue 2): HTTP ingest against raw sqlite3, and report latency.

    .venv/bin/python bench/ingest.py ingest [--records 192000] [--recent] [--rounds 3]
    .venv/bin/python bench/ingest.py ceiling [--records 192000] [--recent]
    .venv/bin/python bench/ingest.py report [--records 1000000]

``ingest`` runs a real ``nps-collector serve`` process on a fresh SQLite file and 32
concurrent uploaders (in another process) sending batches of 100 session records; it
then writes the very same rows with raw ``sqlite3.executemany`` into the same schema,
with the same durability (WAL, ``synchronous=FULL``, one commit per batch of 100, as an
acknowledged upload is committed), and prints the ratio; ``--rounds`` times, alternating,
with medians, as the machine's load moves both figures. ``report`` stores N records
through the store's own ingest path and times ``GET /v1/report`` over HTTP. ``ceiling``
is ``ingest`` with a collector that stores nothing (``bench/nostore_serve.py``): the rate
of HTTP, authentication and decoding alone, which no store can exceed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.collector_process import free_port, wait_ready  # noqa: E402
from collector.ingest import rows_from_batch  # noqa: E402
from collector.settings import Settings  # noqa: E402
from collector.storage import make_storage  # noqa: E402
from collector.storage.schema import ddl  # noqa: E402
from collector.storage.sql import SESSION_COLUMNS, session_values  # noqa: E402
from protocol import decode_batch, utcnow  # noqa: E402
from stb_widget.ids import uuid7  # noqa: E402

ADMIN = "bench-admin-token-" + uuid.uuid4().hex
UPLOADERS = 32
BATCH = 100


def make_records(n: int, seed: int = 1, surveys_every: int = 0,
                 recent: bool = False) -> list[dict[str, Any]]:
    """Session records (and one survey per ``surveys_every``), started at random times
    over the last 30 days (a backlog: every record in its own hour of a month, the worst
    case for the hourly aggregates) or, ``recent``, ended within the last hour and in the
    order they ended (what a fleet uploading as it watches sends). Ids are made as the
    box agent makes them: UUIDv7 of the session's start or the survey's showing."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    t0 = now - timedelta(days=30)
    out: list[dict[str, Any]] = []
    for _ in range(n):
        start = t0 + timedelta(seconds=rng.randint(0, 30 * 86400))
        watch = rng.uniform(600, 7200)
        if recent:
            start = now - timedelta(seconds=rng.uniform(0, 3600) + watch)
        ratio = rng.choice([0.0, 0.0, 0.0, 0.003, 0.01, 0.04, 0.1]) * rng.random()
        sid = uuid7(int(start.timestamp() * 1000))
        out.append({
            "id": sid, "kind": "session",
            "started_at": start.isoformat().replace("+00:00", "Z"),
            "ended_at": (start + timedelta(seconds=watch)).isoformat().replace("+00:00", "Z"),
            "channel": rng.choice(["NPO1", "RTL4", "SBS6", "Ziggo Sport", "Discovery"]),
            "content_type": rng.choice(["live", "vod", "catchup"]),
            "qos": {"startup_ms": rng.randint(200, 6000), "watch_s": watch,
                    "rebuffer_count": rng.randint(0, 5), "rebuffer_s": watch * ratio,
                    "avg_bitrate_kbps": rng.uniform(800, 12000), "bitrate_switches": rng.randint(0, 9),
                    "failed": rng.random() < 0.03},
        })
        if surveys_every and len(out) % surveys_every == 0:
            score = max(0, min(10, round(rng.gauss(8.3 - 40 * ratio, 1.6))))
            out.append({
                "id": uuid7(int((start + timedelta(seconds=watch)).timestamp() * 1000)),
                "kind": "survey",
                "session_id": sid, "shown_at": out[-1]["ended_at"], "answered_at": out[-1]["ended_at"],
                "outcome": "answered", "score": score, "reason": rng.choice([None, "buffering", "content"]),
            })
    if recent:
        # Stable: a survey keeps its place after its session (it was shown as it ended).
        out.sort(key=lambda r: r.get("ended_at") or r["shown_at"])
    return out


def start_collector(db: Path, port: int, store: bool = True) -> subprocess.Popen[bytes]:
    env = dict(os.environ, NPS_ADMIN_TOKEN=ADMIN, NPS_LOG_LEVEL="WARNING", PYTHONPATH=str(ROOT))
    serve = ["-m", "collector.cli"] if store else [str(ROOT / "bench" / "nostore_serve.py")]
    return subprocess.Popen(
        [sys.executable, *serve, "serve", "--db", f"sqlite:///{db}", "--port", str(port),
         # A benchmark of throughput: the per-box rate limit is not what it measures.
         "--box-rate", "1000000", "--box-burst", "1000000"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


async def uploaders(url: str, bodies: list[list[bytes]], tokens: list[str]) -> float:
    """Each uploader sends its bodies one after another; answers the wall time."""
    conn = aiohttp.TCPConnector(limit=UPLOADERS)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as http:
        async def one(i: int) -> None:
            h = {"Authorization": f"Bearer {tokens[i]}", "Content-Type": "application/json"}
            for body in bodies[i]:
                while True:
                    async with http.post(f"{url}/v1/batches", data=body, headers=h) as r:
                        if r.status == 200:
                            got = await r.json()
                            assert got["accepted"] == BATCH, got
                            break
                        if r.status in (429, 503):
                            await asyncio.sleep(float(r.headers.get("Retry-After", "1")) / 10)
                            continue
                        raise RuntimeError(f"{r.status}: {await r.text()}")

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(UPLOADERS)))
        return time.perf_counter() - start


async def enrol(url: str, n: int) -> list[str]:
    async with aiohttp.ClientSession() as http:
        tokens = []
        for i in range(n):
            async with http.post(f"{url}/v1/boxes", json={"box_id": f"bench-{i}"},
                                 headers={"Authorization": f"Bearer {ADMIN}"}) as r:
                tokens.append((await r.json())["token"])
        return tokens


def raw_rows(body: bytes) -> list[tuple[Any, ...]]:
    """An upload's session rows as the raw run writes them (the collector's own decoding
    and row builder)."""
    rows = rows_from_batch(decode_batch(body), utcnow())
    return [session_values(r) for _, r in rows]  # type: ignore[arg-type]


def raw_sqlite(db: Path, batches: list[list[tuple[Any, ...]]],
               synchronous: str = "FULL") -> tuple[float, float]:
    """``batches`` written with ``executemany`` into a fresh store's schema at ``db``, one
    commit each; (wall seconds, this process's CPU seconds)."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    for stmt in ddl("sqlite"):
        conn.execute(stmt)
    sql = (f"INSERT INTO sessions ({', '.join(SESSION_COLUMNS)}) "
           f"VALUES ({', '.join('?' * len(SESSION_COLUMNS))})")
    start, cpu = time.perf_counter(), time.process_time()
    for rows in batches:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, rows)
        conn.execute("COMMIT")
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    conn.close()
    return elapsed, cpu


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_ingest(n: int, recent: bool = False, rounds: int = 3, store: bool = True) -> dict[str, Any]:
    """``rounds`` times: the HTTP run on a fresh collector, then the raw run on a fresh
    file, one after the other so that both see the same machine; medians of each.
    Without ``store``, the collector keeps nothing (``ceiling``)."""
    records = make_records(n, recent=recent)
    per = n // (UPLOADERS * BATCH)
    n = per * UPLOADERS * BATCH
    bodies: list[list[bytes]] = [[] for _ in range(UPLOADERS)]
    raw_batches = []
    k = 0
    for _b in range(per):
        for i in range(UPLOADERS):
            recs = records[k:k + BATCH]
            k += BATCH
            doc = {"protocol": 1, "box_id": f"bench-{i}", "sent_at": utcnow().isoformat(),
                   "records": recs}
            body = orjson.dumps(doc)
            bodies[i].append(body)
            raw_batches.append(raw_rows(body))
    http_rates, raw_rates, ratios, cpu = [], [], [], []
    counted: list[int] = []
    for _round in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            proc = start_collector(Path(tmp) / "http.db", port, store)
            try:
                asyncio.run(wait_ready(url))
                tokens = asyncio.run(enrol(url, UPLOADERS))
                cpu0 = process_cpu_s(proc.pid)
                http_s = asyncio.run(uploaders(url, bodies, tokens))
                cpu.append((process_cpu_s(proc.pid) - cpu0) / n * 1e6)
                if store:  # outside the timing: every record sent is counted, once
                    rep = asyncio.run(get_report(url))
                    if rep["sessions"]["count"] != n:
                        raise SystemExit(f"sent {n} sessions, the report counts "
                                         f"{rep['sessions']['count']}")
                    counted.append(rep["sessions"]["count"])
            finally:
                proc.terminate()
                proc.wait(30)
            raw_s, _ = raw_sqlite(Path(tmp) / "raw.db", raw_batches)
        http_rates.append(n / http_s)
        raw_rates.append(n / raw_s)
        ratios.append(http_rates[-1] / raw_rates[-1])
    return {"records": n, "recent": recent, "rounds": rounds, "stored": store,
            "http_rec_per_s": round(statistics.median(http_rates)),
            "raw_rec_per_s": round(statistics.median(raw_rates)),
            "ratio": round(statistics.median(ratios), 3),
            "ratios": [round(r, 3) for r in ratios],
            "collector_cpu_us_per_record": round(statistics.median(cpu), 1),
            "report_sessions": counted}


async def get_report(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(
            f"{url}/v1/report", headers={"Authorization": f"Bearer {ADMIN}"}) as r:
        rep: dict[str, Any] = await r.json()
        assert r.status == 200, rep
        return rep


async def fill_store(db: Path, n: int) -> list[dict[str, Any]]:
    store = make_storage(Settings(db=f"sqlite:///{db}", admin_token=ADMIN))
    await store.open()
    try:
        records = make_records(n, seed=2, surveys_every=20)
        chunk = 500
        t = time.perf_counter()
        pending = []
        for i in range(0, len(records), chunk):
            body = orjson.dumps({"protocol": 1, "box_id": f"fill-{i % 997}",
                                 "sent_at": utcnow().isoformat(), "box": {"region": f"R{i % 7}"},
                                 "records": records[i:i + chunk]})
            rows = [r for _, r in rows_from_batch(decode_batch(body), utcnow())]
            pending.append(store.ingest(rows))
            if len(pending) >= 20:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        print(f"  stored {len(records)} records in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    finally:
        await store.close()
    return records


def check_report(rep: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """The unfiltered report counts what was stored, each record once (a fast but wrong
    report must not pass as a benchmark result). Returns the figures checked."""
    sessions = [r for r in records if r["kind"] == "session"]
    scores = [r["score"] for r in records if r["kind"] == "survey"]
    promoters = sum(1 for x in scores if x >= 9)
    detractors = sum(1 for x in scores if x <= 6)
    want = {"sessions": len(sessions), "answered": len(scores),
            "failed": sum(1 for r in sessions if r["qos"]["failed"]),
            "promoters": promoters, "detractors": detractors,
            "nps": 100 * (promoters - detractors) / len(scores) if scores else None}
    got = {"sessions": rep["sessions"]["count"], "answered": rep["surveys"]["answered"],
           "failed": rep["sessions"]["failed"], "promoters": rep["promoters"],
           "detractors": rep["detractors"], "nps": rep["nps"]}
    if got["nps"] is not None and want["nps"] is not None and abs(got["nps"] - want["nps"]) < 1e-9:
        got["nps"] = want["nps"]
    if got != want:
        raise SystemExit(f"GET /v1/report disagrees with the stored records: {got} != {want}")
    return want


def bench_report(n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "report.db"
        records = asyncio.run(fill_store(db, n))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start_collector(db, port)
        try:
            asyncio.run(wait_ready(url))

            reports: list[dict[str, Any]] = []

            async def timed() -> list[float]:
                out = []
                shapes: list[dict[str, str]] = (
                    [{}] * 5 + [{"region": "R3"}] * 3
                    + [{"from": "2026-01-01T00:00:00Z", "channel": "RTL4"}] * 3)
                async with aiohttp.ClientSession() as http:
                    for params in shapes:
                        t = time.perf_counter()
                        async with http.get(f"{url}/v1/report", params=params,
                                            headers={"Authorization": f"Bearer {ADMIN}"}) as r:
                            rep = await r.json()
                            assert r.status == 200, rep
                        out.append(time.perf_counter() - t)
                        reports.append(rep)
                return out

            times = asyncio.run(timed())
        finally:
            proc.terminate()
            proc.wait(30)
    checked = check_report(reports[0], records)
    # The same question answers the same figures each time.
    if any(rep != reports[0] for rep in reports[1:5]):
        raise SystemExit("GET /v1/report answered different figures to the same question")
    return {"records": n, "report_median_s": statistics.median(times[1:5]),
            "report_region_s": statistics.median(times[5:8]), "report_channel_s": statistics.median(times[8:11]),
            "checked": checked}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["ingest", "ceiling", "report"])
    ap.add_argument("--records", type=int, default=0)
    ap.add_argument("--recent", action="store_true",
                    help="ingest: sessions that ended within the last hour, not over 30 days")
    ap.add_argument("--rounds", type=int, default=3, help="ingest: HTTP then raw, this many times")
    args = ap.parse_args()
    if args.what in ("ingest", "ceiling"):
        result = bench_ingest(args.records or 192_000, args.recent, args.rounds,
                              store=args.what == "ingest")
    else:
        result = bench_report(args.records or 1_000_000)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
