"""A fake collector for the agent's tests: answers a script of statuses, then 200s.

It decodes every batch with the real protocol decoder, keeps accepted records by id
(so a record sent twice is a duplicate, as with the real collector) and remembers each
request.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from protocol import Accepted, decode_batch

Step = int | str  # a status, or "reset", "portal"


@dataclass
class Seen:
    """One request as received."""

    status: int | str
    ids: list[str]
    sent_at: str
    headers: dict[str, str]


@dataclass
class FakeCollector:
    script: list[Step] = field(default_factory=list)
    retry_after: str = "7"
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    on_request: Callable[[], None] | None = None
    duplicates: int = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=2 * 1024 * 1024)
        app.router.add_post("/v1/batches", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        # aiohttp inflates a gzip request body itself; accept either form.
        body = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        batch = decode_batch(body)
        ids = [r.record.id for r in batch.records if isinstance(r, Accepted)]
        step: Step = self.script.pop(0) if self.script else 200
        self.seen.append(Seen(step, ids, orjson.loads(body)["sent_at"], dict(request.headers)))
        if self.on_request is not None:
            self.on_request()
        if step == "reset":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)
        if step == "portal":
            return web.Response(status=200, text="<html><body>Log in to Hotel WiFi</body></html>",
                                content_type="text/html")
        if step == 200:
            accepted = dups = 0
            for r in batch.records:
                assert isinstance(r, Accepted)
                if r.record.id in self.records:
                    dups += 1
                else:
                    self.records[r.record.id] = r.raw
                    accepted += 1
            self.duplicates += dups
            return web.json_response({"accepted": accepted, "duplicates": dups, "rejected": []})
        headers = {"Retry-After": self.retry_after} if step in (429, 503) and self.retry_after else {}
        code = {401: "unauthorized", 403: "forbidden", 413: "too_large"}.get(int(step), "x")
        return web.json_response({"error": code, "detail": "fake"}, status=int(step),
                                 headers=headers)
