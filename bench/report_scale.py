"""Scale benchmark (issue 7): report latency over millions of records, PostgreSQL ingest.

    .venv/bin/python bench/report_scale.py report --backend sqlite --records 1000000
    .venv/bin/python bench/report_scale.py report --backend postgres --records 10000000
    .venv/bin/python bench/report_scale.py ingest --records 256000 [--instances 2]

``report`` generates N sessions over 30 days (5 % of them surveyed, 70 % of those
answered; skewed QoS: most sessions never stall, log-normal start-up, bitrates near ABR
rungs), in 4 regions x 3 models x 2 firmwares x 12 channels x 3 content types. Rows are
made in the stores' own row format (the same column values ingest computes, checked
against the ingest functions on a sample) and loaded in bulk (SQLite ``executemany``,
PostgreSQL ``COPY``); the aggregates are then built by the stores' own
``rebuild_aggregates()``, the SQL path that deletion and retention use and that the tests
prove equal to the aggregates kept on ingest. Ten million records through HTTP would take
hours on two cores; this bulk path takes minutes. Then the report is timed through
``build_report`` on a freshly opened store (the median of 7 runs after one warm-up).

``ingest`` runs ``nps-collector serve`` on a fresh PostgreSQL database (one process, or two
on one database) and 32 concurrent uploaders (bench/ingest.py's) sending batches of 100
session records; then it writes the very same rows with raw asyncpg
``copy_records_to_table`` into the same partitioned table (with its indexes) of a fresh
database, as 32 connections each committing one COPY per batch of 100 (the durability of
an acknowledged upload), and prints the ratio.

PostgreSQL: ``--pg postgresql://postgres@127.0.0.1:5432`` (a database is made and dropped
per run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from collector.metrics import BY_NAME, bucket_index  # noqa: E402
from collector.model import Filters, SessionRow  # noqa: E402
from collector.report import build_report  # noqa: E402
from collector.settings import Settings  # noqa: E402
from collector.storage import Storage, make_storage  # noqa: E402
from collector.storage.aggregates import FINE_EDGES, POS_SCALE, fine_bin, fine_pos  # noqa: E402
from collector.storage.postgres import month_bounds  # noqa: E402
from collector.storage.sql import SESSION_COLUMNS, SURVEY_COLUMNS, session_values  # noqa: E402
from collector.storage.survey_session import fill_sql  # noqa: E402
from protocol.units import DAY_US  # noqa: E402
from tests.report_from_rows import compute_report, session_groups  # noqa: E402

DAYS = 30
REGIONS = ["NL-NH", "NL-ZH", "NL-UT", "NL-GE"]
MODELS = ["X-200", "X-300", "Z-1"]
FIRMWARES = ["4.2.1", "4.3.0"]
CHANNELS = ["NPO1", "NPO2", "NPO3", "RTL4", "RTL5", "SBS6", "Veronica", "Net5", "RTL7",
            "Ziggo Sport", "Discovery", "Nickelodeon"]
CONTENT_TYPES = ["live", "vod", "catchup"]
RAW = b'{"bench":true}'  # the report never reads raw; a short one keeps the load fast
PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432"


def _end_us() -> int:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return int(today.timestamp()) * 1_000_000


def _ids(rng: np.random.Generator, n: int) -> list[str]:
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # variant
    out = []
    for b in raw:
        h = b.tobytes().hex()
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


def _buckets(metric: str, x: np.ndarray) -> np.ndarray:
    """bucket_index, vectorised: lo < x <= hi, the first bucket also takes x == lo."""
    his = np.array([b.hi for b in BY_NAME[metric].buckets if b.hi is not None])
    idx = np.searchsorted(his, x, side="left")
    if metric == "rebuffer_ratio":
        idx = np.where(x == 0, 0, np.searchsorted(his[1:], x, side="left") + 1)
    return idx


def _fine(metric: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fine_bin and fine_pos, vectorised (the same float operations)."""
    edges = np.array(FINE_EDGES[metric])
    fine = np.searchsorted(edges, x, side="left")
    inner = (fine > 0) & (fine < len(edges))
    safe = np.clip(fine, 1, len(edges) - 1)
    lo, hi = edges[safe - 1], edges[safe]
    pos = np.where(inner, np.clip(np.rint((x - lo) / (hi - lo) * POS_SCALE), 0, POS_SCALE), 0)
    return fine, pos.astype(np.int64)


