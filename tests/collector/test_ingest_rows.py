"""The session rows ingest builds by position are the rows named field by field."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import orjson

from collector.fine_bins import fine_bin_pos
from collector.ingest import rows_from_batch
from collector.metrics import bucket_index
from collector.model import SessionRow
from protocol import decode_batch

from .conftest import batch, session_record


def _us(t: datetime) -> int:
    return (t - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def test_session_rows_are_the_named_fields() -> None:
    start = datetime(2026, 11, 3, 20, 15, 7, 250_000, tzinfo=UTC)
    records = [
        session_record(started=start, watch_s=1800.0, rebuffer_s=9.0, rebuffer_count=3,
                       startup_ms=1000, bitrate=2500.0),
        # Null start-up and bitrate, failed, no channel: the nullable columns.
        session_record(started=start, startup_ms=None, bitrate=None, failed=True, channel=None,
                       content_type=None),
        session_record(started=start, watch_s=600.0, rebuffer_s=0.0, startup_ms=2_147_483_647,
                       bitrate=0.0),
    ]
    records[0]["qos"]["video_height"] = 720
    records[2]["qos"]["video_height"] = 2160
    # Sent 2 hours behind the collector's clock: the times are corrected.
    received = datetime(2026, 11, 3, 23, 0, tzinfo=UTC)
    doc = batch("stb-rows", records, sent_at=received - timedelta(hours=2),
                box={"model": "M1", "firmware": "1.2", "region": "North"})
    shift = 2 * 3600 * 1_000_000
    rows = rows_from_batch(decode_batch(orjson.dumps(doc)), received)
    assert [i for i, _ in rows] == [0, 1, 2]
    for (_, row), rec in zip(rows, records, strict=True):
        q = rec["qos"]
        ratio = q["rebuffer_s"] / q["watch_s"]
        values = {"rebuffer_ratio": ratio, "avg_bitrate_kbps": q["avg_bitrate_kbps"],
                  "startup_ms": q["startup_ms"], "video_height": q.get("video_height")}
        metrics: dict[str, object] = {}
        for name, short in (("rebuffer_ratio", "rb"), ("avg_bitrate_kbps", "br"),
                            ("startup_ms", "su"), ("video_height", "vh")):
            v = values[name]
            fine, pos = fine_bin_pos(name, v)
            metrics.update({name: v, f"{short}_bucket": bucket_index(name, v),
                            f"{short}_fine": fine, f"{short}_pos": pos})
        want = SessionRow(
            id=rec["id"], box_id="stb-rows", received_us=_us(received),
            started_us=_us(start) + shift,
            ended_us=_us(start + timedelta(seconds=q["watch_s"])) + shift,
            channel=rec["channel"], content_type=rec["content_type"], watch_s=q["watch_s"],
            rebuffer_count=q["rebuffer_count"], rebuffer_s=q["rebuffer_s"],
            bitrate_switches=1, failed=q["failed"], model="M1", firmware="1.2",
            region="North", clock_shift_s=7200.0, raw=row.raw, **metrics)  # type: ignore[arg-type]
        assert row == want
        assert type(row) is SessionRow
        assert orjson.loads(row.raw)["id"] == rec["id"]
        assert math.isclose(row.rebuffer_ratio, ratio)
