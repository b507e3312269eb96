"""Simulator benchmark (issue 5): a fleet of simulated boxes for simulated days, one process.

    .venv/bin/python bench/fleet.py [--boxes 10000] [--days 7] [--upload-delay 3600]
                                    [--profile] [--outage 36:6]

Starts ``nps-collector serve`` as its own process on a fresh SQLite file, then runs
``simulators.fleet.Fleet`` in this process against it, and prints: real time, the
simulation process's peak RSS, records made and uploaded, the request rates the
collector saw (per real second, and per virtual second after an outage), and whether the
collector's report matches the ground truth.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.collector_process import free_port, wait_ready  # noqa: E402
from simulators.faults import Faults, parse_outage  # noqa: E402
from simulators.fleet import Fleet, FleetOptions  # noqa: E402

ADMIN = "bench-admin-token-" + uuid.uuid4().hex


async def report(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(
        url + "/v1/report", headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=aiohttp.ClientTimeout(total=120),
    ) as resp:
        data: dict[str, Any] = await resp.json()
        return data


async def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    await wait_ready(url)
    options = FleetOptions(
        collector=url, admin_token=ADMIN, boxes=args.boxes, days=args.days, seed=args.seed,
        upload_delay_s=args.upload_delay, durable_boxes=args.durable_boxes,
        concurrency=args.concurrency, resolution_s=args.resolution, http_lag_s=args.http_lag,
        faults=Faults(outages=tuple(parse_outage(o) for o in args.outage)),
    )
    fleet = Fleet(options)
    t0 = time.monotonic()
    summary = await fleet.run()
    summary["bench_real_s"] = time.monotonic() - t0
    summary["report"] = await report(url)
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--boxes", type=int, default=10_000)
    p.add_argument("--days", type=float, default=7.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--upload-delay", type=float, default=3600.0)
    p.add_argument("--durable-boxes", type=int, default=None)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--resolution", type=float, default=1.0)
    p.add_argument("--http-lag", type=float, default=300.0)
    p.add_argument("--outage", action="append", default=[])
    p.add_argument("--profile", action="store_true", help="cProfile the simulation")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    # The agents' warnings (one a failed upload) would drown the figures.
    logging.basicConfig(level=logging.ERROR)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        env = dict(os.environ, NPS_ADMIN_TOKEN=ADMIN, NPS_LOG_LEVEL="WARNING")
        proc = subprocess.Popen(
            [sys.executable, "-m", "collector.cli", "serve", "--db",
             f"sqlite:///{Path(tmp) / 'collector.db'}", "--port", str(port),
             # Virtual time packs a box's week of uploads into seconds: lift the per-box
             # rate limit (real time), as scripts/demo does.
             "--box-rate", "1000000", "--box-burst", "1000000"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            if args.profile:
                prof = cProfile.Profile()
                prof.enable()
            summary = asyncio.run(run(args, url))
            if args.profile:
                prof.disable()
                pstats.Stats(prof).sort_stats(os.environ.get("SORT", "cumulative")).print_stats(45)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    me = resource.getrusage(resource.RUSAGE_SELF)
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    rss_mb = me.ru_maxrss / 1024
    coll_mb = child.ru_maxrss / 1024
    rep = summary.pop("report")
    gt = summary.pop("ground_truth")
    out = {
        "boxes": args.boxes, "days": args.days, "upload_delay_s": args.upload_delay,
        "real_s": round(summary["bench_real_s"], 1),
        # CPU seconds: on a shared machine, real time says more about the neighbours.
        "sim_cpu_s": round(me.ru_utime + me.ru_stime, 1),
        "collector_cpu_s": round(child.ru_utime + child.ru_stime, 1),
        "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        "sim_peak_rss_mb": round(rss_mb, 1), "collector_peak_rss_mb": round(coll_mb, 1),
        "sessions": summary["sessions"], "questions": summary["questions"],
        "answers": summary["answers"], "records_made": summary["records_made"],
        "records_accepted": summary["records_accepted"],
        "records_duplicate": summary["records_duplicate"],
        "records_buffered": summary["records_buffered"],
        "uploads": summary["uploads"], "retries": summary["retries"],
        "network": summary["network"],
        "report_sessions": rep["sessions"]["count"], "report_answered": rep["surveys"]["answered"],
        "report_nps": rep["nps"], "truth_nps": gt["nps"],
        "report_spearman_rebuffer": rep["correlation"]["rebuffer_ratio"]["spearman"],
        "truth_spearman_rebuffer": gt["correlation"]["rebuffer_ratio"]["spearman"],
    }
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
