"""How fast the machine a benchmark runs on is, in three fixed figures.

The speed goals are absolute (say, the at-risk list under 1 s at 10 M sessions), but
the machines here differ by two to three times from one session to the next, and one
machine's speed drifts between runs (bench/README.md, "At-risk list at scale"). The
scale benchmarks print these figures beside their own, before and after, so that two
sessions' figures can be compared by how fast their machines were:

* ``python_loop_ms``: a pure-Python loop of 5,000,000 additions (the collector's own
  CPU work);
* ``sqlite_sort_ms``: SQLite sorting 1,000,000 integers in memory (its GROUP BY and
  ORDER BY work);
* ``sqlite_commits_per_s``: commits of one small row with ``synchronous=FULL`` in WAL
  mode, in the benchmark's temporary directory (what bounds ingest on a slow disk).

Each is the median of three. ``python bench/machine.py`` prints them alone.
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

_SORT = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 1000000) "
         "SELECT count(*), max(k) FROM (SELECT (x * 7919) % 1000003 AS k FROM c ORDER BY k)")


def _median_ms(work: Callable[[], object], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        work()
        times.append(time.perf_counter() - t)
    return round(statistics.median(times) * 1000, 1)


def _loop() -> int:
    total = 0
    for i in range(5_000_000):
        total += i
    return total


def _sort() -> None:
    conn = sqlite3.connect(":memory:")
    try:
        assert conn.execute(_SORT).fetchone() == (1_000_000, 1_000_002)
    finally:
        conn.close()


def _commits_per_s(directory: str | None, commits: int = 100) -> float:
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        conn = sqlite3.connect(Path(tmp) / "commits.db", isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("CREATE TABLE t (x INTEGER)")
            rates = []
            for _ in range(3):
                t = time.perf_counter()
                for i in range(commits):
                    conn.execute("BEGIN IMMEDIATE")
                    conn.execute("INSERT INTO t VALUES (?)", (i,))
                    conn.execute("COMMIT")
                rates.append(commits / (time.perf_counter() - t))
            return round(statistics.median(rates))
        finally:
            conn.close()


def machine_figures() -> dict[str, float]:
    """The three figures (see the module's docstring), in the benchmark's temporary
    directory (``NPS_BENCH_DIR`` if set, as the scale benchmarks use)."""
    return {"python_loop_ms": _median_ms(_loop), "sqlite_sort_ms": _median_ms(_sort),
            "sqlite_commits_per_s": _commits_per_s(os.environ.get("NPS_BENCH_DIR"))}


if __name__ == "__main__":
    print(json.dumps(machine_figures(), indent=2))
