"""Scale benchmark (issue 13): ``GET /v1/at-risk`` over millions of sessions.

    .venv/bin/python bench/at_risk_scale.py --backend sqlite --records 1000000
    .venv/bin/python bench/at_risk_scale.py --backend postgres --records 10000000 --keep nps_bench_10m

The data are bench/report_scale.py's (the same generator and seed, loaded by the same
bulk path; the at-risk list reads no aggregate, so they are not rebuilt): N sessions
over the 30 days before today 00:00 UTC on 200 000 boxes, 5 % of them surveyed and 70 %
of those answered (about 350 000 answered surveys at 10 M), scores falling with
rebuffering and startup time. ``--keep`` names a file (SQLite) or database
(PostgreSQL) kept between runs and loaded only where it does not exist yet.

Timed through :func:`collector.at_risk.compute_at_risk` on a freshly opened store, as the
HTTP handler calls it, with ``to`` the data's end: the median, min and max of
``--runs`` runs after one warm-up, for the default shape (7 days, limit 50), a region
filter, limit 1000, and 1 and 30 days. The parts are timed once each: the training read,
the fit, the ranking query and the last answers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import machine_figures  # noqa: E402
from report_scale import (  # noqa: E402
    PG_DEFAULT,
    _end_us,
    _pg_create,
    _pg_exists,
    load_postgres,
    load_sqlite,
    pg_database,
    pg_drop,
)

from collector import at_risk  # noqa: E402
from collector.model import Filters  # noqa: E402
from collector.settings import Settings  # noqa: E402
from collector.storage import make_storage  # noqa: E402
from collector.storage.at_risk import (  # noqa: E402
    read_box_sums,
    read_last_answers,
    read_ranked_boxes,
    read_training_rows,
)
from protocol.timefmt import from_micros, to_micros  # noqa: E402
from protocol.units import DAY_US  # noqa: E402

CASES: dict[str, dict[str, Any]] = {
    "7 days, limit 50 (the default)": {"window_days": 7, "limit": 50},
    "7 days, region=NL-ZH": {"window_days": 7, "limit": 50, "region": "NL-ZH"},
    "7 days, limit 1000": {"window_days": 7, "limit": 1000},
    "1 day": {"window_days": 1, "limit": 50},
    "30 days": {"window_days": 30, "limit": 50},
}


async def time_at_risk(url: str, runs: int, cases: list[str]) -> dict[str, Any]:
    store = make_storage(Settings(db=url, admin_token="x"))
    await store.open()
    to = from_micros(_end_us())
    fetch, style = store.sql_reader()
    # count(*), not store.counts(): that reads the aggregates, which this load leaves empty.
    stored = await fetch("SELECT (SELECT count(*) FROM sessions), (SELECT count(*) FROM surveys), "
                         "(SELECT count(*) FROM surveys WHERE outcome = 'answered')", ())
    out: dict[str, Any] = {"stored": {"sessions": int(stored[0][0]), "surveys": int(stored[0][1]),
                                      "answered": int(stored[0][2])}}
    try:
        for name, kw in CASES.items():
            if name not in cases:
                continue
            args = {"to": to, "region": None, "model": None, "firmware": None, **kw}
            first = await at_risk.compute_at_risk(store, **args)
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                await at_risk.compute_at_risk(store, **args)
                times.append(time.perf_counter() - t)
            out[name] = {"median_ms": round(statistics.median(times) * 1000, 1),
                         "min_ms": round(min(times) * 1000, 1),
                         "max_ms": round(max(times) * 1000, 1),
                         "boxes": len(first["boxes"]),
                         "top": first["boxes"][0] if first["boxes"] else None}
        # Where the time goes, default shape.
        to_us = to_micros(to)
        parts: dict[str, float] = {}
        t = time.perf_counter()
        rows = await read_training_rows(fetch, style, shown_from_us=to_us - at_risk.TRAIN_DAYS * DAY_US,
                                        to_us=to_us, max_rows=at_risk.TRAIN_MAX)
        parts["training read"] = time.perf_counter() - t
        t = time.perf_counter()
        model = at_risk.learn(rows)
        parts["fit"] = time.perf_counter() - t
        window = Filters(from_us=to_micros(to - timedelta(days=7)), to_us=to_us)
        t = time.perf_counter()
        ranked = await read_ranked_boxes(store.sql_reader(large=True)[0], style, window, model.ranking(), 50)
        parts["ranking query"] = time.perf_counter() - t
        ids = [box_id for box_id, _ in ranked]
        t = time.perf_counter()
        await read_box_sums(fetch, style, window, ids)
        parts["figures of the 50"] = time.perf_counter() - t
        t = time.perf_counter()
        await read_last_answers(fetch, style, ids, to_us)
        parts["last answers"] = time.perf_counter() - t
        out["parts_ms (7 days, limit 50)"] = {k: round(v * 1000, 1) for k, v in parts.items()}
        out["model"] = {"kind": model.kind, "answers": model.answers, "detractors": model.detractors,
                        "coef": [round(c, 4) for c in model.coef]}
        window_sessions = await fetch(
            "SELECT count(*), count(DISTINCT box_id) FROM sessions WHERE started_us >= "
            + ("?" if style == "?" else "$1") + " AND started_us < " + ("?" if style == "?" else "$2"),
            [window.from_us, to_us])
        out["window (7 days)"] = {"sessions": int(window_sessions[0][0]),
                                  "boxes": int(window_sessions[0][1])}
    finally:
        await store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--keep", help="SQLite file or PostgreSQL database kept between runs")
    ap.add_argument("--pg", default=PG_DEFAULT)
    ap.add_argument("--case", action="append", choices=list(CASES),
                    help="time only this shape (repeatable; default: every one)")
    a = ap.parse_args()
    cases = a.case or list(CASES)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    result: dict[str, Any] = {"backend": a.backend, "records_generated_sessions": a.records,
                              "commit": commit, "load_avg_before": os.getloadavg(),
                              "machine_before": machine_figures()}
    if a.backend == "sqlite":
        with tempfile.TemporaryDirectory(dir=os.environ.get("NPS_BENCH_DIR")) as tmp:
            path = Path(a.keep) if a.keep else Path(tmp) / "scale.db"
            if not path.exists():
                result["load_s"] = round(asyncio.run(load_sqlite(path, a.records, 7)), 1)
            result.update(asyncio.run(time_at_risk(f"sqlite:///{path}", a.runs, cases)))
    else:
        name = a.keep or asyncio.run(pg_database(a.pg))
        try:
            if a.keep and not asyncio.run(_pg_exists(a.pg, name)):
                asyncio.run(_pg_create(a.pg, name))
                result["load_s"] = round(asyncio.run(load_postgres(f"{a.pg}/{name}", a.records, 7)), 1)
            elif not a.keep:
                result["load_s"] = round(asyncio.run(load_postgres(f"{a.pg}/{name}", a.records, 7)), 1)
            result.update(asyncio.run(time_at_risk(f"{a.pg}/{name}", a.runs, cases)))
        finally:
            if a.keep is None:
                asyncio.run(pg_drop(a.pg, name))
    result["load_avg_after"] = os.getloadavg()
    result["machine_after"] = machine_figures()
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
