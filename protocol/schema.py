"""The JSON Schema of a v1 batch, generated from :mod:`protocol.types`."""

from __future__ import annotations

from typing import Any

from .limits import MAX_RECORDS
from .spec import json_schema_of
from .types import Envelope, SessionRecord, SurveyRecord


def batch_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``POST /v1/batches``'s body."""
    schema = json_schema_of(Envelope)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "IPTV NPS upload batch, protocol v1"
    schema["properties"]["records"] = {
        "type": "array",
        "minItems": 1,
        "maxItems": MAX_RECORDS,
        "items": {"oneOf": [{"$ref": "#/$defs/session"}, {"$ref": "#/$defs/survey"}]},
        "description": "1 to 500 records; each is accepted or rejected on its own.",
    }
    schema["required"] = [*schema["required"], "records"]
    schema["$defs"] = {"session": json_schema_of(SessionRecord), "survey": json_schema_of(SurveyRecord)}
    return schema
