"""``GET /v1/export``: every stored record of a kind, as JSON lines or CSV, streamed."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

import orjson

from protocol import from_micros
from protocol.timefmt import format_rfc3339

from .storage import ExportRow

QOS_FIELDS = ("startup_ms", "watch_s", "rebuffer_count", "rebuffer_s", "avg_bitrate_kbps",
              "bitrate_switches", "failed")
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
    doc["box_id"] = row.box_id
    doc["received_at"] = format_rfc3339(from_micros(row.received_us))
    doc["box"] = {"model": row.model, "firmware": row.firmware, "region": row.region}
    doc["clock_shift_s"] = row.clock_shift_s
    return doc


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


def csv_row(kind: str, doc: dict[str, Any]) -> list[str]:
    """One CSV row in :data:`CSV_COLUMNS` order; ``qos`` and ``box`` flattened."""
    flat = dict(doc)
    for q, v in (flat.pop("qos", None) or {}).items():
        flat[f"qos_{q}"] = v
    for k, v in (flat.pop("box", None) or {}).items():
        flat[f"box_{k}"] = v
    return [_cell(flat.get(col)) for col in CSV_COLUMNS[kind]]


async def export_chunks(kind: str, fmt: str, rows: AsyncIterator[ExportRow]) -> AsyncIterator[bytes]:
    """The export body in chunks of about 64 KiB, so memory stays flat."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    out = bytearray()
    if fmt == "csv":
        writer.writerow(CSV_COLUMNS[kind])
    async for row in rows:
        doc = export_doc(row)
        if fmt == "csv":
            writer.writerow(csv_row(kind, doc))
        else:
            out += orjson.dumps(doc)
            out += b"\n"
        if fmt == "csv" and buf.tell() > 65536:
            out += buf.getvalue().encode()
            buf.seek(0)
            buf.truncate()
        if len(out) > 65536:
            yield bytes(out)
            out.clear()
    if fmt == "csv":
        out += buf.getvalue().encode()
    if out:
        yield bytes(out)
