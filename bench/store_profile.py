"""Where a store's write time goes (issue 14): ``store.ingest`` without HTTP, each
operation of :mod:`collector.storage.store_logic` timed.

    .venv/bin/python bench/store_profile.py [--backend sqlite|postgres] [--records 32000]
        [--recent] [--runs 3] [--pg postgresql://postgres@127.0.0.1:5432] [--reports N]

Session records from ``bench/ingest.py``'s ``make_records`` (a 30-day backlog, or the last
hour with ``--recent``) are turned into rows outside the timing, then stored through the
store's own ingest path in write groups of 3,200 (32 uploads of 100 at once, as the HTTP
benchmark's 32 uploaders send them), each run on a fresh store (a temporary SQLite file,
or a PostgreSQL database made and dropped). Prints, per run, the total and the seconds
spent in each operation, by name (the group's aggregate statements by table); and the
median, min and max of the total over the runs. ``--reports N`` then times N reports of
each of three shapes (median ms), with the write groups' deltas as the ingest left them
and again once folded (``--records 22400``: 19,200 records unfolded, about the most a store
holds short of a fold). To profile another commit's code, put
it first on the path as ``bench/row_build.py``'s docstring shows.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import orjson

ROOT = Path(__file__).resolve().parent.parent
# Appended: another commit's code put first on PYTHONPATH is the one profiled.
sys.path.append(str(ROOT))

from collector.ingest import rows_from_batch  # noqa: E402
from collector.model import Filters, Row  # noqa: E402
from collector.report import build_report  # noqa: E402
from collector.settings import Settings  # noqa: E402
from collector.storage import Storage, make_storage  # noqa: E402
from collector.storage import store_logic as logic  # noqa: E402
from protocol import decode_batch, to_micros, utcnow  # noqa: E402
from protocol.units import DAY_US  # noqa: E402

# isort: split
# After the collector's modules: bench.ingest puts this checkout first on the path.
from bench.ingest import BATCH, UPLOADERS, make_records  # noqa: E402

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432"
_NAMES = ("mark surveyed", "agg_sessions", "flip surveyed", "agg_surveys", "agg_bins")


def _name(op: logic.Op, statements: tuple[str, ...]) -> str:
    if isinstance(op, logic.Run):
        for name, sql in zip(_NAMES, statements, strict=True):
            if op.sql == sql:
                return name
        words = op.sql.split()
        if "INTO" in words and words[words.index("INTO") + 1].startswith("agg_"):
            return "fold " + words[words.index("INTO") + 1]  # a fold's upsert
        if op.sql.startswith("DELETE FROM agg_"):
            return "fold empty"
        return "publish " + words[2] if op.sql.startswith("INSERT INTO") else "other"
    if isinstance(op, logic.Insert):
        return f"insert {op.table}"
    return type(op).__name__.lower()


def _batches(n: int, recent: bool) -> list[list[list[Row]]]:
    """Write groups of 32 uploads of 100 rows each."""
    records = make_records(n, recent=recent)
    uploads = []
    for k in range(0, len(records) - BATCH + 1, BATCH):
        body = orjson.dumps({"protocol": 1, "box_id": f"bench-{k // BATCH % UPLOADERS}",
                             "sent_at": utcnow().isoformat(), "records": records[k:k + BATCH]})
        uploads.append([r for _, r in rows_from_batch(decode_batch(body), utcnow())])
    return [uploads[i:i + UPLOADERS] for i in range(0, len(uploads), UPLOADERS)]


#: The report shapes ``--reports`` times: all time, the last 7 days (partial days and
#: hours at both ends), the last 7 days of one channel.
_SHAPES: Final = {"all": {}, "7 days": {"days": 7}, "7 days, channel": {"days": 7, "channel": "RTL4"}}


async def _reports(store: Storage, n: int) -> dict[str, float]:
    """Median ms of ``n`` reports of each shape."""
    out = {}
    now = to_micros(utcnow())
    for name, shape in _SHAPES.items():
        days = shape.get("days")
        f = Filters(from_us=now - int(days) * DAY_US + 12_345 if days else None,
                    channel=str(shape["channel"]) if "channel" in shape else None)
        ms = []
        for _ in range(n):
            t = time.perf_counter()
            await build_report(store, f)
            ms.append((time.perf_counter() - t) * 1000)
        out[name] = round(statistics.median(ms), 1)
    return out


async def _run(url: str, groups: list[list[list[Row]]], reports: int) -> tuple[float, dict[str, Any]]:
    store = make_storage(Settings(db=url, admin_token="profile-admin-" + uuid.uuid4().hex))
    await store.open()
    try:
        t = time.perf_counter()
        for group in groups:
            await asyncio.gather(*(store.ingest(u) for u in group))
        total = time.perf_counter() - t
        timed: dict[str, Any] = {}
        if reports:
            fold = getattr(store, "fold_aggregates", None)
            if fold is not None:  # this branch's deltas: the reports before and after a fold
                fetch: Any = store._fetch  # type: ignore[attr-defined]
                timed["unfolded_delta_rows"] = [
                    int((await fetch(f"SELECT count(*) FROM {t}_delta", []))[0][0])
                    for t in ("agg_sessions", "agg_surveys", "agg_bins")]
                timed["report_ms_unfolded"] = await _reports(store, reports)
                await fold()
            timed["report_ms"] = await _reports(store, reports)
        return total, timed
    finally:
        await store.close()


def _patch(backend: str, times: dict[str, float]) -> None:
    """Time every operation the store performs, by name."""
    if backend == "sqlite":
        from collector.storage import sqlite

        statements = sqlite._GROUP_STATEMENTS
        call = sqlite._Ops.__call__

        def timed(self: Any, op: logic.Op) -> Any:
            t = time.perf_counter()
            try:
                return call(self, op)
            finally:
                times[_name(op, statements)] += time.perf_counter() - t

        sqlite._Ops.__call__ = timed  # type: ignore[method-assign]
        return
    from collector.storage import postgres

    pg_statements = postgres._GROUP_STATEMENTS
    make = postgres._ops

    def ops(conn: Any) -> Callable[[logic.Op], Awaitable[Any]]:
        do = make(conn)

        async def timed_async(op: logic.Op) -> Any:
            t = time.perf_counter()
            try:
                return await do(op)
            finally:
                times[_name(op, pg_statements)] += time.perf_counter() - t

        return timed_async

    postgres._ops = ops


async def _pg(base: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--records", type=int, default=32_000)
    ap.add_argument("--recent", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pg", default=PG_DEFAULT, help="server URL without a database")
    ap.add_argument("--reports", type=int, default=0,
                    help="after the ingest, time this many reports of each shape (with the "
                    "deltas left unfolded, then folded)")
    args = ap.parse_args()
    groups = _batches(args.records, args.recent)
    stored = sum(len(u) for g in groups for u in g)
    totals = []
    times: dict[str, float] = collections.defaultdict(float)
    _patch(args.backend, times)
    for _ in range(args.runs):
        times.clear()
        with tempfile.TemporaryDirectory() as tmp:
            if args.backend == "sqlite":
                total, timed = asyncio.run(_run(f"sqlite:///{tmp}/profile.db", groups, args.reports))
            else:
                name = "nps_profile_" + uuid.uuid4().hex[:8]
                asyncio.run(_pg(args.pg, f"CREATE DATABASE {name}"))
                try:
                    total, timed = asyncio.run(_run(f"{args.pg}/{name}", groups, args.reports))
                finally:
                    asyncio.run(_pg(args.pg, f"DROP DATABASE {name}"))
        totals.append(total)
        print(orjson.dumps({"records": stored, "total_s": round(total, 3),
                            "ops_s": {k: round(v, 3) for k, v in sorted(times.items())},
                            **timed}).decode())
    print(orjson.dumps({"backend": args.backend, "recent": args.recent, "records": stored,
                        "total_s": {"median": round(statistics.median(totals), 3),
                                    "min": round(min(totals), 3), "max": round(max(totals), 3)}}).decode())


if __name__ == "__main__":
    main()