_MODEL = SESSION_COLUMNS.index("model")
assert SESSION_COLUMNS[_MODEL:_MODEL + 3] == ("model", "firmware", "region")


def generate(n: int, seed: int, chunk: int, sqlite_types: bool) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """(session rows, survey rows) in chunks, in SESSION_COLUMNS / SURVEY_COLUMNS order."""
    rng = np.random.default_rng(seed)
    end = _end_us()
    start = end - DAYS * DAY_US
    checked = False
    for off in range(0, n, chunk):
        k = min(chunk, n - off)
        # In time order, as records arrive: sessions are uploaded soon after they end.
        lo = start + (end - start) * off // n
        hi = start + (end - start) * (off + k) // n
        started = np.sort(rng.integers(lo, max(hi, lo + 1), size=k))
        watch = rng.uniform(300, 7200, size=k)
        stalled = rng.random(k) < 0.25
        ratio = np.where(stalled, np.minimum(np.exp(rng.normal(-5, 1.5, size=k)), 0.9), 0.0)
        startup = np.rint(np.exp(rng.normal(np.log(900), 0.45, size=k))).astype(np.int64)
        rungs = np.array([1200.0, 2500.0, 3800.0, 5400.0, 8000.0])
        bitrate = rungs[rng.integers(0, 5, size=k)] * rng.uniform(0.9, 1.0, size=k)
        bitrate = np.where(rng.random(k) < 0.3, np.round(bitrate / 100) * 100, bitrate)
        failed = rng.random(k) < 0.03
        seg = [rng.integers(0, len(v), size=k) for v in (REGIONS, MODELS, FIRMWARES, CHANNELS, CONTENT_TYPES)]
        rb, br, su = (_buckets("rebuffer_ratio", ratio), _buckets("avg_bitrate_kbps", bitrate),
                      _buckets("startup_ms", startup.astype(float)))
        (rbf, rbp), (brf, brp), (suf, sup) = (_fine("rebuffer_ratio", ratio), _fine("avg_bitrate_kbps", bitrate),
                                              _fine("startup_ms", startup.astype(float)))
        surveyed = rng.random(k) < 0.05
        ids = _ids(rng, k)
        if not checked:
            # The vectorised columns must be exactly what ingest computes.
            for i in range(min(k, 20_000)):
                assert rb[i] == bucket_index("rebuffer_ratio", float(ratio[i]))
                assert br[i] == bucket_index("avg_bitrate_kbps", float(bitrate[i]))
                assert su[i] == bucket_index("startup_ms", int(startup[i]))
                assert (rbf[i], rbp[i]) == (fine_bin("rebuffer_ratio", float(ratio[i])), fine_pos("rebuffer_ratio", float(ratio[i])))
                assert (brf[i], brp[i]) == (fine_bin("avg_bitrate_kbps", float(bitrate[i])), fine_pos("avg_bitrate_kbps", float(bitrate[i])))
                assert (suf[i], sup[i]) == (fine_bin("startup_ms", int(startup[i])), fine_pos("startup_ms", int(startup[i])))
            checked = True
        flag: Any = (lambda b: int(b)) if sqlite_types else (lambda b: bool(b))
        sessions = []
        for i in range(k):
            st = int(started[i])
            w = float(watch[i])
            # By name: the metrics this bench does not make (video_height) stay null.
            sessions.append(tuple(map({
                "id": ids[i], "box_id": f"box-{(off + i) % 200_000}", "received_us": st + 60_000_000,
                "started_us": st, "ended_us": st + int(w * 1e6), "channel": CHANNELS[seg[3][i]],
                "content_type": CONTENT_TYPES[seg[4][i]], "startup_ms": int(startup[i]), "watch_s": w,
                "rebuffer_count": int(stalled[i]), "rebuffer_s": w * float(ratio[i]),
                "avg_bitrate_kbps": float(bitrate[i]), "bitrate_switches": 1, "failed": flag(failed[i]),
                "rebuffer_ratio": float(ratio[i]), "rb_bucket": int(rb[i]), "br_bucket": int(br[i]),
                "su_bucket": int(su[i]), "model": MODELS[seg[1][i]], "firmware": FIRMWARES[seg[2][i]],
                "region": REGIONS[seg[0][i]], "clock_shift_s": 0.0, "raw": RAW,
                "rb_fine": int(rbf[i]), "br_fine": int(brf[i]), "su_fine": int(suf[i]),
                "rb_pos": int(rbp[i]), "br_pos": int(brp[i]), "su_pos": int(sup[i]),
                "surveyed": flag(surveyed[i]),
            }.get, SESSION_COLUMNS)))
        surveys = []
        idx = np.nonzero(surveyed)[0]
        outcome_draw = rng.random(len(idx))
        noise = rng.normal(0, 1.5, size=len(idx))
        survey_ids = _ids(rng, len(idx))
        for j, i in enumerate(idx):
            s = sessions[i]
            shown = s[4] + 5_000_000
            outcome = "answered" if outcome_draw[j] < 0.7 else "dismissed" if outcome_draw[j] < 0.9 else "timeout"
            score = None
            if outcome == "answered":
                q = 8.3 - 60 * s[14] - s[7] / 3000 + s[11] / 6000
                score = int(max(0, min(10, round(q + noise[j]))))
            surveys.append((
                survey_ids[j], s[1], shown + 60_000_000, s[0], shown,
                shown + 3_000_000 if score is not None else None, outcome, score,
                "buffering" if score is not None and score < 5 else None, "nl",
                # The box's attributes, where SESSION_COLUMNS has them (the metric
                # table's bucket columns come before them).
                s[_MODEL], s[_MODEL + 1], s[_MODEL + 2], 0.0, RAW,
            ))
        yield sessions, surveys


