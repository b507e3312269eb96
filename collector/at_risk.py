"""PLACEHOLDER for branch ``atrisk`` (contract §7): dropped at merge.

A stand-in with the real module's name and signature so that the dashboard can be built
and tested against contract-shaped data. ``risk`` here is a FIXED FORMULA of the window's
quality, not a model learned from the answers; the other figures follow the contract.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from protocol import to_micros

from .errors import BadQueryError
from .model import Filters
from .storage import Storage


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def compute_at_risk(storage: Storage, *, to: datetime | None, window_days: int, limit: int,
                          region: str | None, model: str | None, firmware: str | None) -> dict[str, Any]:
    """Contract §7's JSON (placeholder risk, see the module's docstring)."""
    if not 1 <= window_days <= 90:
        raise BadQueryError("window_days: must be 1 to 90")
    if not 1 <= limit <= 1000:
        raise BadQueryError("limit: must be 1 to 1000")
    end = to or datetime.now(UTC)
    start = end - timedelta(days=window_days)
    filters = Filters(from_us=to_micros(start), to_us=to_micros(end), region=region, model=model,
                      firmware=firmware)
    boxes: dict[str, dict[str, Any]] = {}
    async for row in storage.export_rows("session", filters):
        q = orjson.loads(row.raw)["qos"]
        b = boxes.setdefault(row.box_id, {"n": 0, "watch": 0.0, "reb": 0.0, "su": [], "br": 0.0,
                                          "brw": 0.0, "failed": 0})
        b["n"] += 1
        b["watch"] += q["watch_s"]
        b["reb"] += q["rebuffer_s"]
        if q.get("startup_ms") is not None:
            b["su"].append(q["startup_ms"] / 1000)
        if q.get("avg_bitrate_kbps") is not None:
            b["br"] += q["avg_bitrate_kbps"] / 1000 * q["watch_s"]
            b["brw"] += q["watch_s"]
        b["failed"] += bool(q.get("failed"))
    last: dict[str, tuple[str, int]] = {}
    async for row in storage.export_rows("survey", Filters(to_us=to_micros(end))):
        v = orjson.loads(row.raw)
        if (row.box_id in boxes and v.get("outcome") == "answered" and v.get("answered_at")
                and (row.box_id not in last or v["answered_at"] >= last[row.box_id][0])):
            last[row.box_id] = (v["answered_at"], v["score"])
    out = []
    for box_id, b in boxes.items():
        rb = 100 * b["reb"] / b["watch"] if b["watch"] else None
        share = b["failed"] / b["n"]
        out.append({
            "box_id": box_id,
            "risk": min(1.0, 0.1 + 0.1 * (rb or 0.0) + 0.5 * share),
            "sessions": b["n"], "rebuffer_pct": rb,
            "startup_s": sum(b["su"]) / len(b["su"]) if b["su"] else None,
            "bitrate_mbps": b["br"] / b["brw"] if b["brw"] else None,
            "failed_share": share,
            "last_score": last[box_id][1] if box_id in last else None,
            "last_answered_at": last[box_id][0] if box_id in last else None,
        })
    out.sort(key=lambda e: (-e["risk"], e["box_id"]))
    return {"from": _iso(start), "to": _iso(end), "boxes": out[:limit]}
