"""The field tables of ``docs/wire-format.md``, generated from the wire types.

``python -m protocol.wiredoc --update docs/wire-format.md`` rewrites the text between the
``wire-doc`` markers; ``--check`` exits 1 where the doc no longer matches
:mod:`protocol.types` (a test runs it). The prose around the tables is written by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from . import limits
from .spec import Spec, wire_fields
from .types import BoxInfo, Envelope, Qos, SessionRecord, SurveyRecord

START = "<!-- wire-doc:start -->\n"
END = "<!-- wire-doc:end -->"

_TYPES: tuple[tuple[str, type[Any]], ...] = (
    ("Batch envelope (`POST /v1/batches` body, with `records`)", Envelope),
    ("`box`: the box's attributes", BoxInfo),
    ("Session record (`kind` = `session`)", SessionRecord),
    ("`qos`: a session's quality", Qos),
    ("Survey record (`kind` = `survey`)", SurveyRecord),
)

_KIND_WORDS = {
    "integer": "integer", "number": "number", "string": "string", "boolean": "boolean",
    "time": "RFC 3339 time", "uuid": "UUID (8-4-4-4-12)", "object": "object",
}


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def _type(spec: Spec) -> str:
    if spec.kind == "object" and spec.of is not None:
        return f"object ({spec.of.__name__})"
    return _KIND_WORDS[spec.kind]


def _presence(spec: Spec) -> str:
    if spec.optional:
        return "optional (absent = null)"
    if spec.nullable:
        return "required, may be null"
    return "required"


def _bounds(spec: Spec) -> str:
    if spec.const is not None:
        return f"exactly `{spec.const!r}`".replace("'", '"')
    parts: list[str] = []
    if spec.enum is not None:
        parts.append("one of " + ", ".join(f"`{v}`" for v in spec.enum))
    if spec.kind in ("integer", "number"):
        high = spec.maximum if spec.maximum is not None else (
            limits.MAX_COUNT if spec.kind == "integer" else limits.MAX_NUMBER)
        low = "" if spec.minimum is None else f"{_num(spec.minimum)} ≤ "
        parts.append(f"{low}x ≤ {_num(high)}")
    if spec.kind == "string" and spec.pattern is not None:
        parts.append(f"matches `{spec.pattern}`")
    elif spec.kind == "string" and spec.const is None and spec.enum is None \
            and spec.max_length is not None:
        parts.append(f"at most {spec.max_length} characters, no U+0000")
    return "; ".join(parts) or "–"


def render() -> str:
    """Every wire type's field table, and the limits, as Markdown."""
    out: list[str] = []
    for title, cls in _TYPES:
        out += [f"### {title}", "", "| field | type | presence | bounds | meaning |",
                "| --- | --- | --- | --- | --- |"]
        for name, spec in wire_fields(cls):
            out.append(f"| `{name}` | {_type(spec)} | {_presence(spec)} | {_bounds(spec)} "
                       f"| {spec.doc} |")
        if cls is Envelope:  # the records are not part of the envelope type
            out.append(f"| `records` | array of records | required | 1 to {limits.MAX_RECORDS} "
                       "| Session and survey records, in any mix and order. |")
        out.append("")
    out += [
        "### Limits (`protocol/limits.py`)", "",
        "| limit | value |", "| --- | --- |",
        f"| `protocol` | {limits.PROTOCOL_VERSION} |",
        f"| records per batch | 1 to {limits.MAX_RECORDS} |",
        f"| body as sent (gzip or not) | at most {limits.MAX_BODY_BYTES} bytes |",
        f"| body after decompression | at most {limits.MAX_INFLATED_BYTES} bytes |",
        f"| any string in a record or in `box` | at most {limits.MAX_STRING} characters |",
        f"| clock skew tolerated before times are shifted | {_num(limits.CLOCK_SKEW_TOLERANCE_S)} s |",
        "",
    ]
    return "\n".join(out)


def _splice(text: str, body: str) -> str | None:
    head, sep, rest = text.partition(START)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        return None
    return head + START + body + END + tail


def main(argv: list[str] | None = None) -> int:
    """``--update FILE`` rewrites the tables in FILE; ``--check FILE`` says if they are stale."""
    parser = argparse.ArgumentParser(prog="python -m protocol.wiredoc", description=__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--update", metavar="FILE", type=Path)
    group.add_argument("--check", metavar="FILE", type=Path)
    args = parser.parse_args(argv)
    path: Path = args.update or args.check
    text = path.read_text("utf-8")
    new = _splice(text, render())
    if new is None:
        print(f"{path}: no wire-doc markers ({START.strip()} ... {END})", file=sys.stderr)
        return 2
    if args.check:
        if new != text:
            print(f"{path} is stale: run python -m protocol.wiredoc --update {path}",
                  file=sys.stderr)
            return 1
        return 0
    path.write_text(new, "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
