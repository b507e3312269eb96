"""Field specifications: the one place a wire field's type and bounds are declared.

Each wire type in :mod:`protocol.types` is a frozen dataclass whose fields carry a
:class:`Spec` in their metadata. The decoder, the encoder and the JSON Schema are all
derived from those declarations, so the schema exists exactly once.
"""

from __future__ import annotations

import dataclasses
import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

from .errors import FieldError
from .limits import MAX_INT, MAX_NUMBER, MAX_STRING
from .timefmt import RFC3339_PATTERN, format_rfc3339, parse_rfc3339

Kind = Literal["integer", "number", "string", "boolean", "time", "uuid", "object"]

UUID_PATTERN = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")


@dataclass(frozen=True, slots=True)
class Spec:
    """How one wire field is typed and bounded."""

    kind: Kind
    doc: str
    nullable: bool = False
    #: The key may be left out; it then reads as null.
    optional: bool = False
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = MAX_STRING
    pattern: str | None = None
    enum: tuple[str, ...] | None = None
    #: The nested wire type of an ``object`` field.
    of: type[Any] | None = None
    #: A fixed value (the ``kind`` discriminator).
    const: str | int | None = None


def wire(kind: Kind, doc: str, **options: Any) -> Any:
    """Declare a dataclass field of a wire type (see :class:`Spec` for ``options``)."""
    spec = Spec(kind, doc, **options)
    if spec.optional:
        return dataclasses.field(default=None, metadata={"spec": spec})
    return dataclasses.field(metadata={"spec": spec})


def spec_of(f: dataclasses.Field[Any]) -> Spec:
    """The :class:`Spec` declared on a wire type's field."""
    spec = f.metadata["spec"]
    assert isinstance(spec, Spec)
    return spec


def wire_fields(cls: type[Any]) -> tuple[tuple[str, Spec], ...]:
    """The declared fields of a wire type, in order."""
    return tuple((f.name, spec_of(f)) for f in dataclasses.fields(cls))


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def decode_value(spec: Spec, value: Any, path: str) -> Any:
    """Check one JSON value against ``spec``; answer its typed form or raise :class:`FieldError`."""
    if value is None:
        if spec.nullable or spec.optional:
            return None
        raise FieldError(path, "must not be null")
    kind = spec.kind
    if kind == "integer":
        # bool is an int subclass in Python; JSON true is not a count.
        if type(value) is not int:
            raise FieldError(path, f"must be an integer, not {_describe(value)}")
        _check_range(spec, value, path)
        return value
    if kind == "number":
        if type(value) is int:
            value = float(value) if abs(value) <= MAX_INT else math.inf
        elif type(value) is not float:
            raise FieldError(path, f"must be a number, not {_describe(value)}")
        if not math.isfinite(value):
            raise FieldError(path, "must be a finite number")
        _check_range(spec, value, path)
        return value
    if kind == "boolean":
        if type(value) is not bool:
            raise FieldError(path, f"must be true or false, not {_describe(value)}")
        return value
    if not isinstance(value, str) and kind != "object":
        raise FieldError(path, f"must be a string, not {_describe(value)}")
    if kind == "string":
        if spec.const is not None and value != spec.const:
            raise FieldError(path, f"must be {spec.const!r}")
        if spec.enum is not None and value not in spec.enum:
            raise FieldError(path, f"must be one of {', '.join(spec.enum)}")
        if spec.max_length is not None and len(value) > spec.max_length:
            raise FieldError(path, f"must be at most {spec.max_length} characters")
        if spec.pattern is not None and re.match(spec.pattern, value) is None:
            raise FieldError(path, f"must match {spec.pattern}")
        return value
    if kind == "time":
        try:
            return parse_rfc3339(value)
        except ValueError as exc:
            raise FieldError(path, str(exc)) from None
    if kind == "uuid":
        if UUID_PATTERN.match(value) is None:
            raise FieldError(path, "must be a UUID in the 8-4-4-4-12 form")
        return str(uuid.UUID(value))
    if kind == "object":
        assert spec.of is not None
        return decode_object(spec.of, value, path)
    raise AssertionError(kind)  # pragma: no cover