# -- loading ---------------------------------------------------------------------------------

async def load_sqlite(path: Path, n: int, seed: int) -> float:
    store = make_storage(Settings(db=f"sqlite:///{path}", admin_token=secrets.token_urlsafe(32)))
    await store.open()  # the schema
    await store.close()
    t = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")  # a bulk load: durability comes at the end
    s_sql = f"INSERT INTO sessions ({', '.join(SESSION_COLUMNS)}) VALUES ({', '.join('?' * len(SESSION_COLUMNS))})"
    v_sql = f"INSERT INTO surveys ({', '.join(SURVEY_COLUMNS)}) VALUES ({', '.join('?' * len(SURVEY_COLUMNS))})"
    for sessions, surveys in generate(n, seed, 200_000, sqlite_types=True):
        conn.execute("BEGIN")
        conn.executemany(s_sql, sessions)
        conn.executemany(v_sql, surveys)
        conn.execute("COMMIT")
    # The session values each survey row keeps (schema 4), as ingest would have set them.
    conn.execute(fill_sql("surveys", "true"))
    conn.close()
    return time.perf_counter() - t


async def load_postgres(dsn: str, n: int, seed: int) -> float:
    store = make_storage(Settings(db=dsn, admin_token=secrets.token_urlsafe(32)))
    await store.open()  # the schema and this month's partitions
    await store.close()
    conn = await asyncpg.connect(dsn)
    t = time.perf_counter()
    try:
        end = _end_us()
        for us in range(end - (DAYS + 1) * DAY_US, end + DAY_US, DAY_US):
            bounds = month_bounds(us)
            assert bounds is not None
            suffix, lo, hi = bounds
            for table in ("sessions", "surveys"):
                await conn.execute(f"CREATE TABLE IF NOT EXISTS {table}_{suffix} PARTITION OF {table} "
                                   f"FOR VALUES FROM ({lo}) TO ({hi})")
        for sessions, surveys in generate(n, seed, 200_000, sqlite_types=False):
            async with conn.transaction():
                await conn.copy_records_to_table("sessions", records=sessions, columns=SESSION_COLUMNS)
                await conn.copy_records_to_table("surveys", records=surveys, columns=SURVEY_COLUMNS)
                await conn.copy_records_to_table(
                    "record_ids", records=[(s[0], s[3]) for s in sessions] + [(v[0], v[4]) for v in surveys],
                    columns=("id", "t_us"))
        # The session values each survey row keeps (schema 4), as ingest would have set them.
        await conn.execute(fill_sql("surveys", "true"), timeout=86_400)
        await conn.execute("VACUUM ANALYZE")  # as autovacuum leaves an insert-mostly table
    finally:
        await conn.close()
    return time.perf_counter() - t


