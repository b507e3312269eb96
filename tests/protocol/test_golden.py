"""The decoder against the golden vectors, and the schema generated from the types."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from protocol import Accepted, BatchError, Rejected, batch_schema, decode_batch
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
