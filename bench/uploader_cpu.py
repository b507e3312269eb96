"""CPU of the agent's uploader per upload, without the network.

The real :class:`~stb_widget.sync.Uploader` on a :class:`~stb_widget.buffer.MemoryBuffer`
(filled beforehand, handing out one batch of the size under test a fetch) sends to a poster that answers the contract's 200 at once, so what is timed is the
agent's own work for one upload: fetch, the request body (JSON and gzip), the answer's
check and the deletion. Run: ``.venv/bin/python bench/uploader_cpu.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocol import Qos, SessionRecord, SurveyRecord
from stb_widget.buffer import MemoryBuffer, Stored
from stb_widget.config import BufferSection, parse_config
from stb_widget.http_client import Response
from stb_widget.ids import uuid7
from stb_widget.sync import Uploader

T0 = datetime(2026, 11, 22, 20, 0, tzinfo=UTC)


class Clock:
    """Frozen wall time; sleeping returns at once."""

    def wall(self) -> datetime:
        return T0

    def monotonic(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        return None


class Ack:
    """A poster that answers every batch with the contract's 200 (all accepted)."""

    def __init__(self) -> None:
        self.n = 0

    async def post(self, url: str, *, body: bytes, headers: Mapping[str, str]) -> Response:
        return Response(200, {}, orjson.dumps({"accepted": self.n, "duplicates": 0,
                                               "rejected": []}))


class CappedBuffer(MemoryBuffer):
    """The agent's memory buffer handing out at most ``cap`` records a fetch, so that
    every upload is one batch of that size while all of them are stored beforehand."""

    cap = 1

    async def fetch(self, max_records: int, max_bytes: int) -> list[Stored]:
        return await super().fetch(min(max_records, self.cap), max_bytes)


def records(n: int, rng: random.Random) -> list[SessionRecord | SurveyRecord]:
    out: list[SessionRecord | SurveyRecord] = []
    for i in range(n):
        start = T0 + timedelta(seconds=rng.uniform(0, 86_400))
        sid = uuid7()
        out.append(SessionRecord(
            id=sid, kind="session", started_at=start,
            ended_at=start + timedelta(seconds=rng.uniform(60, 7200)),
            channel=rng.choice(["NPO1", "RTL4", "SBS6", None]), content_type="live",
            qos=Qos(startup_ms=rng.randint(200, 3000), watch_s=round(rng.uniform(60, 7200), 3),
                    rebuffer_count=rng.randint(0, 5), rebuffer_s=round(rng.uniform(0, 30), 3),
                    avg_bitrate_kbps=round(rng.uniform(1000, 8000), 3),
                    bitrate_switches=rng.randint(0, 9), failed=False)))
        if i % 20 == 19:
            out.append(SurveyRecord(
                id=uuid7(), kind="survey", session_id=sid, shown_at=start, answered_at=start,
                outcome="answered", score=rng.randint(0, 10), reason="picture", locale="nl"))
    return out[:n]


async def per_upload(batch: int, uploads: int) -> float:
    """CPU seconds per upload of ``batch`` records (mean over ``uploads``)."""
    config = parse_config({
        "box_id": "stb-bench-1", "data_dir": "/nonexistent",
        "collector": {"url": "http://127.0.0.1:9", "token": "t", "boot_jitter_s": 0},
        "box": {"model": "X-200", "firmware": "4.2.1", "region": "NL-NH"},
        "player": {"source": "events", "events_socket": "/nonexistent/ev.sock"},
    })
    clock = Clock()
    store = CappedBuffer(BufferSection(max_records=10**7, max_bytes=10**10), clock)
    store.cap = batch
    poster = Ack()
    poster.n = batch
    up = Uploader(config, store, poster, clock, random.Random(1))
    made = records(batch * uploads, random.Random(1))
    # Stored a few hundred records at a time: a dict emptied from the front is slow to
    # iterate until an insertion compacts it (the buffer's fetch would pay for that).
    per_round = max(1, 200 // batch)
    spent = 0.0
    for first in range(0, uploads, per_round):
        n = min(per_round, uploads - first)
        for r in made[first * batch:(first + n) * batch]:
            if isinstance(r, SessionRecord):
                await store.add_session(r)
            else:
                await store.finished(r)
        t = time.process_time()
        for _ in range(n):
            await up.upload_once()
        spent += time.process_time() - t
    assert store.ready_count == 0 and up.stats["records_accepted"] == batch * uploads
    return spent / uploads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=20_000,
                    help="records uploaded per batch size (default 20000)")
    ap.add_argument("--batches", default="1,2,10,100,500", help="batch sizes")
    args = ap.parse_args()
    for size in (int(x) for x in args.batches.split(",")):
        uploads = max(20, args.records // size)
        asyncio.run(per_upload(size, min(uploads, 200)))  # warm-up
        best = min(asyncio.run(per_upload(size, uploads)) for _ in range(3))
        print(f"batch of {size:3d}: {best * 1e6:8.1f} µs CPU per upload, "
              f"{best * 1e6 / size:6.2f} µs per record (best of 3, {uploads} uploads)")


if __name__ == "__main__":
    main()
