"""UUIDv7 ids: the contract's form, version 7, time-ordered."""

from __future__ import annotations

import re
import uuid

from stb_widget.ids import uuid7


def test_uuid7_form_and_order() -> None:
    ids = [uuid7() for _ in range(5000)]
    for i in ids[:50]:
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", i)
        assert uuid.UUID(i).version == 7
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert uuid7(1_700_000_000_000) < uuid7(1_800_000_000_000)
