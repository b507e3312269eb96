"""The decoder at every edge the contract draws (§3), one unit either side, with the
figures written out from the contract's words rather than taken from protocol.limits."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest

from protocol import Accepted, BatchError, Rejected, decode_batch
from tests.collector.conftest import batch, iso, session_record, survey_record


def one(record: dict[str, Any]) -> Accepted | Rejected:
    (r,) = decode_batch(orjson.dumps(batch("stb-1", [record]))).records
    return r


def rejected_at(record: dict[str, Any], path: str) -> None:
    r = one(record)
    assert isinstance(r, Rejected), record
    assert r.error.startswith(f"records[0].{path}:"), r.error


@pytest.mark.parametrize("field", ["startup_ms", "rebuffer_count", "bitrate_switches"])
def test_counts_up_to_two_to_the_31_minus_one_are_accepted(field: str) -> None:
    s = session_record()
    s["qos"][field] = 2**31 - 1
    r = one(s)
    assert isinstance(r, Accepted) and getattr(r.record.qos, field) == 2**31 - 1  # type: ignore[union-attr]
    s["qos"][field] = 0
    assert isinstance(one(s), Accepted)
    s["qos"][field] = -1
    rejected_at(s, f"qos.{field}")
    s["qos"][field] = 1.5
    rejected_at(s, f"qos.{field}")


@pytest.mark.parametrize("field", ["startup_ms", "rebuffer_count", "bitrate_switches"])
def test_counts_of_two_to_the_31_are_rejected(field: str) -> None:
    """§3 "below 2^31". Passes once the lead's "< 2^31" rule is merged into main."""
    s = session_record()
    s["qos"][field] = 2**31
    rejected_at(s, f"qos.{field}")


def test_numbers_are_never_negative() -> None:
    for field in ("watch_s", "rebuffer_s", "avg_bitrate_kbps"):
        s = session_record()
        s["qos"][field] = 0
        assert isinstance(one(s), Accepted), field
        s["qos"][field] = -1e-9
        rejected_at(s, f"qos.{field}")


def test_ended_at_not_before_started_at() -> None:
    s = session_record(watch_s=0.0)
    assert s["ended_at"] == s["started_at"] and isinstance(one(s), Accepted)
    s = session_record(watch_s=1.0)
    start = datetime.fromisoformat(s["started_at"].replace("Z", "+00:00"))
    s["ended_at"] = iso(start - timedelta(milliseconds=1))
    rejected_at(s, "ended_at")


def test_score_from_0_to_10() -> None:
    for score in (0, 10):
        r = one(survey_record(score=score))
        assert isinstance(r, Accepted) and r.record.score == score  # type: ignore[union-attr]
    for score in (-1, 11):
        rejected_at(survey_record(score=score), "score")


@pytest.mark.parametrize(("n", "ok"), [(1, True), (500, True), (501, False), (0, False)])
def test_one_to_500_records(n: int, ok: bool) -> None:
    body = orjson.dumps(batch("stb-1", [session_record() for _ in range(n)]))
    if ok:
        assert len(decode_batch(body).accepted) == n
    else:
        with pytest.raises(BatchError) as info:
            decode_batch(body)
        assert info.value.code == ("too_many_records" if n else "malformed")
        assert info.value.status == 400


@pytest.mark.parametrize(("box_id", "ok"), [
    ("a", True), ("x" * 64, True), ("x" * 65, False), ("", False),
    ("A-Z.a_z:0-9", True), ("stb 1", False), ("stb/1", False), ("stbé", False),
])
def test_box_id_is_1_to_64_of_the_set(box_id: str, ok: bool) -> None:
    body = orjson.dumps(batch(box_id, [session_record()]))
    if ok:
        assert decode_batch(body).envelope.box_id == box_id
    else:
        with pytest.raises(BatchError) as info:
            decode_batch(body)
        assert (info.value.code, info.value.status) == ("malformed", 400)
        assert "box_id" in info.value.detail
