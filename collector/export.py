"""``GET /v1/export``: every stored record of a kind, as JSON lines or CSV, streamed."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from typing import Any

import orjson

from protocol import from_micros
from protocol.codec import named_fields
from protocol.timefmt import format_rfc3339
from protocol.types import RECORD_TYPES, Qos

from .storage import ExportRow

#: The contract's ``qos`` fields, in the wire type's order (a field added there is
#: exported with no change here).
QOS_FIELDS = tuple(f.name for f in dataclasses.fields(Qos))
TAIL = ("box_id", "received_at", "box_model", "box_firmware", "box_region", "clock_shift_s")
CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "session": ("id", "kind", "started_at", "ended_at", "channel", "content_type",
                *(f"qos_{q}" for q in QOS_FIELDS), *TAIL),
    "survey": ("id", "kind", "session_id", "shown_at", "answered_at", "outcome", "score",
               "reason", "locale", *TAIL),
}


def export_doc(row: ExportRow) -> dict[str, Any]:
    """The exported object: the record's fields as received, plus the collector's."""
    doc: dict[str, Any] = orjson.loads(row.raw)
    kind = doc.get("kind")
    if isinstance(kind, str) and kind in RECORD_TYPES:
        # Rows stored before unnamed fields were dropped at ingest may still hold some.
        doc = named_fields(RECORD_TYPES[kind], doc)
    doc["box_id"] = row.box_id
    doc["received_at"] = format_rfc3339(from_micros(row.received_us))
    doc["box"] = {"model": row.model, "firmware": row.firmware, "region": row.region}
    doc["clock_shift_s"] = row.clock_shift_s
    return doc


#: A text cell starting with one of these is a formula to a spreadsheet: it gets a
#: leading ``'`` (OWASP's advice, contract section 5).
_FORMULA_START = ("=", "+", "-", "@")
#: A text cell starting with one of these, or holding one of :data:`_QUOTE_ANYWHERE`, is
#: quoted (contract section 5).
_QUOTE_START = (*_FORMULA_START, "\t", "\r")
_QUOTE_ANYWHERE = re.compile(r'[,;"\r\n]')
#: Where a reader that splits at ``;`` (a spreadsheet whose list separator is ``;``, as
#: Excel's in a Dutch locale) or at a line break starts a cell inside ours: quoting does
#: not protect there (such a reader takes a quote in mid-cell as text), so a formula
#: character after one (blanks and quotes aside) gets a ``'`` too.
_INNER_CELL_FORMULA = re.compile(r'([;\r\n])(?=[\s"]*[=+\-@])')


def csv_cell(value: Any) -> str:
    """One CSV cell, written as contract section 5 says, for both CSV exports: null
    empty, numbers as numbers, and a text cell that starts with ``= + - @``, a tab or a
    CR, or holds a comma, semicolon, quote or line break, quoted; the first four get a
    leading ``'`` so that no spreadsheet runs the cell as a formula."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return str(value)
    text = orjson.dumps(value).decode() if isinstance(value, (dict, list)) else str(value)
    if not (text.startswith(_QUOTE_START) or _QUOTE_ANYWHERE.search(text)):
        return text
    if text.startswith(_FORMULA_START):
        text = "'" + text
    text = _INNER_CELL_FORMULA.sub(r"\1'", text)
    return '"' + text.replace('"', '""') + '"'


def csv_line(values: Iterable[Any]) -> str:
    """One CSV row of :func:`csv_cell` cells, with the CRLF of RFC 4180."""
    return ",".join(map(csv_cell, values)) + "\r\n"


def csv_row(kind: str, doc: dict[str, Any]) -> list[Any]:
    """One CSV row's values in :data:`CSV_COLUMNS` order; ``qos`` and ``box`` flattened."""
    flat = dict(doc)
    for q, v in (flat.pop("qos", None) or {}).items():
        flat[f"qos_{q}"] = v
    for k, v in (flat.pop("box", None) or {}).items():
        flat[f"box_{k}"] = v
    return [flat.get(col) for col in CSV_COLUMNS[kind]]


async def export_chunks(kind: str, fmt: str, rows: AsyncIterator[ExportRow]) -> AsyncGenerator[bytes, None]:
    """The export body in chunks of about 64 KiB, so memory stays flat.

    Closing this generator early (the client went away) closes ``rows`` at once, so the
    store's cursor and connection are released here rather than by the garbage
    collector, later, on a connection that may be closed by then."""
    out = bytearray()
    if fmt == "csv":
        out += csv_line(CSV_COLUMNS[kind]).encode()
    try:
        async for row in rows:
            doc = export_doc(row)
            if fmt == "csv":
                out += csv_line(csv_row(kind, doc)).encode()
            else:
                out += orjson.dumps(doc)
                out += b"\n"
            if len(out) > 65536:
                yield bytes(out)
                out.clear()
    finally:
        aclose = getattr(rows, "aclose", None)
        if aclose is not None:
            await aclose()
    if out:
        yield bytes(out)
