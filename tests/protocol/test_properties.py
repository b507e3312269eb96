"""Property tests: the decoder never crashes, never accepts what breaks the contract, and
always accepts what keeps it."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import (
    CONTENT_TYPES,
    OUTCOMES,
    REASONS,
    Accepted,
    Batch,
    BatchError,
    BoxInfo,
    Rejected,
    SessionRecord,
    SurveyRecord,
    batch_schema,
    decode_batch,
    encode_batch,
    encode_batch_bodies,
    format_rfc3339,
    inflate,
    record_to_json,
)
from protocol.limits import MAX_COUNT, MAX_INFLATED_BYTES, MAX_NUMBER

UUIDS = st.uuids().map(str)
TIMES = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                     timezones=st.just(UTC))
NUM = st.floats(min_value=0, max_value=1e9, allow_nan=False) | st.integers(0, 10**9)
COUNT = st.integers(0, 10**6) | st.integers(0, 2**31 - 1)
#: Text a contract string may hold: anything but U+0000.
TEXT = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
               max_size=50)


@st.composite
def valid_session(draw: st.DrawFn) -> dict[str, Any]:
    start = draw(TIMES)
    return {
        "id": draw(UUIDS), "kind": "session", "started_at": format_rfc3339(start),
        "ended_at": format_rfc3339(start + timedelta(seconds=draw(st.integers(0, 10**6)))),
        "channel": draw(st.none() | TEXT),
        "content_type": draw(st.sampled_from([*CONTENT_TYPES, None])),
        "qos": {"startup_ms": draw(st.none() | COUNT), "watch_s": draw(NUM),
                "rebuffer_count": draw(COUNT), "rebuffer_s": draw(NUM),
                "avg_bitrate_kbps": draw(st.none() | NUM), "bitrate_switches": draw(COUNT),
                "failed": draw(st.booleans())},
    }


@st.composite
def valid_survey(draw: st.DrawFn) -> dict[str, Any]:
    outcome = draw(st.sampled_from(OUTCOMES))
    shown = draw(TIMES)
    rec: dict[str, Any] = {"id": draw(UUIDS), "kind": "survey",
                           "session_id": draw(st.none() | UUIDS),
                           "shown_at": format_rfc3339(shown), "outcome": outcome}
    if outcome == "answered":
        rec["score"] = draw(st.integers(0, 10))
        rec["answered_at"] = format_rfc3339(shown + timedelta(seconds=draw(st.integers(0, 120))))
        rec["reason"] = draw(st.sampled_from([*REASONS, None]))
    return rec


JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
JSON = st.recursive(JSON_SCALARS, lambda c: st.lists(c, max_size=4)
                    | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=20)


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """A valid record with one field (possibly nested) replaced, removed, or added."""
    rec = draw(valid_session() | valid_survey())
    target = rec["qos"] if rec["kind"] == "session" and draw(st.booleans()) else rec
    key = draw(st.sampled_from(sorted(target)) | st.text(max_size=8))
    action = draw(st.sampled_from(["replace", "delete"]))
    if action == "delete":
        target.pop(key, None)
    else:
        target[key] = draw(JSON)
    return rec


def envelope(records: list[Any]) -> bytes:
    return orjson.dumps({"protocol": 1, "box_id": "stb-prop", "sent_at": "2026-11-22T20:00:00Z",
                         "records": records})


def _check_invariants(rec: SessionRecord | SurveyRecord) -> None:
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", rec.id)
    if isinstance(rec, SessionRecord):
        q = rec.qos
        assert rec.ended_at >= rec.started_at
        for v in (q.watch_s, q.rebuffer_s):
            assert isinstance(v, float) and math.isfinite(v) and 0 <= v <= MAX_NUMBER
        for c in (q.rebuffer_count, q.bitrate_switches):
            assert type(c) is int and 0 <= c <= MAX_COUNT
        assert q.startup_ms is None or (type(q.startup_ms) is int and 0 <= q.startup_ms <= MAX_COUNT)
        assert q.avg_bitrate_kbps is None or q.avg_bitrate_kbps >= 0
        assert type(q.failed) is bool
        assert rec.content_type in (*CONTENT_TYPES, None)
        assert rec.channel is None or (isinstance(rec.channel, str) and "\x00" not in rec.channel)
    else:
        assert rec.outcome in OUTCOMES
        if rec.outcome == "answered":
            assert type(rec.score) is int and 0 <= rec.score <= 10
            assert rec.answered_at is not None
        else:
            assert rec.score is None and rec.answered_at is None and rec.reason is None
        assert rec.reason in (*REASONS, None)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(valid_session() | valid_survey(), min_size=1, max_size=20))
def test_valid_records_are_always_accepted_and_round_trip(records: list[dict[str, Any]]) -> None:
    decoded = decode_batch(envelope(records))
    assert all(isinstance(r, Accepted) for r in decoded.records)
    for acc in decoded.accepted:
        again = decode_batch(envelope([record_to_json(acc.record)])).accepted[0].record
        assert again == acc.record


BOXES = st.none() | st.builds(
    BoxInfo, model=st.none() | st.text(max_size=30), firmware=st.none() | st.text(max_size=30),
    region=st.none() | st.text(max_size=30))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(valid_session() | valid_survey(), max_size=20), TIMES, BOXES,
       st.from_regex(r"[A-Za-z0-9._:\-]{1,64}", fullmatch=True))
def test_spliced_batch_is_byte_identical_to_encode_batch(
    records: list[dict[str, Any]], sent_at: datetime, box: BoxInfo | None, box_id: str
) -> None:
    decoded = tuple(a.record for a in decode_batch(envelope(records or [{}])).accepted)
    bodies = [orjson.dumps(record_to_json(r)) for r in decoded]  # as the box stores them
    batch = Batch(box_id=box_id, sent_at=sent_at, records=decoded, box=box)
    assert encode_batch_bodies(box_id, sent_at, box, bodies) == encode_batch(batch)


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated() | JSON, min_size=1, max_size=10))
def test_decoder_never_crashes_and_accepts_only_valid_records(records: list[Any]) -> None:
    decoded = decode_batch(envelope(records))
    assert len(decoded.records) == len(records)
    for r in decoded.records:
        if isinstance(r, Accepted):
            _check_invariants(r.record)
        else:
            assert isinstance(r, Rejected) and r.error.startswith(f"records[{r.index}]")


@settings(max_examples=300)
@given(st.binary(max_size=200) | JSON.map(orjson.dumps))
def test_arbitrary_bodies_raise_only_batch_errors(body: bytes) -> None:
    try:
        decode_batch(body)
    except BatchError as exc:
        assert exc.status in (400, 413) and exc.detail


# -- an independent oracle: the JSON Schema (tests/reliability, issue 8) ----------------------

def _record_validator() -> Any:
    import jsonschema

    schema = batch_schema()
    record = {"$defs": schema["$defs"], "oneOf": schema["properties"]["records"]["items"]["oneOf"]}
    return jsonschema.Draft202012Validator(record, format_checker=jsonschema.FormatChecker())


RECORD_SCHEMA = _record_validator()


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated() | valid_session() | valid_survey() | JSON, min_size=1, max_size=8))
def test_no_record_the_schema_refuses_is_ever_accepted(records: list[Any]) -> None:
    """Differential: the decoder against the published JSON Schema. Every record the
    decoder accepts must validate (the schema cannot say everything the decoder checks,
    ``ended_at >= started_at`` for one, so the converse is not required)."""
    for r in decode_batch(envelope(records)).records:
        if isinstance(r, Accepted):
            errors = list(RECORD_SCHEMA.iter_errors(records[r.index]))
            assert not errors, (records[r.index], errors[0].message)


@settings(max_examples=500)
@given(st.binary(max_size=300), st.booleans())
def test_inflate_of_arbitrary_bytes_raises_only_batch_errors(body: bytes, gzipped: bool) -> None:
    import gzip

    for data in (body, gzip.compress(body)[: max(1, len(body))]):
        try:
            out = inflate(data, gzipped=gzipped)
        except BatchError as exc:
            assert exc.status in (400, 413) and exc.detail
        else:
            assert len(out) <= MAX_INFLATED_BYTES


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["protocol", "box_id", "sent_at", "box", "records", "x"]),
                       JSON, max_size=6),
       st.lists(valid_session() | valid_survey(), min_size=1, max_size=3))
def test_hostile_envelopes_raise_only_batch_errors(fields: dict[str, Any],
                                                   records: list[Any]) -> None:
    doc: dict[str, Any] = {"protocol": 1, "box_id": "stb-prop",
                           "sent_at": "2026-11-22T20:00:00Z", "records": records}
    doc.update(fields)
    try:
        decoded = decode_batch(orjson.dumps(doc))
    except BatchError as exc:
        assert exc.status == 400 and exc.detail
        return
    env = decoded.envelope
    assert env.protocol == 1 and re.fullmatch(r"[A-Za-z0-9._:\-]{1,64}", env.box_id)
    assert isinstance(doc["records"], list) and 1 <= len(doc["records"]) <= 500
    for r in decoded.accepted:
        _check_invariants(r.record)
