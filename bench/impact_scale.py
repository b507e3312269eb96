"""Scale benchmark for ``GET /v1/impact`` (issue 13): its latency over millions of records.

    .venv/bin/python bench/impact_scale.py --backend sqlite --records 10000000 --keep /big/impact.db
    .venv/bin/python bench/impact_scale.py --backend postgres --records 10000000 --keep nps_impact

The data are bench/report_scale.py's (N sessions over 30 days, 5 % surveyed, 70 % of those
answered, 200,000 boxes, 4 regions x 3 models x 2 firmwares x 3 content types, a planted
effect of rebuffering, start-up and bitrate on the score), loaded by its bulk path
(SQLite ``executemany``, PostgreSQL ``COPY``). The report's aggregates are not built: the
impact reads raw rows only. ``--keep`` keeps (and reuses) the SQLite file or PostgreSQL
database between runs.

Timed, on a freshly opened store, median, min and max of 5 runs after one warm-up, and
the median CPU time of this process (every thread: the store's readers, the estimator's
worker; with PostgreSQL the server's CPU is not in it):
``compute_impact`` (what the handler awaits; the JSON encoding of the small answer is
left out), and its two parts: the store's read (``impact_data``) and the estimator
(``impact_from_data``, in the caller's thread).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

# As in the collector, where collector/impact.py sets it before numpy loads: here
# report_scale loads numpy first.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import report_scale as rs  # noqa: E402
from machine import machine_figures  # noqa: E402

from collector.impact import compute_impact, impact_from_data  # noqa: E402
from collector.model import Filters  # noqa: E402
from collector.settings import Settings  # noqa: E402
from collector.storage import impact_sql, make_storage  # noqa: E402
from protocol.units import DAY_US  # noqa: E402

RUNS = 5


def cases() -> dict[str, Filters]:
    end = rs._end_us()
    return {
        "all": Filters(),
        "7 days": Filters(from_us=end - 7 * DAY_US, to_us=end),
        "region": Filters(region="NL-ZH"),
    }


async def _timed(fn: Any) -> tuple[tuple[list[float], list[float]], Any]:
    """Wall-clock and this process's CPU time (all its threads) of each run."""
    await fn()  # warm-up
    wall, cpu = [], []
    out = None
    for _ in range(RUNS):
        t, c = time.perf_counter(), time.process_time()
        out = await fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return (wall, cpu), out


def _ms(times: tuple[list[float], list[float]]) -> dict[str, float]:
    wall, cpu = times
    return {"median_ms": round(statistics.median(wall) * 1000, 1),
            "max_ms": round(max(wall) * 1000, 1), "min_ms": round(min(wall) * 1000, 1),
            "cpu_median_ms": round(statistics.median(cpu) * 1000, 1)}


async def time_impact(url: str, only: list[str] | None = None) -> dict[str, Any]:
    # A strong token: the collector refuses weak ones (the bench never serves with it).
    store = make_storage(Settings(db=url, admin_token=secrets.token_urlsafe(32)))
    await store.open()
    out: dict[str, Any] = {}
    try:
        for name, f in cases().items():
            if only and name not in only:
                continue
            total, answer = await _timed(lambda f=f: compute_impact(store, f))
            read, data = await _timed(lambda f=f: store.impact_data(f))

            async def estimate(data: Any = data) -> Any:
                return impact_from_data(data)

            est, _ = await _timed(estimate)
            out[name] = {"compute_impact": _ms(total), "read": _ms(read), "estimator": _ms(est),
                         "answers": answer["answers"], "boxes": answer["boxes"],
                         "shown": sum(s.shown for s in data.strata),
                         "adjusted_rebuffer_pct": answer["effects"]["adjusted"]["rebuffer_pct"]}
    finally:
        await store.close()
    return out


def main() -> None:
    global RUNS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--pg", default=rs.PG_DEFAULT, help="server URL without a database")
    ap.add_argument("--keep", help="SQLite file or PostgreSQL database to keep (and reuse) the data in")
    ap.add_argument("--runs", type=int, default=5, help="timed runs of each part (after a warm-up)")
    ap.add_argument("--parts", type=int, help="cut the read into this many parts (default: "
                    "collector.storage.impact_sql.PARTS)")
    ap.add_argument("--case", action="append", choices=list(cases()), help="only this case (repeatable)")
    args = ap.parse_args()
    RUNS = args.runs
    if args.parts is not None:
        impact_sql.PARTS = args.parts
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=False).stdout.strip()
    result: dict[str, Any] = {"backend": args.backend, "sessions_generated": args.records,
                              "commit": commit, "runs": RUNS, "parts": impact_sql.PARTS,
                              "machine_before": machine_figures()}
    if args.backend == "sqlite":
        path = Path(args.keep or f"/tmp/impact-bench-{args.records}.db")
        if not path.exists():
            result["load_s"] = round(asyncio.run(rs.load_sqlite(path, args.records, 7)), 1)
        result.update(asyncio.run(time_impact(f"sqlite:///{path}", args.case)))
        if not args.keep:
            path.unlink()
    else:
        name = args.keep or asyncio.run(rs.pg_database(args.pg))
        try:
            if args.keep is None or not asyncio.run(rs._pg_exists(args.pg, name)):
                if args.keep:
                    asyncio.run(rs._pg_create(args.pg, name))
                result["load_s"] = round(asyncio.run(rs.load_postgres(f"{args.pg}/{name}", args.records, 7)), 1)
            result.update(asyncio.run(time_impact(f"{args.pg}/{name}", args.case)))
        finally:
            if args.keep is None:
                asyncio.run(rs.pg_drop(args.pg, name))
    result["machine_after"] = machine_figures()
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