def _check_range(spec: Spec, value: float, path: str) -> None:
    low = spec.minimum
    high = spec.maximum if spec.maximum is not None else (
        MAX_INT if spec.kind == "integer" else MAX_NUMBER
    )
    if low is not None and value < low:
        raise FieldError(path, f"must be >= {_num(low)}")
    if value > high:
        raise FieldError(path, f"must be <= {_num(high)}")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


T = TypeVar("T")


def decode_object(cls: type[T], obj: Any, path: str) -> T:
    """Build wire type ``cls`` from a decoded JSON object, checking every declared field.

    Keys the type does not declare are ignored (newer boxes may add some). After the
    fields, the type's ``_check`` classmethod, where it has one, applies rules that
    span fields.
    """
    if not isinstance(obj, dict):
        raise FieldError(path, f"must be an object, not {_describe(obj)}")
    values: dict[str, Any] = {}
    for name, spec in wire_fields(cls):
        where = f"{path}.{name}" if path else name
        if name not in obj:
            if spec.optional:
                values[name] = None
                continue
            raise FieldError(where, "is required")
        values[name] = decode_value(spec, obj[name], where)
    check: Callable[[Mapping[str, Any], str], None] | None = getattr(cls, "_check", None)
    if check is not None:
        check(values, path)
    return cls(**values)


def encode_object(obj: Any) -> dict[str, Any]:
    """The JSON-ready form of a wire type instance (times as RFC 3339 strings)."""
    out: dict[str, Any] = {}
    for name, spec in wire_fields(type(obj)):
        value = getattr(obj, name)
        if value is None:
            if spec.optional:
                continue
            out[name] = None
        elif spec.kind == "time":
            assert isinstance(value, datetime)
            out[name] = format_rfc3339(value)
        elif spec.kind == "object":
            out[name] = encode_object(value)
        else:
            out[name] = value
    return out


def json_schema_of(cls: type[Any]) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a wire type, derived from its specs."""
    props: dict[str, Any] = {}
    required: list[str] = []
    for name, spec in wire_fields(cls):
        props[name] = _schema_of_spec(spec)
        if not spec.optional:
            required.append(name)
    schema: dict[str, Any] = {"type": "object", "properties": props, "required": required}
    if cls.__doc__:
        schema["description"] = " ".join(cls.__doc__.split())
    return schema


def _schema_of_spec(spec: Spec) -> dict[str, Any]:
    s: dict[str, Any]
    if spec.kind == "object":
        assert spec.of is not None
        s = json_schema_of(spec.of)
    elif spec.kind == "time":
        s = {"type": "string", "format": "date-time", "pattern": RFC3339_PATTERN}
    elif spec.kind == "uuid":
        s = {"type": "string", "pattern": UUID_PATTERN.pattern}
    elif spec.kind == "string":
        s = {"type": "string"}
        if spec.const is not None:
            s["const"] = spec.const
        if spec.enum is not None:
            s["enum"] = list(spec.enum)
        if spec.pattern is not None:
            s["pattern"] = spec.pattern
        if spec.max_length is not None and spec.const is None and spec.enum is None:
            s["maxLength"] = spec.max_length
    elif spec.kind in ("integer", "number"):
        s = {"type": spec.kind}
        if spec.const is not None:
            s["const"] = spec.const
        if spec.minimum is not None:
            s["minimum"] = spec.minimum
        s["maximum"] = spec.maximum if spec.maximum is not None else (
            MAX_INT if spec.kind == "integer" else MAX_NUMBER
        )
    else:
        s = {"type": "boolean"}
    if spec.nullable or spec.optional:
        if "enum" in s:
            s["enum"] = [*s["enum"], None]
        if spec.kind == "object":
            s = {"anyOf": [s, {"type": "null"}]}
        else:
            s["type"] = [s["type"], "null"]
    s["description"] = spec.doc
    return s
