"""The decoder against the golden vectors, and the schema generated from the types."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import pytest

from protocol import (
    Accepted,
    Batch,
    BatchError,
    BoxInfo,
    Rejected,
    batch_schema,
    decode_batch,
    encode_batch,
    encode_batch_bodies,
    record_to_json,
)
from tests.golden import vectors


def _when(text: str) -> datetime:
    """RFC 3339 read by the standard library, not by the decoder under test."""
    return datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))


def _expected_fields(rec: dict[str, Any]) -> dict[str, Any]:
    """What the contract says a valid record means, from its JSON: the named fields only
    (others ignored), ids compared case-blind (UUIDs), times as instants, optional fields
    absent as null, numbers as numbers (1800 and 1800.0 alike)."""
    out: dict[str, Any] = {"id": rec["id"].lower(), "kind": rec["kind"]}
    if rec["kind"] == "session":
        out |= {"started_at": _when(rec["started_at"]), "ended_at": _when(rec["ended_at"]),
                "channel": rec["channel"], "content_type": rec["content_type"],
                "qos": {k: rec["qos"][k] for k in ("startup_ms", "watch_s", "rebuffer_count",
                                                   "rebuffer_s", "avg_bitrate_kbps",
                                                   "bitrate_switches", "failed")}}
    else:
        answered = rec.get("answered_at")
        out |= {"session_id": rec["session_id"] and rec["session_id"].lower(),
                "shown_at": _when(rec["shown_at"]),
                "answered_at": _when(answered) if answered else None,
                "outcome": rec["outcome"], "score": rec.get("score"),
                "reason": rec.get("reason"), "locale": rec.get("locale")}
    return out


def _decoded_fields(r: Any) -> dict[str, Any]:
    out = {f: getattr(r, f) for f in _FIELDS[r.kind]}
    if r.kind == "session":
        out["qos"] = {f: getattr(r.qos, f) for f in _FIELDS["qos"]}
    return out


_FIELDS = {
    "session": ("id", "kind", "started_at", "ended_at", "channel", "content_type"),
    "survey": ("id", "kind", "session_id", "shown_at", "answered_at", "outcome", "score",
               "reason", "locale"),
    "qos": ("startup_ms", "watch_s", "rebuffer_count", "rebuffer_s", "avg_bitrate_kbps",
            "bitrate_switches", "failed"),
}


@pytest.mark.parametrize(("name", "vector"), vectors("valid"))
def test_valid_vectors_decode(name: str, vector: dict[str, Any]) -> None:
    doc = vector["batch"]
    decoded = decode_batch(orjson.dumps(doc))
    assert [type(r) for r in decoded.records] == [Accepted] * vector["expect"]["accepted"]
    assert len(doc["records"]) == vector["expect"]["accepted"]
    # Every field of every record decodes to what the vector says, not merely "accepted".
    for sent, got in zip(doc["records"], decoded.accepted, strict=True):
        fields = _decoded_fields(got.record)
        want = _expected_fields(sent)
        assert fields == want, name
        for key in ("startup_ms", "rebuffer_count", "bitrate_switches"):
            if key in fields.get("qos", {}):
                assert type(fields["qos"][key]) in (int, type(None)), key  # JSON integers
    env = decoded.envelope
    assert (env.box_id, env.sent_at) == (doc["box_id"], _when(doc["sent_at"]))
    box = doc.get("box")
    assert (None if env.box is None else (env.box.model, env.box.firmware, env.box.region)) == \
        (None if box is None else (box.get("model"), box.get("firmware"), box.get("region")))


@pytest.mark.parametrize(("name", "vector"), vectors("invalid_record"))
def test_invalid_records_are_rejected_naming_the_field(name: str, vector: dict[str, Any]) -> None:
    decoded = decode_batch(orjson.dumps(vector["batch"]))
    rejected = decoded.rejected
    expected = vector["expect"]["rejected"]
    assert [r.index for r in rejected] == [e["index"] for e in expected]
    for r, e in zip(rejected, expected, strict=True):
        assert r.error.startswith(e["path"] + ":"), r.error
    assert len(decoded.accepted) == vector["expect"]["accepted"]


@pytest.mark.parametrize(("name", "vector"), vectors("invalid_batch"))
def test_invalid_batches_are_refused(name: str, vector: dict[str, Any]) -> None:
    with pytest.raises(BatchError) as info:
        decode_batch(orjson.dumps(vector["batch"]))
    assert info.value.code == vector["expect"]["error"]
    assert info.value.status == vector["expect"]["status"]


def test_rejection_keeps_a_usable_id_and_nulls_an_unusable_one() -> None:
    (_, v), = [x for x in vectors("invalid_record") if x[0] == "negative_rebuffer"]
    r = decode_batch(orjson.dumps(v["batch"])).records[0]
    assert isinstance(r, Rejected) and r.id == v["batch"]["records"][0]["id"]
    (_, v), = [x for x in vectors("invalid_record") if x[0] == "bad_id"]
    r = decode_batch(orjson.dumps(v["batch"])).records[0]
    assert isinstance(r, Rejected) and r.id is None


def test_error_message_names_the_full_path() -> None:
    (_, v), = [x for x in vectors("invalid_record") if x[0] == "negative_rebuffer"]
    v["batch"]["records"] = [v["batch"]["records"][1]] * 3 + v["batch"]["records"]
    r = decode_batch(orjson.dumps(v["batch"])).rejected[0]
    assert r.error == "records[3].qos.rebuffer_s: must be >= 0"




def test_schema_accepts_valid_vectors_and_rejects_typed_faults() -> None:
    import jsonschema

    schema = batch_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    for name, v in vectors("valid"):
        errors = list(validator.iter_errors(v["batch"]))
        assert not errors, (name, errors[0].message if errors else None)
    # Rules across fields (ended_at after started_at, score only when answered) are the
    # decoder's, and so is "a JSON integer": JSON Schema's integer admits 2.0. Every other
    # fault of one field's type or range is in the schema too.
    cross_field = {"ended_before_started", "answered_without_score", "answered_without_answered_at",
                   "dismissed_with_score", "impossible_date", "float_count", "score_float"}
    for name, v in vectors("invalid_record"):
        if name in cross_field:
            continue
        doc = dict(v["batch"], records=[v["batch"]["records"][0]])
        assert list(validator.iter_errors(doc)), f"schema accepts invalid vector {name}"


@pytest.mark.parametrize(("name", "vector"), vectors("valid"))
def test_spliced_bodies_are_byte_identical_to_encode_batch(name: str, vector: dict[str, Any]) -> None:
    """The box splices its stored record JSON into the envelope (encode_batch_bodies):
    for every golden batch that is byte for byte what encode_batch writes."""
    decoded = decode_batch(orjson.dumps(vector["batch"]))
    records = tuple(a.record for a in decoded.accepted)
    env = decoded.envelope
    # As the box's buffer stores each record.
    bodies = [orjson.dumps(record_to_json(r)) for r in records]
    for box in (env.box, None, BoxInfo(model="X-200", firmware=None, region="NL-NH")):
        batch = Batch(box_id=env.box_id, sent_at=env.sent_at, records=records, box=box)
        spliced = encode_batch_bodies(env.box_id, env.sent_at, box, bodies)
        assert spliced == encode_batch(batch)
        again = decode_batch(spliced)
        assert tuple(a.record for a in again.accepted) == records
        assert again.envelope.box == box