# -- timing the report ---------------------------------------------------------------------------

def cases() -> dict[str, Filters]:
    end = _end_us()
    week_lo = end - 7 * DAY_US
    return {
        "all": Filters(),
        "7 days, whole days": Filters(from_us=week_lo, to_us=end),
        "7 days, edges 12:34 / 15:00": Filters(from_us=week_lo - DAY_US + 45_240_000_000,
                                               to_us=end - DAY_US + 54_000_000_000),
        "region": Filters(region="NL-ZH"),
        "channel + content type, 7 days": Filters(channel="RTL4", content_type="live",
                                                  from_us=week_lo, to_us=end),
    }


async def time_reports(url: str, raw_too: bool) -> dict[str, Any]:
    store: Storage = make_storage(Settings(db=url, admin_token=secrets.token_urlsafe(32)))
    await store.open()
    out: dict[str, Any] = {}
    try:
        counts = await store.counts()
        out["stored"] = counts
        for name, f in cases().items():
            await build_report(store, f)
            times = []
            for _ in range(7):
                t = time.perf_counter()
                rep = await build_report(store, f)
                times.append(time.perf_counter() - t)
            out[name] = {"median_ms": round(statistics.median(times) * 1000, 1),
                         "max_ms": round(max(times) * 1000, 1), "sessions": rep["sessions"]["count"],
                         "answered": rep["surveys"]["answered"]}
            if raw_too and name in ("all", "7 days, edges 12:34 / 15:00"):
                t = time.perf_counter()
                exact = compute_report(await session_groups(store, f), await store.survey_facts(f))
                out[name]["from_raw_rows_ms"] = round((time.perf_counter() - t) * 1000, 1)
                assert {k: v for k, v in exact.items() if k != "correlation"} == \
                       {k: v for k, v in rep.items() if k != "correlation"}
    finally:
        await store.close()
    return out


async def pg_database(base: str) -> str:
    name = f"nps_bench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(f"{base}/postgres")
    await conn.execute(f"CREATE DATABASE {name}")
    await conn.close()
    return name


async def pg_drop(base: str, name: str) -> None:
    conn = await asyncpg.connect(f"{base}/postgres")
    await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await conn.close()


def bench_report(backend: str, n: int, pg: str, raw_too: bool, keep: str | None,
                 rebuild: bool = False) -> dict[str, Any]:
    """``keep``: a file (SQLite) or database name (PostgreSQL) kept between runs; loaded
    only where it does not exist yet."""
    result: dict[str, Any] = {"backend": backend, "records_generated_sessions": n}
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(dir=os.environ.get("NPS_BENCH_DIR")) as tmp:
            path = Path(keep) if keep else Path(tmp) / "scale.db"
            url = f"sqlite:///{path}"
            if not path.exists():
                result["load_s"] = round(asyncio.run(load_sqlite(path, n, 7)), 1)
                result["rebuild_aggregates_s"] = round(asyncio.run(_rebuild(url)), 1)
            elif rebuild:
                result["rebuild_aggregates_s"] = round(asyncio.run(_rebuild(url)), 1)
            result.update(asyncio.run(time_reports(url, raw_too)))
            result["db_mb"] = round(path.stat().st_size / 1e6)
        return result
    name = keep or asyncio.run(pg_database(pg))
    try:
        url = f"{pg}/{name}"
        if keep is None or not asyncio.run(_pg_exists(pg, name)):
            if keep:
                await_name = asyncio.run(_pg_create(pg, name))
                assert await_name == name
            result["load_s"] = round(asyncio.run(load_postgres(url, n, 7)), 1)
            result["rebuild_aggregates_s"] = round(asyncio.run(_rebuild(url)), 1)
        elif rebuild:
            result["rebuild_aggregates_s"] = round(asyncio.run(_rebuild(url)), 1)
        result.update(asyncio.run(time_reports(url, raw_too)))
    finally:
        if keep is None:
            asyncio.run(pg_drop(pg, name))
    return result


