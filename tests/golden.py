"""Loading the protocol's golden vectors (shared by the decoder and the collector tests)."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).resolve().parent.parent / "protocol" / "golden"
_UUID = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")


def vectors(group: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, vector) for each file of ``group`` (valid, invalid_record, invalid_batch)."""
    files = sorted((GOLDEN / group).glob("*.json"))
    assert files, f"no golden vectors in {GOLDEN / group}"
    return [(f.stem, json.loads(f.read_text())) for f in files]


def fresh_ids(doc: Any) -> Any:
    """The same document with every UUID replaced by a new one (consistently), so that a
    vector can be uploaded to a collector that has seen other vectors."""
    mapping: dict[str, str] = {}

    def walk(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, str) and _UUID.match(x):
            key = x.lower()
            mapping.setdefault(key, str(uuid.uuid4()))
            return mapping[key] if x == key else mapping[key].upper()
        return x

    return walk(doc)
