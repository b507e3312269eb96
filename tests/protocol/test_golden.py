"""The decoder against the golden vectors, and the schema generated from the types."""

from __future__ import annotations

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


@pytest.mark.parametrize(("name", "vector"), vectors("valid"))
def test_valid_vectors_decode(name: str, vector: dict[str, Any]) -> None:
    decoded = decode_batch(orjson.dumps(vector["batch"]))
    assert [type(r) for r in decoded.records] == [Accepted] * vector["expect"]["accepted"]


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
