"""Field specifications: the one place a wire field's type and bounds are declared.

Each wire type in :mod:`protocol.types` is a frozen dataclass whose fields carry a
:class:`Spec` in their metadata. The decoder, the encoder and the JSON Schema are all
derived from those declarations, so the schema exists exactly once.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

from .errors import FieldError
from .limits import MAX_COUNT, MAX_INT, MAX_NUMBER, MAX_STRING
from .timefmt import RFC3339_PATTERN, format_rfc3339, parse_rfc3339

Kind = Literal["integer", "number", "string", "boolean", "time", "uuid", "object"]

#: A string without U+0000 (contract section 3), for the JSON Schema.
NO_NUL_PATTERN = "^[^\\u0000]*$"
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


# Per-type caches: wire types are few and fixed, and these are derived, never state.
_FIELDS: dict[type[Any], tuple[tuple[str, Spec], ...]] = {}
_DECODERS: dict[type[Any], Callable[[Any, str], Any]] = {}


def wire_fields(cls: type[Any]) -> tuple[tuple[str, Spec], ...]:
    """The declared fields of a wire type, in order (computed once per type)."""
    found = _FIELDS.get(cls)
    if found is None:
        found = _FIELDS[cls] = tuple((f.name, spec_of(f)) for f in dataclasses.fields(cls))
    return found


def _join(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


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


def decode_value(spec: Spec, value: Any, parent: str, name: str) -> Any:
    """Check one JSON value, found at ``parent.name``, against ``spec``.

    Answers its typed form or raises :class:`FieldError`. The path is only built when
    there is an error: this runs for every field of every record the fleet sends.
    """
    kind = spec.kind
    if value is None:
        if spec.nullable or spec.optional:
            return None
        raise FieldError(_join(parent, name), "must not be null")
    if kind == "integer":
        # bool is an int subclass in Python; JSON true is not a count.
        if type(value) is not int:
            raise FieldError(_join(parent, name), f"must be an integer, not {_describe(value)}")
        _check_range(spec, value, parent, name)
        return value
    if kind == "number":
        if type(value) is int:
            value = float(value) if abs(value) <= MAX_INT else math.inf
        elif type(value) is not float:
            raise FieldError(_join(parent, name), f"must be a number, not {_describe(value)}")
        if not math.isfinite(value):
            raise FieldError(_join(parent, name), "must be a finite number")
        _check_range(spec, value, parent, name)
        return value
    if kind == "boolean":
        if type(value) is not bool:
            raise FieldError(_join(parent, name), f"must be true or false, not {_describe(value)}")
        return value
    if kind == "object":
        assert spec.of is not None
        return decode_object(spec.of, value, _join(parent, name))
    if type(value) is not str:
        raise FieldError(_join(parent, name), f"must be a string, not {_describe(value)}")
    if kind == "string":
        if spec.const is not None and value != spec.const:
            raise FieldError(_join(parent, name), f"must be {spec.const!r}")
        if spec.enum is not None and value not in spec.enum:
            raise FieldError(_join(parent, name), f"must be one of {', '.join(spec.enum)}")
        if spec.max_length is not None and len(value) > spec.max_length:
            raise FieldError(_join(parent, name), f"must be at most {spec.max_length} characters")
        if "\x00" in value:
            # PostgreSQL text cannot hold U+0000; no store should get what one store refuses.
            raise FieldError(_join(parent, name), "must not contain U+0000")
        if spec.pattern is not None and re.fullmatch(spec.pattern, value) is None:
            raise FieldError(_join(parent, name), f"must match {spec.pattern}")
        return value
    if kind == "time":
        try:
            return parse_rfc3339(value)
        except ValueError as exc:
            raise FieldError(_join(parent, name), str(exc)) from None
    if kind == "uuid":
        if UUID_PATTERN.fullmatch(value) is None:
            raise FieldError(_join(parent, name), "must be a UUID in the 8-4-4-4-12 form")
        # Ids compare case-insensitively: keep one canonical form.
        return value.lower()
    raise AssertionError(kind)  # pragma: no cover


def _check_range(spec: Spec, value: float, parent: str, name: str) -> None:
    low = spec.minimum
    high = spec.maximum if spec.maximum is not None else (
        MAX_COUNT if spec.kind == "integer" else MAX_NUMBER
    )
    if low is not None and value < low:
        raise FieldError(_join(parent, name), f"must be >= {_num(low)}")
    if value > high:
        raise FieldError(_join(parent, name), f"must be <= {_num(high)}")


def _num(x: float) -> str:
    # Whole bounds read as integers (2147483647, not 2147483647.0), up to where a double
    # stops being exact; past that, 1e+300 rather than its 301 digits.
    return str(int(x)) if float(x).is_integer() and abs(x) <= MAX_INT else str(float(x))


T = TypeVar("T")


def decode_object(cls: type[T], obj: Any, path: str) -> T:
    """Build wire type ``cls`` from a decoded JSON object, checking every declared field.

    Keys the type does not declare are ignored (newer boxes may add some). After the
    fields, the type's ``_check`` classmethod, where it has one, applies rules that
    span fields. Errors are :class:`FieldError` naming the field's full path.
    """
    decoder: Callable[[Any, str], T] = _fast_decoder(cls)
    return decoder(obj, path)


def _decode_object_checked(cls: type[T], obj: Any, path: str) -> T:
    """The reference decoder: field by field through :func:`decode_value`.

    The generated fast decoders fall back to this one for anything unusual, so every
    error message comes from one place.
    """
    if not isinstance(obj, dict):
        raise FieldError(path, f"must be an object, not {_describe(obj)}")
    values: dict[str, Any] = {}
    for name, spec in wire_fields(cls):
        if name in obj:
            values[name] = decode_value(spec, obj[name], path, name)
        elif spec.optional:
            values[name] = None
        else:
            raise FieldError(_join(path, name), "is required")
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
        elif spec.const is None and spec.enum is None:
            s["pattern"] = NO_NUL_PATTERN
        if spec.max_length is not None and spec.const is None and spec.enum is None:
            s["maxLength"] = spec.max_length
    elif spec.kind in ("integer", "number"):
        s = {"type": spec.kind}
        if spec.const is not None:
            s["const"] = spec.const
        if spec.minimum is not None:
            s["minimum"] = spec.minimum
        s["maximum"] = spec.maximum if spec.maximum is not None else (
            MAX_COUNT if spec.kind == "integer" else MAX_NUMBER
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


class _Miss(Exception):
    """The fast path met something it does not handle; the reference decoder decides."""


_MISSING = object()


def _fast_decoder(cls: type[Any]) -> Callable[[Any, str], Any]:
    found = _DECODERS.get(cls)
    if found is None:
        found = _DECODERS[cls] = _generate_decoder(cls)
    return found


def _generate_decoder(cls: type[Any]) -> Callable[[Any, str], Any]:
    """Generate, once per wire type, straight-line code for its happy path.

    The ingest of a fleet runs this for every record: a generic loop over field specs
    costs three times as much. The code is derived from the same :class:`Spec`
    declarations, and anything it does not accept is handed to
    :func:`_decode_object_checked`, which either raises the precise error or agrees.
    """
    env: dict[str, Any] = {
        "_Miss": _Miss, "_M": _MISSING, "cls": cls, "slow": _decode_object_checked,
        "UUIDM": UUID_PATTERN.fullmatch, "parse_time": parse_rfc3339,
        "check": getattr(cls, "_check", None),
    }
    lines = ["def decode(obj, path):",
             "    if type(obj) is not dict:",
             "        return slow(cls, obj, path)",
             "    g = obj.get",
             "    try:"]
    names = []
    for i, (name, spec) in enumerate(wire_fields(cls)):
        v = f"v{i}"
        names.append((name, v))
        ind = "        "
        default = "None" if spec.optional else "_M"
        lines.append(f"{ind}{v} = g({name!r}, {default})")
        if not spec.optional:
            lines.append(f"{ind}if {v} is _M: raise _Miss")
        body = _fast_check(name, spec, v, i, env)
        if spec.nullable or spec.optional:
            lines.append(f"{ind}if {v} is not None:")
            lines.extend(f"{ind}    {b}" for b in body)
        else:
            lines.extend(f"{ind}{b}" for b in body)
    lines.append("    except (_Miss, ValueError, TypeError, OverflowError):")
    lines.append("        return slow(cls, obj, path)")
    lines.append("    values = {" + ", ".join(f"{n!r}: {v}" for n, v in names) + "}")
    lines.append("    if check is not None:")
    lines.append("        check(values, path)")
    lines.append("    return cls(**values)")
    exec("\n".join(lines), env)
    decoder: Callable[[Any, str], Any] = env["decode"]
    return decoder


def _fast_check(name: str, spec: Spec, v: str, i: int, env: dict[str, Any]) -> list[str]:
    kind = spec.kind
    lo = spec.minimum
    hi = spec.maximum if spec.maximum is not None else (MAX_COUNT if kind == "integer" else MAX_NUMBER)
    low = f"{lo!r} <= " if lo is not None else ""
    if kind == "integer":
        return [f"if type({v}) is not int or not ({low}{v} <= {hi!r}): raise _Miss"]
    if kind == "number":
        return [f"if type({v}) is int and -{MAX_INT} <= {v} <= {MAX_INT}: {v} = float({v})",
                f"if type({v}) is not float or not ({low}{v} <= {hi!r}): raise _Miss"]
    if kind == "boolean":
        return [f"if type({v}) is not bool: raise _Miss"]
    if kind == "object":
        assert spec.of is not None
        env[f"sub{i}"] = _fast_decoder(spec.of)
        return [f"{v} = sub{i}({v}, (path + '.' if path else '') + {name!r})"]
    out = [f"if type({v}) is not str: raise _Miss"]
    if kind == "string":
        if spec.max_length is not None:
            out.append(f"if len({v}) > {spec.max_length}: raise _Miss")
        out.append(f"if '\\x00' in {v}: raise _Miss")
        if spec.const is not None:
            out.append(f"if {v} != {spec.const!r}: raise _Miss")
        if spec.enum is not None:
            env[f"enum{i}"] = frozenset(spec.enum)
            out.append(f"if {v} not in enum{i}: raise _Miss")
        if spec.pattern is not None:
            env[f"pat{i}"] = re.compile(spec.pattern).fullmatch
            out.append(f"if pat{i}({v}) is None: raise _Miss")
        return out
    if kind == "time":
        return [*out, f"{v} = parse_time({v})"]
    if kind == "uuid":
        return [*out, f"if UUIDM({v}) is None: raise _Miss", f"{v} = {v}.lower()"]
    raise AssertionError(kind)  # pragma: no cover
