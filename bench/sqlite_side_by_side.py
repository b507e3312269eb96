"""Two SQLite scans side by side in one process, against the same two one after the other.

Why the impact read (``collector/storage/impact_sql.py``) reads SQLite one part at a time:
the rows query of ``/v1/impact`` is cut in two halves by ``rowid``; each half is timed
alone, then both are run at once in two threads on two connections (as two reader
connections of the collector would). With ``--memstatus-off`` SQLite's memory statistics
(``SQLITE_CONFIG_MEMSTATUS``, on by default, which take a process-wide mutex on every
allocation) are switched off through ctypes before the ``sqlite3`` module loads: a
diagnostic of where the time goes, not something the collector does.

Usage: ``.venv/bin/python bench/sqlite_side_by_side.py --db FILE [--runs 3] [--memstatus-off]``
(FILE: a store with surveys, e.g. bench/report_scale.py's ``--keep`` file).
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--memstatus-off", action="store_true")
    args = ap.parse_args()
    # SQLITE_CONFIG_MEMSTATUS = 9; only allowed before the library is initialised, which
    # importing the sqlite3 module does.
    if args.memstatus_off and ("sqlite3" in sys.modules or
                               ctypes.CDLL("libsqlite3.so.0").sqlite3_config(9, ctypes.c_int(0))):
        sys.exit("cannot switch SQLite's memory statistics off in this process")
    import sqlite3

    sys.path.insert(0, str(ROOT))
    from collector.storage.impact_sql import _IS_ROW, _ROW_COLUMNS, _json_array

    sql = (f"SELECT {', '.join(_json_array(c, '?') for c in _ROW_COLUMNS)} FROM surveys v "
           f"WHERE v.rowid >= ? AND v.rowid < ? AND {_IS_ROW}")
    uri = f"file:{Path(args.db).resolve()}?mode=ro"
    db = sqlite3.connect(uri, uri=True)
    lo = db.execute("SELECT min(rowid) FROM surveys").fetchone()[0]
    hi = db.execute("SELECT max(rowid) FROM surveys").fetchone()[0] + 1
    mid = (lo + hi) // 2
    halves = [(lo, mid), (mid, hi)]

    def scan(bounds: tuple[int, int], out: list[float]) -> None:
        conn = sqlite3.connect(uri, uri=True)
        t = time.perf_counter()
        conn.execute(sql, bounds).fetchall()
        out.append(time.perf_counter() - t)
        conn.close()

    alone: list[float] = []
    side_by_side: list[float] = []
    for _ in range(args.runs):
        times: list[float] = []
        for h in halves:
            scan(h, times)
        alone.append(sum(times))
        threads = [threading.Thread(target=scan, args=(h, [])) for h in halves]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        side_by_side.append(time.perf_counter() - t)
    print(f"memory statistics {'off' if args.memstatus_off else 'on (the default)'}, "
          f"{args.runs} runs, median (min-max) ms:")
    for name, xs in (("one half, then the other", alone), ("both halves at once", side_by_side)):
        print(f"  {name}: {statistics.median(xs) * 1000:.0f} ({min(xs) * 1000:.0f}-{max(xs) * 1000:.0f})")


if __name__ == "__main__":
    main()
