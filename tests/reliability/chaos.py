"""A chaos proxy between boxes and the collector (HTTP-aware, aiohttp, on 127.0.0.1).

Per request it picks a fault: reset before forwarding, forward then reset (the collector
stored the batch, the box never hears it), forward then stall past the box's timeout,
forward then a truncated answer, or pass. Storm windows answer every request 429 or 503
with ``Retry-After`` without forwarding. It logs every request per box (by token) with
its time and what the box was told, so tests can check the boxes' request rate and that
they honour Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

FAULTS = ("reset", "reset_after", "stall", "truncate", "pass")


@dataclass
class Seen:
    at: float
    fault: str
    retry_after: float = 0.0


@dataclass
class ChaosProxy:
    upstream: str
    rng: random.Random
    #: Share of each fault outside storms; the rest pass.
    weights: dict[str, float] = field(default_factory=lambda: {
        "reset": 0.12, "reset_after": 0.12, "stall": 0.06, "truncate": 0.1})
    stall_s: float = 2.5
    #: (period, storm length): for the first ``storm`` seconds of every ``period``, storms.
    storm: tuple[float, float] = (6.0, 2.0)
    storm_retry_after: int = 1
    enabled: bool = True
    log: dict[str, list[Seen]] = field(default_factory=lambda: defaultdict(list))
    server: TestServer | None = None
    _http: aiohttp.ClientSession | None = None
    _t0: float = field(default_factory=time.monotonic)

    async def start(self) -> str:
        app = web.Application(client_max_size=4 << 20)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server(auto_decompress=False)
        self._http = aiohttp.ClientSession(auto_decompress=False)
        return str(self.server.make_url("/"))

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self.server is not None:
            await self.server.close()

    def _pick(self) -> str:
        if not self.enabled:
            return "pass"
        period, storm = self.storm
        if (time.monotonic() - self._t0) % period < storm:
            return self.rng.choice(("429", "503"))
        x = self.rng.random()
        for fault, w in self.weights.items():
            if x < w:
                return fault
            x -= w
        return "pass"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        who = request.headers.get("Authorization", "")
        fault = self._pick()
        seen = Seen(time.monotonic(), fault)
        self.log[who].append(seen)
        body = await request.read()
        assert request.transport is not None
        if fault in ("429", "503"):
            seen.retry_after = self.storm_retry_after
            return web.json_response({"error": "overloaded", "detail": "chaos storm"},
                                     status=int(fault),
                                     headers={"Retry-After": str(self.storm_retry_after)})
        if fault == "reset":
            request.transport.abort()
            return web.Response(status=500)
        assert self._http is not None
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() in ("authorization", "content-type", "content-encoding")}
        async with self._http.request(request.method, self.upstream + request.path_qs,
                                      data=body, headers=headers) as up:
            status, answer = up.status, await up.read()
            up_headers = {k: v for k, v in up.headers.items()
                          if k.lower() in ("content-type", "retry-after")}
        if status in (429, 503):
            with contextlib.suppress(ValueError):
                seen.retry_after = float(up_headers.get("Retry-After", "0"))
        if fault == "reset_after":
            request.transport.abort()
            return web.Response(status=500)
        if fault == "stall":
            await asyncio.sleep(self.stall_s)
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)
        if fault == "truncate":
            head = (f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(answer)}\r\n\r\n").encode()
            request.transport.write(head + answer[: len(answer) // 2])
            await asyncio.sleep(0.01)
            request.transport.abort()
            return web.Response(status=500)
        return web.Response(body=answer, status=status, headers=up_headers)

    def rates(self) -> dict[str, int]:
        """Per box: the most requests seen in any sliding 60 s window."""
        out = {}
        for who, seen in self.log.items():
            times = [s.at for s in seen]
            best, j = 0, 0
            for i, t in enumerate(times):
                while times[j] < t - 60:
                    j += 1
                best = max(best, i - j + 1)
            out[who] = best
        return out

    def early_retries(self, slack: float = 0.05) -> list[tuple[str, float, float]]:
        """Requests that came sooner after a Retry-After answer than it said."""
        early = []
        for who, seen in self.log.items():
            for prev, nxt in itertools.pairwise(seen):
                if prev.retry_after and nxt.at - prev.at < prev.retry_after - slack:
                    early.append((who[-6:], prev.retry_after, nxt.at - prev.at))
        return early
