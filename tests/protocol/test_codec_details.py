"""What each whole-request error says, and the decoder's smaller promises: §3 asks for a
message naming the field at fault, record ids kept where usable, gzip and nothing else.
(Written where mutation testing found these unchecked.)"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from protocol import Accepted, BatchError, Rejected, decode_batch
from protocol.codec import check_media_type, decode_record, gzip_body, inflate
from tests.collector.conftest import batch, session_record, survey_record

ID = "0193a5e0-7b1c-7000-8000-0000000000aa"


def error_of(call: Callable[[], Any]) -> BatchError:
    with pytest.raises(BatchError) as info:
        call()
    return info.value


@pytest.mark.parametrize(("body", "field", "code"), [
    (b"{", "body", "malformed"),
    (b"[1]", "body", "malformed"),
    (orjson.dumps({"protocol": 1, "box_id": "b", "sent_at": "2026-01-01T00:00:00Z"}),
     "records", "malformed"),
    (orjson.dumps({"protocol": 1, "box_id": "b", "sent_at": "2026-01-01T00:00:00Z",
                   "records": {}}), "records", "malformed"),
    (orjson.dumps({"protocol": 1, "box_id": "b", "sent_at": "2026-01-01T00:00:00Z",
                   "records": []}), "records", "malformed"),
    (orjson.dumps({"protocol": 1, "box_id": "b b", "sent_at": "2026-01-01T00:00:00Z",
                   "records": [{}]}), "box_id", "malformed"),
    (orjson.dumps({"protocol": 2, "box_id": "b", "sent_at": "2026-01-01T00:00:00Z",
                   "records": [{}]}), "protocol", "unsupported_protocol"),
    (orjson.dumps(batch("b", [session_record()] * 501)), "records", "too_many_records"),
])
def test_whole_request_errors_name_the_field(body: bytes, field: str, code: str) -> None:
    err = error_of(lambda: decode_batch(body))
    assert err.code == code
    assert err.detail.startswith(f"{field}:"), err.detail
    assert len(err.detail) > len(field) + 5  # says what is wrong, not only where


def test_size_and_gzip_errors_name_the_body() -> None:
    for call in (lambda: inflate(b" " * (1024 * 1024 + 1), gzipped=False),
                 lambda: inflate(gzip.compress(b" " * (8 * 1024 * 1024 + 1)), gzipped=True),
                 lambda: inflate(gzip.compress(b"{}")[:-6], gzipped=True),
                 lambda: inflate(b"\x1f\x8b\x08garbage", gzipped=True)):
        err = error_of(call)
        assert err.detail.startswith("body") and len(err.detail) > 10, err.detail
    assert "1048576" in error_of(lambda: inflate(b" " * (1024 * 1024 + 1), gzipped=False)).detail
    assert error_of(lambda: inflate(gzip.compress(b"{}")[:-6], gzipped=True)).detail == \
        "body: gzip stream is truncated"


def test_zlib_is_not_gzip() -> None:
    # Content-Encoding: gzip means the gzip format, not a zlib or raw deflate stream.
    for body in (zlib.compress(b"{}"), zlib.compress(b"{}")[2:-4]):
        assert error_of(lambda body=body: inflate(body, gzipped=True)).code == "malformed"
    assert inflate(gzip.compress(b"{}"), gzipped=True) == b"{}"


def test_media_type_parameters_and_empty_encoding() -> None:
    assert check_media_type("application/json; charset=utf-8; foo=bar", None) is False
    assert check_media_type("Application/JSON", "") is False
    assert check_media_type("application/json", "Identity") is False
    assert check_media_type("application/json", "  ") is False  # a blank header: no encoding
    assert check_media_type("application/json", " GZIP ") is True
    missing = error_of(lambda: check_media_type(None, None))
    assert missing.status == 415 and missing.detail.startswith("Content-Type") \
        and "missing" in missing.detail
    wrong = error_of(lambda: check_media_type("text/plain", None))
    assert "text/plain" in wrong.detail
    enc = error_of(lambda: check_media_type("application/json", "br"))
    assert enc.detail.startswith("Content-Encoding") and "br" in enc.detail


def test_kind_errors_keep_the_id() -> None:
    no_kind = {k: v for k, v in session_record(id=ID).items() if k != "kind"}
    r = decode_record(no_kind, 3)
    assert r == Rejected(3, ID, "records[3].kind: is required")
    for bad in ("radio", ["session"], {"k": 1}, None):
        r = decode_record({**session_record(id=ID), "kind": bad}, 0)
        assert r == Rejected(0, ID, "records[0].kind: must be one of session, survey"), bad
    assert decode_record({"id": "not-a-uuid"}, 0) == \
        Rejected(0, None, "records[0].kind: is required")


def test_accepted_keeps_its_index_and_the_named_fields_as_sent() -> None:
    s = session_record(id=ID)
    sent = {**s, "unknown": 1}
    v = survey_record(session_id=ID)
    decoded = decode_batch(orjson.dumps(batch("b", [survey_record(score=11), sent, v])))
    a1, a2 = decoded.accepted
    assert isinstance(a1, Accepted) and (a1.index, a2.index) == (1, 2)
    assert a1.raw == s and a2.raw == v  # what was sent, less the fields the contract does not name


def test_fields_the_contract_does_not_name_are_dropped_at_every_depth() -> None:
    # Section 3: unnamed fields are ignored; kept, they would be unchecked text in the store.
    s = session_record(id=ID)
    sent = {**s, "qos": {**s["qos"], "viewer_name": "x" * 5000}, "extra": {"a": 1}}
    (a,) = decode_batch(orjson.dumps(batch("b", [sent]))).accepted
    assert a.raw == s and "viewer_name" not in a.raw["qos"]


def test_gzip_body_is_deterministic_level_6() -> None:
    body = orjson.dumps(batch("b", [session_record()]))
    out = gzip_body(body)
    assert gzip.decompress(out) == body
    # RFC 1952 header: MTIME (bytes 4-7) zero, so the same batch gzips to the same bytes;
    # XFL (byte 8) 0, neither the fastest (4) nor the slowest (2) level.
    assert out[4:8] == b"\0\0\0\0" and out[8] == 0
