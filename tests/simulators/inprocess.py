"""A collector's intake in the fleet's own process, for tests that need many fleets and
only their records (the 40-fleet coverage test of the planted truth).

It answers ``POST /v1/boxes`` with a token and ``POST /v1/batches`` as contract section 3
says, after reading each body with the collector's own decoder (``protocol``: the size
limits, gzip, every field check): the contract's answer, counts that add up, a record id
held already counted a duplicate. It keeps what it accepted, and hands it back shaped as
``GET /v1/export`` lines, so that the same reference (``impact_ref``) reads either. The
test that uses it runs some of its fleets through a real collector over HTTP as well and
checks that both give the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from protocol import SessionRecord, decode_batch, inflate
from protocol.spec import encode_object
from stb_widget.http_client import Response

_JSON = {"content-type": "application/json"}


class InProcessCollector:
    """A :class:`~stb_widget.http_client.Poster` that is a collector's intake."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        #: id -> the record's export line (its JSON, its box id and the batch's box).
        self.sessions: dict[str, dict[str, Any]] = {}
        self.surveys: dict[str, dict[str, Any]] = {}

    async def post(self, url: str, *, body: bytes, headers: Mapping[str, str]) -> Response:
        """Answer one request as the collector would (no faults: a well-behaved fleet)."""
        if url.endswith("/v1/boxes"):
            box_id = orjson.loads(body)["box_id"]
            token = self.tokens.setdefault(box_id, f"token-{len(self.tokens):06d}-{box_id}")
            return Response(201, _JSON, orjson.dumps({"box_id": box_id, "token": token}))
        assert url.endswith("/v1/batches"), url
        gzipped = headers.get("Content-Encoding") == "gzip"
        batch = decode_batch(inflate(body, gzipped=gzipped))
        env = batch.envelope
        assert headers["Authorization"] == f"Bearer {self.tokens[env.box_id]}"
        box = encode_object(env.box) if env.box is not None else None
        accepted = duplicates = 0
        for r in batch.accepted:
            held = self.sessions if isinstance(r.record, SessionRecord) else self.surveys
            if r.record.id in held:
                duplicates += 1
                continue
            held[r.record.id] = encode_object(r.record) | {"box_id": env.box_id, "box": box}
            accepted += 1
        rejected = [{"index": r.index, "id": r.id, "error": r.error} for r in batch.rejected]
        answer = {"accepted": accepted, "duplicates": duplicates, "rejected": rejected}
        return Response(200, _JSON, orjson.dumps(answer))

    def export(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The sessions and surveys held, as ``GET /v1/export`` lines (the fields read)."""
        return list(self.sessions.values()), list(self.surveys.values())


def impact_columns(sessions: list[dict[str, Any]], surveys: list[dict[str, Any]]) -> dict[str, Any]:
    """The keyword arguments of :func:`collector.impact.impact_from_arrays` for these
    export lines: the rows of contract section 6 (answered surveys whose session is known,
    less sessions that showed a frame but have no bitrate), nulls as NaN."""
    by_id = {s["id"].lower(): s for s in sessions}
    cols: dict[str, list[Any]] = {k: [] for k in (
        "box_id", "score", "region", "model", "firmware", "content_type", "rebuffer_ratio",
        "startup_ms", "avg_bitrate_kbps", "failed")}
    for v in surveys:
        if v["outcome"] != "answered" or v.get("session_id") is None:
            continue
        s = by_id.get(v["session_id"].lower())
        if s is None:
            continue
        q = s["qos"]
        if q["startup_ms"] is not None and q["avg_bitrate_kbps"] is None:
            continue
        box = v.get("box") or {}
        cols["box_id"].append(v["box_id"])
        cols["score"].append(v["score"])
        for k in ("region", "model", "firmware"):
            cols[k].append(box.get(k))
        cols["content_type"].append(s.get("content_type"))
        cols["rebuffer_ratio"].append(q["rebuffer_s"] / q["watch_s"] if q["watch_s"] > 0 else 0.0)
        cols["startup_ms"].append(np.nan if q["startup_ms"] is None else q["startup_ms"])
        cols["avg_bitrate_kbps"].append(np.nan if q["avg_bitrate_kbps"] is None
                                        else q["avg_bitrate_kbps"])
        cols["failed"].append(1.0 if q["failed"] else 0.0)
    out: dict[str, Any] = dict(cols)
    for k in ("score", "rebuffer_ratio", "startup_ms", "avg_bitrate_kbps", "failed"):
        out[k] = np.asarray(cols[k], dtype=np.float64)
    return out
