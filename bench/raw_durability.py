"""How much of raw ``executemany``'s time is the disk: bench/ingest.py's raw run (one
commit per batch of 100 session records, WAL) with ``synchronous=FULL`` and ``OFF``,
alternating, each timed by the wall clock and by the process's CPU time.

    .venv/bin/python bench/raw_durability.py [--records 32000] [--recent] [--rounds 2]

Where FULL's wall time per record is well above its CPU time, the raw run waits on the
disk's flushes, and the collector's group commit (one flush for several uploads) has the
advantage in bench/ingest.py's ratio (bench/README.md, "Storage write path").
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest import BATCH, make_records, raw_rows, raw_sqlite

from protocol import utcnow


def batches(n: int, recent: bool) -> list[list[tuple[Any, ...]]]:
    records = make_records(n, recent=recent)
    return [raw_rows(orjson.dumps({"protocol": 1, "box_id": "bench-0", "sent_at": utcnow().isoformat(),
                                   "records": records[k:k + BATCH]}))
            for k in range(0, n - n % BATCH, BATCH)]


def run(data: list[list[tuple[Any, ...]]], sync: str) -> dict[str, float]:
    n = sum(len(b) for b in data)
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = raw_sqlite(Path(tmp) / "raw.db", data, synchronous=sync)
    return {"records_per_s": round(n / wall), "wall_us_per_record": round(wall / n * 1e6, 1),
            "cpu_us_per_record": round(cpu / n * 1e6, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=32_000)
    ap.add_argument("--recent", action="store_true", help="sessions of the last hour, not 30 days")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    data = batches(a.records, a.recent)
    out: dict[str, list[dict[str, float]]] = {"FULL": [], "OFF": []}
    for _ in range(a.rounds):
        for sync in out:
            out[sync].append(run(data, sync))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