async def _pg_exists(base: str, name: str) -> bool:
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await conn.close()


async def _pg_create(base: str, name: str) -> str:
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return name


async def _rebuild(url: str) -> float:
    store = make_storage(Settings(db=url, admin_token=secrets.token_urlsafe(32)))
    await store.open()
    try:
        t = time.perf_counter()
        await store.rebuild_aggregates()
        return time.perf_counter() - t
    finally:
        await store.close()


# -- PostgreSQL ingest ------------------------------------------------------------------------------

def start_collector(url: str, port: int, admin: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, NPS_ADMIN_TOKEN=admin, NPS_LOG_LEVEL="WARNING", PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "collector.cli", "serve", "--db", url, "--port", str(port),
         "--box-rate", "1000000", "--box-burst", "1000000"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


async def raw_copy(url: str, batches: list[list[tuple[Any, ...]]], connections: int) -> float:
    """The same rows with raw COPY: ``connections`` writers, one committed COPY per batch."""
    store = make_storage(Settings(db=url, admin_token=secrets.token_urlsafe(32)))
    await store.open()  # the same schema and partitions
    # The monthly partitions of the rows' times, as the collector makes them on ingest (a
    # time without one would land in the DEFAULT partition, which refuses it).
    started = SESSION_COLUMNS.index("started_us")
    await store._ensure_partitions(  # type: ignore[attr-defined]
        sorted({r[started] for rows in batches for r in rows}), surveys=False)
    await store.close()
    pool = await asyncpg.create_pool(url, min_size=connections, max_size=connections)
    queue = list(reversed(batches))

    async def writer() -> None:
        async with pool.acquire() as conn:
            while queue:
                rows = queue.pop()
                async with conn.transaction():
                    await conn.copy_records_to_table("sessions", records=rows, columns=SESSION_COLUMNS)

    t = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(connections)))
    elapsed = time.perf_counter() - t
    await pool.close()
    return elapsed


def bench_ingest(n: int, pg: str, instances: int, recent: bool = False, rounds: int = 3) -> dict[str, Any]:
    import ingest as lead  # bench/ingest.py: the same records and uploaders as the SQLite figures

    from collector.ingest import rows_from_batch
    from protocol import decode_batch, utcnow

    records = lead.make_records(n, recent=recent)
    per = n // (lead.UPLOADERS * lead.BATCH)
    n = per * lead.UPLOADERS * lead.BATCH
    bodies: list[list[bytes]] = [[] for _ in range(lead.UPLOADERS)]
    raw_batches: list[list[tuple[Any, ...]]] = []
    k = 0
    for _ in range(per):
        for i in range(lead.UPLOADERS):
            doc = {"protocol": 1, "box_id": f"bench-{i}", "sent_at": utcnow().isoformat(),
                   "records": records[k:k + lead.BATCH]}
            k += lead.BATCH
            body = orjson.dumps(doc)
            bodies[i].append(body)
            raw_batches.append([_session_pg_row(r) for _, r in rows_from_batch(decode_batch(body), utcnow())])  # type: ignore[arg-type]
    http_rates, raw_rates, ceil_rates = [], [], []
    for _round in range(rounds):
        http_rates.append(n / _http_round(lead, pg, instances, bodies))
        name = asyncio.run(pg_database(pg))
        try:
            raw_rates.append(n / asyncio.run(raw_copy(f"{pg}/{name}", raw_batches, lead.UPLOADERS)))
        finally:
            asyncio.run(pg_drop(pg, name))
        # The collector's own ceiling: the same uploads to a collector that stores nothing.
        with tempfile.TemporaryDirectory() as tmp:
            port = lead.free_port()
            proc = lead.start_collector(Path(tmp) / "nostore.db", port, store=False)
            try:
                url = f"http://127.0.0.1:{port}"
                asyncio.run(lead.wait_ready(url))
                tokens = asyncio.run(lead.enrol(url, lead.UPLOADERS))
                ceil_rates.append(n / asyncio.run(lead.uploaders(url, bodies, tokens)))
            finally:
                proc.terminate()
                proc.wait(30)
    med = statistics.median
    return {"records": n, "instances": instances, "recent": recent, "rounds": rounds,
            "http_rec_per_s": [round(r) for r in http_rates],
            "raw_copy_rec_per_s": [round(r) for r in raw_rates],
            "nostore_ceiling_rec_per_s": [round(r) for r in ceil_rates],
            "ratio_to_ceiling": [round(h / c, 3) for h, c in zip(http_rates, ceil_rates, strict=True)],
            "ratio_to_raw_copy": [round(h / r, 3) for h, r in zip(http_rates, raw_rates, strict=True)],
            "median_ratio_to_ceiling": round(med(h / c for h, c in zip(http_rates, ceil_rates, strict=True)), 3),
            "median_ratio_to_raw_copy": round(med(h / r for h, r in zip(http_rates, raw_rates, strict=True)), 3)}


