"""Reading and writing v1 batches: orjson, gzip and the size limits.

The collector calls :func:`inflate` then :func:`decode_batch`; the box calls
:func:`encode_batch_bodies` (or :func:`encode_batch`) then :func:`gzip_body`. Every error is a
:class:`~protocol.errors.ProtocolError` naming what is wrong.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from .errors import (
    FieldError,
    MalformedError,
    TooLargeError,
    TooManyRecordsError,
    UnsupportedMediaTypeError,
    UnsupportedProtocolError,
)
from .limits import MAX_BODY_BYTES, MAX_INFLATED_BYTES, MAX_RECORDS, PROTOCOL_VERSION
from .spec import UUID_PATTERN, decode_object, encode_object, wire_fields
from .timefmt import format_rfc3339
from .types import RECORD_TYPES, Batch, BoxInfo, Envelope, Record

_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Accepted:
    """A record that passed every check. ``raw`` holds its named fields as received."""

    index: int
    record: Record
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that broke the contract; ``id`` is None where it had no usable id."""

    index: int
    id: str | None
    error: str


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    """A batch whose envelope is valid; each record is either accepted or rejected."""

    envelope: Envelope
    records: tuple[Accepted | Rejected, ...]

    @property
    def accepted(self) -> list[Accepted]:
        """The valid records, in batch order."""
        return [r for r in self.records if isinstance(r, Accepted)]

    @property
    def rejected(self) -> list[Rejected]:
        """The invalid records, in batch order."""
        return [r for r in self.records if isinstance(r, Rejected)]


def check_media_type(content_type: str | None, content_encoding: str | None) -> bool:
    """Check the request's headers; answer whether the body is gzip.

    Raises :class:`UnsupportedMediaTypeError` for another type or encoding.
    """
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime != "application/json":
        raise UnsupportedMediaTypeError(
            f"Content-Type must be application/json, not {content_type or 'missing'!s}"
        )
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return False
    if encoding == "gzip":
        return True
    raise UnsupportedMediaTypeError(
        f"Content-Encoding must be gzip or absent, not {content_encoding}"
    )


def inflate(body: bytes, *, gzipped: bool, limit: int = MAX_INFLATED_BYTES) -> bytes:
    """Check the size limits and undo gzip, incrementally, so a bomb costs no memory.

    ``limit`` lowers the bound after decompression (the collector first tries a small
    one, to learn cheaply whether a body is small enough to decode on its event loop);
    past it, :class:`TooLargeError`, having inflated at most ``limit`` + 1 bytes.
    """
    if len(body) > MAX_BODY_BYTES:
        raise TooLargeError(f"body is {len(body)} bytes; at most {MAX_BODY_BYTES} as sent")
    if not gzipped:
        if len(body) > limit:
            raise TooLargeError(f"body is {len(body)} bytes; at most {limit} here")
        return body
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    out = bytearray()
    data = body
    try:
        while data:
            room = limit + 1 - len(out)
            out += inflater.decompress(data, min(_CHUNK, room))
            if len(out) > limit:
                raise TooLargeError(f"body inflates past {limit} bytes after decompression")
            data = inflater.unconsumed_tail
            if inflater.eof:
                break
        if not inflater.eof:
            raise MalformedError("body: gzip stream is truncated")
    except zlib.error as exc:
        raise MalformedError(f"body: not valid gzip ({exc})") from None
    return bytes(out)


