"""The pipe between the agent and the prompt process: JSON objects, one a line.

Child to parent: ``{"type": "shown"}`` after the first frame,
``{"type": "confirmed", "record": {...}}`` (the child then waits for
``{"type": "stored"}``), ``{"type": "finished", "record": {...}}``, and
``{"type": "log", "level": 30, "message": "..."}`` for the child's log lines, which
would otherwise land on the TV screen. Records are in their wire form.
"""

from __future__ import annotations

import json
from typing import Any, Final

from protocol import Accepted, SurveyRecord, decode_record, record_to_json

SHOWN: Final = "shown"
CONFIRMED: Final = "confirmed"
STORED: Final = "stored"
FINISHED: Final = "finished"
LOG: Final = "log"


def encode(kind: str, **fields: Any) -> bytes:
    """One message as a line of JSON."""
    return json.dumps({"type": kind, **fields}, ensure_ascii=False).encode("utf-8") + b"\n"


def encode_record(kind: str, record: SurveyRecord) -> bytes:
    """A message carrying a survey record."""
    return encode(kind, record=record_to_json(record))


def decode(line: bytes) -> dict[str, Any]:
    """One message; ValueError for anything that is not a JSON object with a type."""
    message = json.loads(line)
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ValueError("not a message")
    return message


def decode_survey(message: dict[str, Any]) -> SurveyRecord:
    """The survey record a message carries, checked like the collector checks it."""
    result = decode_record(message.get("record"), 0)
    if not isinstance(result, Accepted) or not isinstance(result.record, SurveyRecord):
        raise ValueError(f"bad survey record from the prompt: {result}")
    return result.record