def _http_round(lead: Any, pg: str, instances: int, bodies: list[list[bytes]]) -> float:
    """One HTTP run on a fresh database: the seconds the uploads took."""
    name = asyncio.run(pg_database(pg))
    procs = []
    try:
        url = f"{pg}/{name}"
        ports = [lead.free_port() for _ in range(instances)]
        for port in ports:
            procs.append(start_collector(url, port, lead.ADMIN))
            time.sleep(0.5)
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        for u in urls:
            asyncio.run(lead.wait_ready(u))
        tokens = asyncio.run(lead.enrol(urls[0], lead.UPLOADERS))
        return asyncio.run(_upload_spread(lead, urls, bodies, tokens))
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)
        asyncio.run(pg_drop(pg, name))


async def _upload_spread(lead: Any, urls: list[str], bodies: list[list[bytes]], tokens: list[str]) -> float:
    """bench/ingest.py's 32 uploaders, split evenly across the instances."""
    if len(urls) == 1:
        elapsed: float = await lead.uploaders(urls[0], bodies, tokens)
        return elapsed
    share = len(bodies) // len(urls)
    t = time.perf_counter()
    saved = lead.UPLOADERS
    lead.UPLOADERS = share
    try:
        await asyncio.gather(*(
            lead.uploaders(u, bodies[i * share:(i + 1) * share], tokens[i * share:(i + 1) * share])
            for i, u in enumerate(urls)))
    finally:
        lead.UPLOADERS = saved
    return time.perf_counter() - t


def _session_pg_row(r: SessionRow) -> tuple[Any, ...]:
    return session_values(r, False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["report", "ingest"])
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--instances", type=int, default=1)
    ap.add_argument("--pg", default=PG_DEFAULT, help="server URL without a database")
    ap.add_argument("--raw-too", action="store_true", help="also time the report from raw rows")
    ap.add_argument("--keep", help="SQLite file or PostgreSQL database to keep (and reuse) the data in")
    ap.add_argument("--rebuild", action="store_true", help="with --keep: rebuild the aggregates of kept data")
    ap.add_argument("--recent", action="store_true", help="ingest: sessions of the last hour, not 30 days")
    ap.add_argument("--rounds", type=int, default=3,
                    help="ingest: HTTP, raw COPY and the no-store ceiling, this many times")
    args = ap.parse_args()
    if args.what == "report":
        result = bench_report(args.backend, args.records, args.pg, args.raw_too, args.keep, args.rebuild)
    else:
        result = bench_ingest(args.records, args.pg, args.instances, args.recent, args.rounds)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
