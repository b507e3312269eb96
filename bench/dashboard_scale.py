"""Scale benchmark (issue 13): the dashboard's data over millions of sessions.

    .venv/bin/python bench/dashboard_scale.py --db sqlite:////tmp/copy-of-10m.db
    .venv/bin/python bench/dashboard_scale.py --db postgresql://postgres@127.0.0.1:5432/mycopy

Over a store loaded by bench/report_scale.py (``report --keep``: N sessions over the 30
days before today 00:00 UTC, aggregates built), opened as the collector opens it. Never
point it at a store others read from without copying it first: opening a store may
upgrade it.

Times, through the handlers' own functions on a mocked request of a real application
(no HTTP, no login), the median, min and max of ``--runs`` runs after one warm-up:

* ``/dashboard/api/data`` for 90 days by day (the issue's goal) and for the page's
  default (the 28 days up to today, by day), with its four reads timed apart once each:
  the period's report counts, the previous period's survey counts, the time line (survey
  counts a day) and the surveys not answered by the bucket of their session (read from
  the survey rows, which keep their session's values from schema 4 and 6);
* the page's other reads for its default filters: the detractor list (50), the known
  segment values, the at-risk list (7 days, 50) and ``/dashboard/api/impact``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collector.appkeys import STORE  # noqa: E402
from collector.at_risk import compute_at_risk  # noqa: E402
from collector.dashboard import views  # noqa: E402
from collector.dashboard.analysis import (  # noqa: E402
    previous_period,
    survey_counts,
    timeline,
    unanswered_counts,
)
from collector.settings import Settings  # noqa: E402
from collector.storage import make_storage  # noqa: E402

Work = Callable[[], Awaitable[Any]]


async def _timed(work: Work, runs: int) -> dict[str, float]:
    await work()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        await work()
        times.append(time.perf_counter() - t)
    return {"median_ms": round(statistics.median(times) * 1000, 1),
            "min_ms": round(min(times) * 1000, 1), "max_ms": round(max(times) * 1000, 1)}


async def _once(work: Work) -> float:
    t = time.perf_counter()
    await work()
    return round((time.perf_counter() - t) * 1000, 1)


async def run(url: str, runs: int, skip: set[str]) -> dict[str, Any]:
    store = make_storage(Settings(db=url, admin_token="x"))
    await store.open()
    app = web.Application()
    app[STORE] = store
    request = make_mocked_request("GET", "/dashboard", app=app)
    today = datetime.now(UTC).date()
    out: dict[str, Any] = {}
    try:
        shapes = {
            "data, 90 days by day": {"from_day": (today - timedelta(days=89)).isoformat(),
                                     "to_day": today.isoformat(), "granularity": "day"},
            "data, the page's default (28 days by day)": {},
        }
        for name, query in shapes.items():
            filters, _, granularity = views.page_filters(query)
            out[name] = await _timed(
                lambda f=filters, g=granularity: views.dashboard_data(request, f, g), runs)
            prev = previous_period(filters)
            out[name]["parts_ms, once"] = {
                "report counts": await _once(lambda f=filters: store.report_data(f)),
                "previous period's survey counts": await _once(lambda p=prev: survey_counts(store, p)),
                "time line": await _once(lambda f=filters, g=granularity: timeline(store, f, g)),
                "surveys not answered, by bucket": await _once(lambda f=filters: unanswered_counts(store, f)),
            }
        filters, _, _ = views.page_filters({})
        others: dict[str, Work] = {
            "detractors (50)": lambda: store.bad_detractors(filters, views.BAD, views.PAGE_DETRACTORS),
            "segment values": lambda: store.segment_values(views.SUGGESTIONS),
            "at-risk (7 days, 50)": lambda: compute_at_risk(
                store, to=None, window_days=7, limit=50, region=None, model=None, firmware=None),
            "impact (28 days)": lambda: views.impact_data(request, filters),
        }
        for name, work in others.items():
            if name.split(" ")[0] not in skip:
                out[name] = await _timed(work, runs)
    finally:
        await store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", required=True, help="sqlite:///PATH or postgresql://.../DB (a copy)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--skip", action="append", default=[], choices=["at-risk", "impact"],
                    help="leave out a part timed elsewhere (repeatable)")
    a = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    result: dict[str, Any] = {"db": a.db, "commit": commit, "load_avg_before": os.getloadavg()}
    result.update(asyncio.run(run(a.db, a.runs, set(a.skip))))
    result["load_avg_after"] = os.getloadavg()
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
