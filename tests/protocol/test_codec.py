"""The codec's limits, gzip handling, time parsing, and round trips."""

from __future__ import annotations

import gzip
import random
import tracemalloc
import zlib
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from protocol import (
    MAX_BODY_BYTES,
    MAX_INFLATED_BYTES,
    Batch,
    BoxInfo,
    MalformedError,
    Qos,
    SessionRecord,
    SurveyRecord,
    TooLargeError,
    UnsupportedMediaTypeError,
    check_media_type,
    decode_batch,
    encode_batch,
    format_rfc3339,
    gzip_body,
    inflate,
    parse_rfc3339,
)

T0 = datetime(2026, 11, 22, 20, 0, tzinfo=UTC)


def _batch() -> Batch:
    s = SessionRecord(
        id="0193a5e0-7b1c-7000-8000-000000000001", kind="session", started_at=T0,
        ended_at=T0 + timedelta(seconds=1812.4), channel="NPO 1 ✓", content_type="vod",
        qos=Qos(startup_ms=None, watch_s=1812.4, rebuffer_count=0, rebuffer_s=0.0,
                avg_bitrate_kbps=None, bitrate_switches=0, failed=True),
    )
    v = SurveyRecord(
        id="0193a5e0-7b1c-7000-8000-000000000002", kind="survey", session_id=s.id,
        shown_at=T0 + timedelta(seconds=1813), answered_at=T0 + timedelta(seconds=1820, microseconds=5),
        outcome="answered", score=0, reason="buffering", locale="ru",
    )
    return Batch(box_id="stb-1", sent_at=T0 + timedelta(hours=1), records=(s, v),
                 box=BoxInfo(model="X-200", firmware=None, region="NL-NH"))


def test_box_encoding_round_trips_through_the_collector_decoder() -> None:
    batch = _batch()
    decoded = decode_batch(inflate(gzip_body(encode_batch(batch)), gzipped=True))
    assert tuple(a.record for a in decoded.accepted) == batch.records  # type: ignore[union-attr]
    assert decoded.envelope.box == batch.box
    assert decoded.envelope.sent_at == batch.sent_at


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-22T20:15:03.120Z", datetime(2026, 11, 22, 20, 15, 3, 120000, tzinfo=UTC)),
    ("2026-11-22t21:15:03+01:00", datetime(2026, 11, 22, 20, 15, 3, tzinfo=UTC)),
    ("2026-11-22T20:15:03.123456789-00:30", datetime(2026, 11, 22, 20, 45, 3, 123456, tzinfo=UTC)),
    ("2026-12-31T23:59:60Z", datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
])
def test_rfc3339_parsing_converts_to_utc(text: str, expected: datetime) -> None:
    assert parse_rfc3339(text) == expected


@pytest.mark.parametrize("text", ["2026-11-22", "2026-11-22T20:15:03", "20:15:03Z",
                                  "2026-13-01T00:00:00Z", "2026-11-22T20:15:03+25:00", "", "x"])
def test_rfc3339_rejects_what_is_not(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rfc3339(text)


def test_format_is_utc_with_z() -> None:
    assert format_rfc3339(datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC)) == "2026-01-02T03:04:05.120Z"
    assert format_rfc3339(datetime(2026, 1, 2, 3, 4, 5, 5, tzinfo=UTC)) == "2026-01-02T03:04:05.000005Z"


def test_media_types() -> None:
    assert check_media_type("application/json", None) is False
    assert check_media_type("application/json; charset=utf-8", "gzip") is True
    assert check_media_type("Application/JSON", "identity") is False
    for ctype, enc in [("text/plain", None), (None, None), ("application/json", "br"),
                       ("application/json", "deflate")]:
        with pytest.raises(UnsupportedMediaTypeError):
            check_media_type(ctype, enc)


def test_body_over_one_mib_as_sent_is_too_large() -> None:
    # The contract's figures written out: a wrong MAX_BODY_BYTES must fail here.
    assert MAX_BODY_BYTES == 1024 * 1024 and MAX_INFLATED_BYTES == 8 * 1024 * 1024
    with pytest.raises(TooLargeError):
        inflate(b" " * (1024 * 1024 + 1), gzipped=False)
    assert len(inflate(b" " * (1024 * 1024), gzipped=False)) == 1024 * 1024
    # Gzip too: the 1 MiB is counted as sent, before inflating (random bytes do not shrink).
    noise = gzip.compress(random.Random(3).randbytes(1024 * 1024))
    assert len(noise) > 1024 * 1024
    with pytest.raises(TooLargeError):
        inflate(noise, gzipped=True)


def test_gzip_bomb_is_refused_without_inflating_it() -> None:
    # 1 GiB of zeros compresses to about 1 MiB; use 200 MiB (about 200 KiB compressed).
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"\0" * (1 << 20)
    bomb = b"".join(comp.compress(chunk) for _ in range(200)) + comp.flush()
    assert len(bomb) < MAX_BODY_BYTES
    tracemalloc.start()
    try:
        with pytest.raises(TooLargeError):
            inflate(bomb, gzipped=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MAX_INFLATED_BYTES * 3, peak


def test_gzip_exactly_at_the_limit_is_accepted() -> None:
    body = b" " * (8 * 1024 * 1024)
    assert len(inflate(gzip.compress(body), gzipped=True)) == 8 * 1024 * 1024
    with pytest.raises(TooLargeError):
        inflate(gzip.compress(body + b" "), gzipped=True)


@pytest.mark.parametrize("body", [b"\x1f\x8b\x08garbage", gzip.compress(b"{}")[:-6], b"plain"])
def test_broken_gzip_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedError):
        inflate(body, gzipped=True)


def test_deep_nesting_is_malformed_not_a_crash() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(MalformedError):
        decode_batch(deep)
    doc = orjson.loads(encode_batch(_batch()))
    nested: object = 1
    for _ in range(200):
        nested = {"x": nested}
    doc["records"][0]["qos"]["extra"] = nested
    decoded = decode_batch(orjson.dumps(doc))
    assert len(decoded.accepted) == 2  # unknown fields are ignored, however deep


@pytest.mark.parametrize("body", [b"", b"not json", b"{", b"\xff\xfe", b"null", b"[]", b"\"x\"",
                                  b'{"protocol": 1e400}'])
def test_not_json_or_not_object_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedError):
        decode_batch(body)
