"""protocol/spec.py's decoders, encoder and JSON Schema, field kind by field kind, at every
edge the contract (section 3) draws, against outcomes written out here.

The wire types below are declared inside the tests, so that everything derived from a
declaration (the field list, the generated fast decoder, the schema) is built while the
test runs, never taken from a cache filled at import. Each edge is decoded three ways:
by the generated fast decoder, by the reference decoder it falls back to, and by the
public :func:`protocol.spec.decode_object`; all three must give the outcome written out.
The contract's figures: counts are JSON integers below 2^31, numbers never negative,
strings never hold U+0000; the collector's own bounds (protocol/limits.py: 1,024
characters, 1e15, integers exact up to 2^53 - 1) are written out too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import jsonschema
import pytest

import protocol.spec as spec
from protocol import FieldError, SessionRecord, SurveyRecord
from protocol.spec import Spec, decode_object, encode_object, json_schema_of, wire, wire_fields
from tests.golden import vectors

TWO_31 = 2_147_483_648
MAX_NUMBER = 1_000_000_000_000_000  # 1e15
MAX_EXACT = 9_007_199_254_740_991  # 2^53 - 1
UUID_UPPER = "0193A5B2-7C4D-7E8F-9A0B-1C2D3E4F5A6B"


def declare() -> tuple[type[Any], type[Any]]:
    """Fresh wire types, one field of each kind and option (a new class each call)."""

    @dataclass(frozen=True, slots=True, kw_only=True)
    class Inner:
        """An inner   object."""

        tag: str | None = wire("string", "A tag.", optional=True, max_length=4)

    @dataclass(frozen=True, slots=True, kw_only=True)
    class Outer:
        """A test type:
        two lines."""

        kind: str = wire("string", "The kind.", const="outer")
        count: int = wire("integer", "A count.", minimum=0)
        score: int | None = wire("integer", "A score.", nullable=True, minimum=0, maximum=10)
        ratio: float = wire("number", "A number.", minimum=0)
        offset: float = wire("number", "Any number.", maximum=1e300)
        level: float | None = wire("number", "A level.", optional=True, minimum=0.5, maximum=2.5)
        flag: bool = wire("boolean", "A flag.")
        name: str | None = wire("string", "A name.", nullable=True)
        colour: str | None = wire("string", "A colour.", optional=True, enum=("red", "blue"))
        shade: str = wire("string", "A shade.", enum=("dark", "light"))
        code: str = wire("string", "A code.", pattern=r"^[a-z]{1,3}$")
        at: datetime = wire("time", "An instant.")
        ref: str = wire("uuid", "An id.")
        inner: Inner | None = wire("object", "Inner.", of=Inner, optional=True)

        @classmethod
        def _check(cls, values: Mapping[str, Any], path: str) -> None:
            if values["name"] == values["code"]:
                raise FieldError(f"{path}.name" if path else "name", "must differ from code")

    return Outer, Inner


def valid() -> dict[str, Any]:
    return {"kind": "outer", "count": 7, "score": None, "ratio": 0, "offset": -3,
            "flag": False, "name": None, "shade": "dark", "code": "ab", "at": "2026-11-22T20:15:03.120Z",
            "ref": UUID_UPPER, "unknown": {"ignored": True}}


Decoder = Callable[[Any, str], Any]


def _fast(cls: type[Any]) -> Decoder:
    return spec._generate_decoder(cls)


def _reference(cls: type[Any]) -> Decoder:
    return partial(spec._decode_object_checked, cls)


def _public(cls: type[Any]) -> Decoder:
    return partial(decode_object, cls)


DECODERS = {"fast": _fast, "reference": _reference, "public": _public}


@pytest.fixture(params=list(DECODERS))
def decode(request: pytest.FixtureRequest) -> Decoder:
    outer, _ = declare()
    return DECODERS[request.param](outer)


@pytest.mark.parametrize("how", list(DECODERS))
def test_a_type_without_a_cross_field_check(how: str) -> None:
    _, inner = declare()
    assert DECODERS[how](inner)({"tag": "ab"}, "").tag == "ab"


def error_of(decode: Decoder, obj: Any, path: str = "records[3]") -> str:
    with pytest.raises(FieldError) as info:
        decode(obj, path)
    assert str(info.value) == (f"{info.value.path}: {info.value.message}" if info.value.path
                               else info.value.message)
    return str(info.value)


def test_a_valid_object_decodes_to_what_it_says(decode: Decoder) -> None:
    got = decode(valid(), "records[3]")
    assert (got.kind, got.count, got.score, got.flag, got.name, got.code) == (
        "outer", 7, None, False, None, "ab")
    assert got.ratio == 0.0 and type(got.ratio) is float
    assert got.offset == -3.0 and type(got.offset) is float
    assert got.at == datetime(2026, 11, 22, 20, 15, 3, 120_000, tzinfo=UTC)
    assert got.ref == UUID_UPPER.lower()
    # Left out: optional fields read as null.
    assert got.level is None and got.colour is None and got.inner is None
    full = valid() | {"score": 10, "level": 2.5, "colour": "blue", "name": "x" * 1024,
                      "inner": {"tag": "abcd"}, "flag": True}
    got = decode(full, "")
    assert (got.score, got.level, got.colour, got.name, got.inner.tag) == (
        10, 2.5, "blue", "x" * 1024, "abcd")
    assert decode(valid() | {"inner": {}}, "").inner.tag is None
    assert decode(valid() | {"inner": None, "colour": None, "level": None}, "").inner is None


# (field, value, expected error message at records[3].<field>, or None when accepted)
EDGES: list[tuple[str, Any, str | None]] = [
    ("count", 0, None),
    ("count", TWO_31 - 1, None),
    ("count", TWO_31, "must be <= 2147483647"),
    ("count", -1, "must be >= 0"),
    ("count", True, "must be an integer, not a boolean"),
    ("count", 1.0, "must be an integer, not a number"),
    ("count", "1", "must be an integer, not a string"),
    ("count", [1], "must be an integer, not an array"),
    ("count", {"n": 1}, "must be an integer, not an object"),
    ("count", (1,), "must be an integer, not tuple"),
    ("count", None, "must not be null"),
    ("score", 10, None),
    ("score", 11, "must be <= 10"),
    ("score", -1, "must be >= 0"),
    ("ratio", 1e15, None),
    ("ratio", MAX_NUMBER, None),
    ("ratio", 1.0000000000000002e15, "must be <= 1000000000000000"),
    ("ratio", MAX_NUMBER + 1, "must be <= 1000000000000000"),
    ("ratio", -1e-9, "must be >= 0"),
    ("ratio", float("inf"), "must be a finite number"),
    ("ratio", float("nan"), "must be a finite number"),
    ("ratio", False, "must be a number, not a boolean"),
    ("ratio", "1", "must be a number, not a string"),
    ("offset", MAX_EXACT, None),
    ("offset", -MAX_EXACT, None),
    ("offset", MAX_EXACT + 1, "must be a finite number"),
    ("offset", -MAX_EXACT - 1, "must be a finite number"),
    ("offset", -1e300, None),
    ("offset", 1e300, None),
    ("offset", 1e301, "must be <= 1e+300"),
    ("level", 0.5, None),
    ("level", 0.49, "must be >= 0.5"),
    ("level", 2.51, "must be <= 2.5"),
    ("flag", True, None),
    ("flag", 1, "must be true or false, not an integer"),
    ("flag", None, "must not be null"),
    ("name", "", None),
    ("name", "x" * 1025, "must be at most 1024 characters"),
    ("name", "a\x00b", "must not contain U+0000"),
    ("name", 5, "must be a string, not an integer"),
    ("kind", "Outer", "must be 'outer'"),
    ("kind", None, "must not be null"),
    ("colour", "red", None),
    ("colour", "green", "must be one of red, blue"),
    ("colour", "dark", "must be one of red, blue"),
    ("shade", "light", None),
    ("shade", "red", "must be one of dark, light"),
    ("code", "abc", None),
    ("code", "abcd", "must match ^[a-z]{1,3}$"),
    ("code", "ab\x00", "must not contain U+0000"),
    ("at", "2026-11-22T20:15:03Z", None),
    ("at", 5, "must be a string, not an integer"),
    ("ref", "0193a5b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b", None),
    ("ref", "0193a5b27c4d7e8f9a0b1c2d3e4f5a6b", "must be a UUID in the 8-4-4-4-12 form"),
    ("ref", UUID_UPPER + "0", "must be a UUID in the 8-4-4-4-12 form"),
    ("inner", "x", "must be an object, not a string"),
]


@pytest.mark.parametrize(("field", "value", "message"), EDGES)
def test_each_edge(decode: Decoder, field: str, value: Any, message: str | None) -> None:
    obj = valid() | {field: value}
    if message is None:
        got = getattr(decode(obj, "records[3]"), field)
        if field == "ref":
            assert got == value.lower()
        elif field != "at":
            assert (got == value and type(got) is type(value)) or float(value) == got
    else:
        assert error_of(decode, obj) == f"records[3].{field}: {message}"


def test_numbers_written_as_integers_are_doubles(decode: Decoder) -> None:
    got = decode(valid() | {"ratio": 5, "offset": MAX_EXACT, "level": 2}, "")
    assert (got.ratio, got.offset, got.level) == (5.0, 9007199254740991.0, 2.0)
    assert all(type(v) is float for v in (got.ratio, got.offset, got.level))


def test_a_time_that_is_no_date_names_what_is_wrong(decode: Decoder) -> None:
    msg = error_of(decode, valid() | {"at": "2026-13-01T00:00:00Z"})
    assert msg.startswith("records[3].at: not a valid date-time"), msg
    msg = error_of(decode, valid() | {"at": "2026-11-22"})
    assert msg.startswith("records[3].at: "), msg


def test_paths_and_missing_fields(decode: Decoder) -> None:
    obj = valid()
    del obj["count"]
    assert error_of(decode, obj) == "records[3].count: is required"
    assert error_of(decode, obj, "") == "count: is required"
    assert error_of(decode, valid() | {"inner": {"tag": "abcde"}}) == (
        "records[3].inner.tag: must be at most 4 characters")
    assert error_of(decode, valid() | {"inner": {"tag": "abcde"}}, "") == (
        "inner.tag: must be at most 4 characters")
    assert error_of(decode, valid() | {"count": -1}, "") == "count: must be >= 0"
    for not_object, word in (([], "an array"), (None, "null"), ("x", "a string"), (1.5, "a number")):
        assert error_of(decode, not_object) == f"records[3]: must be an object, not {word}"


def test_the_types_own_check_runs_after_the_fields(decode: Decoder) -> None:
    assert error_of(decode, valid() | {"name": "ab"}) == "records[3].name: must differ from code"
    assert error_of(decode, valid() | {"name": "ab"}, "") == "name: must differ from code"
    # A field error comes first.
    assert error_of(decode, valid() | {"name": "ab", "count": -1}) == "records[3].count: must be >= 0"


def test_the_fast_path_takes_every_valid_edge_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """The generated decoder hands nothing valid to the reference one (it would cost the
    fleet's ingest three times as much), and everything invalid."""
    outer, _ = declare()
    calls: list[Any] = []
    reference = spec._decode_object_checked

    def counted(cls: type[Any], obj: Any, path: str) -> Any:
        calls.append(obj)
        return reference(cls, obj, path)

    monkeypatch.setattr(spec, "_decode_object_checked", counted)
    fast = spec._generate_decoder(outer)
    for field, value, message in EDGES:
        obj = valid() | {field: value}
        if message is None:
            fast(obj, "")
            assert not calls, (field, value)
        else:
            with pytest.raises(FieldError):
                fast(obj, "")
            # The object (or, for a nested one, the inner value) went to the reference.
            assert calls == [value if field == "inner" else obj], (field, value)
            calls.clear()
    fast(valid() | {"inner": {"tag": "abcd"}, "level": 1, "colour": "red", "score": 0}, "")
    assert not calls


def test_fields_are_listed_once_in_order_with_their_specs() -> None:
    outer, inner = declare()
    names = [f.name for f in dataclasses.fields(outer)]
    got = wire_fields(outer)
    assert [n for n, _ in got] == names and wire_fields(outer) is got
    assert got[1] == ("count", Spec("integer", "A count.", minimum=0))
    assert wire_fields(inner) == (("tag", Spec("string", "A tag.", optional=True, max_length=4)),)
    assert spec.spec_of(dataclasses.fields(outer)[0]) == Spec("string", "The kind.", const="outer")
    # Optional fields default to None; the others have no default.
    defaults = {f.name: f.default for f in dataclasses.fields(outer)}
    assert defaults["level"] is None and defaults["inner"] is None
    assert defaults["count"] is dataclasses.MISSING
    assert outer(kind="outer", count=1, score=None, ratio=0.0, offset=0.0, flag=False, name=None,
                 shade="dark", code="a", at=datetime(2026, 1, 1, tzinfo=UTC), ref="x").colour is None
    # The public decoder builds a type's decoder once.
    assert spec._fast_decoder(outer) is spec._fast_decoder(outer)
    assert decode_object(outer, valid(), "").count == 7


def test_encode_is_the_json_form() -> None:
    outer, _ = declare()
    got = decode_object(outer, valid() | {"score": 3, "inner": {"tag": "a"}}, "")
    assert encode_object(got) == {
        "kind": "outer", "count": 7, "score": 3, "ratio": 0.0, "offset": -3.0, "flag": False,
        "name": None, "shade": "dark", "code": "ab", "at": "2026-11-22T20:15:03.120Z",
        "ref": UUID_UPPER.lower(), "inner": {"tag": "a"}}
    # Null optional fields are left out, null required ones kept as null.
    got = decode_object(outer, valid() | {"inner": {}}, "")
    assert encode_object(got) == {
        "kind": "outer", "count": 7, "score": None, "ratio": 0.0, "offset": -3.0, "flag": False,
        "name": None, "shade": "dark", "code": "ab", "at": "2026-11-22T20:15:03.120Z",
        "ref": UUID_UPPER.lower(), "inner": {}}


def _nullable(s: dict[str, Any]) -> dict[str, Any]:
    return s | {"type": [s["type"], "null"]}


def test_json_schema_is_the_declaration() -> None:
    outer, _ = declare()
    inner_schema = {"type": "object", "required": [], "description": "An inner object.",
                    "properties": {"tag": {"type": ["string", "null"], "pattern": "^[^\\u0000]*$",
                                           "maxLength": 4, "description": "A tag."}}}
    expected = {
        "type": "object",
        "description": "A test type: two lines.",
        "required": ["kind", "count", "score", "ratio", "offset", "flag", "name", "shade",
                     "code", "at", "ref"],
        "properties": {
            "kind": {"type": "string", "const": "outer", "description": "The kind."},
            "count": {"type": "integer", "minimum": 0, "maximum": TWO_31 - 1,
                      "description": "A count."},
            "score": {"type": ["integer", "null"], "minimum": 0, "maximum": 10,
                      "description": "A score."},
            "ratio": {"type": "number", "minimum": 0, "maximum": 1e15, "description": "A number."},
            "offset": {"type": "number", "maximum": 1e300, "description": "Any number."},
            "level": {"type": ["number", "null"], "minimum": 0.5, "maximum": 2.5,
                      "description": "A level."},
            "flag": {"type": "boolean", "description": "A flag."},
            "name": {"type": ["string", "null"], "pattern": "^[^\\u0000]*$", "maxLength": 1024,
                     "description": "A name."},
            "colour": {"type": ["string", "null"], "enum": ["red", "blue", None],
                       "description": "A colour."},
            "shade": {"type": "string", "enum": ["dark", "light"], "description": "A shade."},
            "code": {"type": "string", "pattern": "^[a-z]{1,3}$", "maxLength": 1024,
                     "description": "A code."},
            "at": {"type": "string", "format": "date-time", "pattern": spec.RFC3339_PATTERN,
                   "description": "An instant."},
            "ref": {"type": "string", "pattern": spec.UUID_PATTERN.pattern,
                    "description": "An id."},
            "inner": {"anyOf": [inner_schema, {"type": "null"}], "description": "Inner."},
        },
    }
    got = json_schema_of(outer)
    assert got == expected
    assert list(got["properties"]) == list(expected["properties"])


def test_schema_and_decoder_agree_at_every_edge() -> None:
    outer, _ = declare()
    validator = jsonschema.Draft202012Validator(json_schema_of(outer))
    for field, value, message in EDGES:
        if isinstance(value, tuple) or value != value or value in (float("inf"),):
            continue  # not JSON
        if field in ("count", "ratio", "offset") and type(value) is int and abs(value) > MAX_EXACT:
            continue  # the schema has no "exact as a double" rule
        if field == "count" and type(value) is float:
            continue  # JSON Schema counts 1.0 as an integer; the contract's "JSON integer" does not
        ok = validator.is_valid(valid() | {field: value})
        assert ok == (message is None), (field, value)


def _outcome(decode: Decoder, doc: Any) -> Any:
    try:
        return decode(doc, "records[0]")
    except FieldError as exc:
        return str(exc)


@pytest.mark.parametrize(("name", "vector"), vectors("valid") + vectors("invalid_record"))
def test_real_types_three_decoders_agree_on_the_golden_records(name: str, vector: dict[str, Any]) -> None:
    errors = 0
    for doc in vector["batch"]["records"]:
        cls = SessionRecord if isinstance(doc, dict) and doc.get("kind") == "session" else SurveyRecord
        got = [_outcome(make(cls), doc) for make in DECODERS.values()]
        assert got[0] == got[1] == got[2], (name, got)
        errors += isinstance(got[0], str)
    assert (errors > 0) == (name in dict(vectors("invalid_record"))), name


def test_an_integer_constant_is_in_the_schema() -> None:
    # The envelope's "protocol": the integer 1 (section 3).
    from protocol.types import Envelope

    protocol = json_schema_of(Envelope)["properties"]["protocol"]
    assert protocol["type"] == "integer" and protocol["const"] == 1
    validator = jsonschema.Draft202012Validator(protocol)
    assert validator.is_valid(1) and not validator.is_valid(2)
