"""How long ``nps-collector migrate`` takes on a big old store: version 0 (before the
aggregates) to the latest, i.e. the fine-bin backfill of every session and the rebuild of
every day's aggregates, the heaviest migration there is.

The store is the old collector's (tests/collector/fixtures/old_7759866: 470 sessions, 314
surveys) with its sessions copied under new ids and spread over 90 days until there are
``--sessions``, then put back to version 0 (fine-bin columns, aggregates and the recorded
version dropped). Each run starts from a fresh copy; ``migrate`` runs as a process of its
own, as an operator runs it::

    .venv/bin/python bench/migrate.py --backend sqlite --sessions 200000 --runs 3
    .venv/bin/python bench/migrate.py --backend postgresql --sessions 200000 --runs 3

Prints one JSON line: seconds per run, median, spread. Figures: bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OLD = ROOT / "tests" / "collector" / "fixtures" / "old_7759866"
PG = {"host": os.environ.get("NPS_TEST_PG_HOST", "127.0.0.1"),
      "port": int(os.environ.get("NPS_TEST_PG_PORT", "5432")),
      "user": os.environ.get("NPS_TEST_PG_USER", "postgres")}
V1_DERIVED = ("rb_fine", "br_fine", "su_fine", "rb_pos", "br_pos", "su_pos")
DAY_US = 86_400_000_000


def sqlite_store(path: Path, sessions: int) -> None:
    """The old SQLite store grown to ``sessions`` and put back to version 0."""
    path.write_bytes(gzip.decompress((OLD / "collector.db.gz").read_bytes()))
    conn = sqlite3.connect(path)
    cols = [r[1] for r in conn.execute("PRAGMA table_info(sessions)")]
    sel = ", ".join(
        "lower(hex(randomblob(16)))" if c == "id"
        else f"started_us + (abs(random()) % 90) * {DAY_US}" if c == "started_us" else c
        for c in cols)
    conn.execute("CREATE TEMP TABLE base AS SELECT * FROM sessions")
    have = conn.execute("SELECT count(*) FROM sessions").fetchone()[0]
    base = have
    while have < sessions:
        n = min(base, sessions - have)
        conn.execute(f"INSERT INTO sessions ({', '.join(cols)}) SELECT {sel} FROM base LIMIT {n}")
        have += n
    for t in ("agg_sessions", "agg_surveys", "agg_bins"):
        conn.execute(f"DROP TABLE {t}")
    conn.execute("DROP INDEX sessions_started")  # SQLite drops no indexed column
    for c in V1_DERIVED:
        conn.execute(f"ALTER TABLE sessions DROP COLUMN {c}")
    conn.execute("CREATE INDEX sessions_started ON sessions "
                 "(started_us, rb_bucket, br_bucket, su_bucket, failed, surveyed)")
    conn.execute("DELETE FROM nps_meta WHERE key = 'schema_version'")
    conn.commit()
    conn.execute("VACUUM")
    conn.close()


async def _pg(database: str, *sql: str) -> int:
    """Run ``sql``; the first column of the last statement's first row, if it has one."""
    import asyncpg

    conn = await asyncpg.connect(database=database, **PG)  # type: ignore[arg-type]
    try:
        for stmt in sql[:-1]:
            await conn.execute(stmt)
        row = await conn.fetchrow(sql[-1])
        return int(row[0]) if row else 0
    finally:
        await conn.close()


def pg_store(name: str, sessions: int) -> tuple[str, int]:
    """The old PostgreSQL database grown to ``sessions`` and put back to version 0."""
    asyncio.run(_pg("postgres", f"CREATE DATABASE {name}"))
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", PG["host"], "-p",
                    str(PG["port"]), "-U", PG["user"], "-d", name, "-o", os.devnull],
                   input=gzip.decompress((OLD / "postgres.sql.gz").read_bytes()), check=True)
    # Partitions for the 90 days the copies spread over (2026-11 to 2027-02).
    parts = [f"CREATE TABLE IF NOT EXISTS sessions_p{y}{m:02d} PARTITION OF sessions FOR VALUES "
             f"FROM ({lo}) TO ({hi})" for y, m, lo, hi in _months()]
    count = asyncio.run(_pg(
        name, *parts,
        "CREATE TEMP TABLE base AS SELECT * FROM sessions",
        f"INSERT INTO sessions SELECT gen_random_uuid(), box_id, received_us, "
        f"started_us + (floor(random() * 90))::bigint * {DAY_US}, ended_us, channel, "
        "content_type, startup_ms, watch_s, rebuffer_count, rebuffer_s, avg_bitrate_kbps, "
        "bitrate_switches, failed, rebuffer_ratio, rb_bucket, br_bucket, su_bucket, model, "
        "firmware, region, clock_shift_s, raw, rb_fine, br_fine, su_fine, rb_pos, br_pos, su_pos, "
        f"surveyed FROM base, generate_series(1, {max(0, round(sessions / 470) - 1)})",
        "DROP TABLE agg_sessions, agg_surveys, agg_bins",
        "ALTER TABLE sessions " + ", ".join(f"DROP COLUMN {c}" for c in V1_DERIVED),
        "DELETE FROM nps_meta WHERE key = 'schema_version'",
        "ANALYZE",
        "SELECT count(*) FROM sessions"))
    return f"postgresql://{PG['user']}@{PG['host']}:{PG['port']}/{name}", count


def _months() -> list[tuple[int, int, int, int]]:
    from datetime import UTC, datetime

    def us(y: int, m: int) -> int:
        return int(datetime(y, m, 1, tzinfo=UTC).timestamp()) * 1_000_000

    months = [(2027, 1), (2027, 2), (2027, 3)]
    return [(y, m, us(y, m), us(y + (m == 12), m % 12 + 1)) for y, m in months]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--sessions", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-migrate-"))
    seconds = []
    count = args.sessions
    try:
        for _ in range(args.runs):
            name = f"nps_bench_{secrets.token_hex(4)}"
            if args.backend == "sqlite":
                url = f"sqlite:///{work / 'c.db'}"
                sqlite_store(work / "c.db", args.sessions)
            else:
                url, count = pg_store(name, args.sessions)
            try:
                t0 = time.perf_counter()
                done = subprocess.run([sys.executable, "-m", "collector.cli", "migrate", "--db", url],
                                      cwd=ROOT, capture_output=True, text=True)
                seconds.append(time.perf_counter() - t0)
                if done.returncode != 0 or "from schema version 0" not in done.stderr:
                    raise SystemExit(f"migrate failed: {done.stderr}")
            finally:
                if args.backend == "postgresql":
                    asyncio.run(_pg("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"backend": args.backend, "sessions": count,
                      "seconds": [round(s, 2) for s in seconds],
                      "median_s": round(statistics.median(seconds), 2),
                      "spread_s": round(max(seconds) - min(seconds), 2)}))


if __name__ == "__main__":
    main()
