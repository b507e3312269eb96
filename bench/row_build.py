"""The cost of building session rows from decoded records (``collector.ingest.rows_from_batch``),
decode excluded: the per-record work the event loop does before a row reaches a store.

Usage: ``.venv/bin/python bench/row_build.py [--records 500] [--rounds 40] [--runs 5]``.
To compare with another commit, export its code and put it first on the path::

    git archive <commit> collector protocol | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old .venv/bin/python bench/row_build.py
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson

from collector.ingest import rows_from_batch
from protocol import decode_batch


def _body(n: int, now: datetime) -> bytes:
    def iso(t: datetime) -> str:
        return t.isoformat().replace("+00:00", "Z")

    recs = []
    for i in range(n):
        st = now - timedelta(minutes=i)
        recs.append({"id": str(uuid.uuid4()), "kind": "session", "started_at": iso(st),
                     "ended_at": iso(st + timedelta(seconds=600)), "channel": "NPO1",
                     "content_type": "live",
                     "qos": {"startup_ms": 800 + i, "watch_s": 600.0, "rebuffer_count": 1,
                             "rebuffer_s": 3.0, "avg_bitrate_kbps": 5400.0,
                             "bitrate_switches": 1, "failed": False}})
    return orjson.dumps({"protocol": 1, "box_id": "stb-1", "sent_at": iso(now), "records": recs})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    now = datetime.now(UTC)
    batch = decode_batch(_body(args.records, now))
    runs = []
    for _ in range(args.runs):
        t = time.perf_counter()
        for _ in range(args.rounds):
            rows_from_batch(batch, now)
        runs.append((time.perf_counter() - t) / (args.rounds * args.records) * 1e6)
    print(orjson.dumps({"us_per_record": {"min": round(min(runs), 2),
                                          "median": round(statistics.median(runs), 2),
                                          "max": round(max(runs), 2)}}).decode())


if __name__ == "__main__":
    main()