def decode_batch(body: bytes) -> DecodedBatch:
    """Decode an (inflated) request body.

    Whole-request faults raise, in the contract's order: :class:`MalformedError`,
    :class:`UnsupportedProtocolError`, :class:`TooManyRecordsError`. A faulty record
    does not fail the batch; it comes back as :class:`Rejected`.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedError(f"body: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise MalformedError("body: must be a JSON object")
    if "records" not in doc:
        raise MalformedError("records: is required")
    records = doc["records"]
    if not isinstance(records, list):
        raise MalformedError("records: must be an array")
    try:
        envelope = decode_object(Envelope, doc, "")
    except FieldError as exc:
        raise MalformedError(str(exc)) from None
    if not records:
        raise MalformedError("records: must hold at least one record")
    if envelope.protocol != PROTOCOL_VERSION:
        raise UnsupportedProtocolError(
            f"protocol: {envelope.protocol} is not supported; this collector speaks {PROTOCOL_VERSION}"
        )
    if len(records) > MAX_RECORDS:
        raise TooManyRecordsError(
            f"records: {len(records)} records; at most {MAX_RECORDS} in one batch"
        )
    return DecodedBatch(envelope, tuple(decode_record(obj, i) for i, obj in enumerate(records)))


def decode_record(obj: Any, index: int) -> Accepted | Rejected:
    """Check one record (``records[index]`` of a batch)."""
    path = f"records[{index}]"
    if not isinstance(obj, dict):
        return Rejected(index, None, f"{path}: must be an object")
    kind = obj.get("kind")
    cls = RECORD_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        if "kind" not in obj:
            return Rejected(index, _usable_id(obj.get("id")), f"{path}.kind: is required")
        return Rejected(
            index, _usable_id(obj.get("id")), f"{path}.kind: must be one of session, survey"
        )
    try:
        record = decode_object(cls, obj, path)
    except FieldError as exc:
        return Rejected(index, _usable_id(obj.get("id")), str(exc))
    return Accepted(index, record, named_fields(cls, obj))


def named_fields(cls: type[Any], obj: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``obj`` that wire type ``cls`` names, at every depth, as received.

    Keys the contract does not name are ignored when decoding (newer boxes may add
    some) and must not be kept either: they are unchecked (no length bound) and may
    carry what the privacy rules exclude (contract section 5).
    """
    out: dict[str, Any] = {}
    for name, spec in wire_fields(cls):
        if name in obj:
            value = obj[name]
            if spec.of is not None and isinstance(value, dict):
                value = named_fields(spec.of, value)
            out[name] = value
    return out


def _usable_id(value: Any) -> str | None:
    if isinstance(value, str) and UUID_PATTERN.fullmatch(value):
        return value
    return None


def record_to_json(record: Record) -> dict[str, Any]:
    """The JSON-ready form of one record."""
    return encode_object(record)


def encode_batch(batch: Batch) -> bytes:
    """Serialise a batch to the v1 JSON body (not compressed)."""
    doc: dict[str, Any] = {
        "protocol": batch.protocol,
        "box_id": batch.box_id,
        "sent_at": format_rfc3339(batch.sent_at),
    }
    if batch.box is not None:
        doc["box"] = encode_object(batch.box)
    doc["records"] = [encode_object(r) for r in batch.records]
    return orjson.dumps(doc)


def encode_batch_bodies(box_id: str, sent_at: datetime, box: BoxInfo | None,
                        bodies: Sequence[bytes]) -> bytes:
    """The v1 JSON body of a batch whose records are already JSON (not compressed).

    ``bodies`` are records as :func:`record_to_json` and ``orjson.dumps`` wrote them; they
    are spliced in as they are, not parsed. For such bodies the result is byte for byte
    what :func:`encode_batch` writes for the same records (protocol
    :data:`~protocol.limits.PROTOCOL_VERSION`). The caller vouches that each body is one
    JSON object: anything else spliced in makes the batch malformed or changes its
    record count.
    """
    doc: dict[str, Any] = {
        "protocol": PROTOCOL_VERSION,
        "box_id": box_id,
        "sent_at": format_rfc3339(sent_at),
    }
    if box is not None:
        doc["box"] = encode_object(box)
    doc["records"] = []
    head = orjson.dumps(doc)
    # The envelope as encode_batch writes it, up to the records array's "[" (orjson
    # writes compact JSON and keeps key order: the last two bytes are "]}").
    return b"".join((head[:-2], b",".join(bodies), b"]}"))


def gzip_body(body: bytes) -> bytes:
    """gzip a body for ``Content-Encoding: gzip`` (level 6: the box's CPU is small)."""
    return gzip.compress(body, compresslevel=6, mtime=0)
