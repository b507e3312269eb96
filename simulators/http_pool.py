"""The fleet's HTTP: a pool of the agent's own HTTP clients, kept alive to the collector.

A fleet in one process sends a few hundred thousand small POSTs (one gzip batch, one
short JSON answer each) to one collector. Through ``aiohttp.ClientSession`` each cost the
simulation about a third of a millisecond of CPU, as much as the agent's own work for a
session. :class:`HttpPool` instead hands each request to an idle
:class:`~stb_widget.http_client.HttpClient`, the very client a box uses (h11 over asyncio
streams, one kept-alive connection each), and opens another only when all are busy: the
callers bound the connections by bounding their concurrency (:class:`Gate`). The
requests are real HTTP over real TCP to the real collector, parsed by the same code as on
a box.

:class:`HttpPool` is an agent :class:`~stb_widget.http_client.Poster`, and fails as the
box's own client does, with the agent's errors (which the uploader retries):
:class:`~stb_widget.errors.NetworkTimeout` past the connect or the request timeout,
:class:`~stb_widget.errors.ResponseTooLarge` for an answer over the bound, and
:class:`~stb_widget.errors.NetworkError` for anything else that is not a complete answer.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from types import TracebackType
from urllib.parse import urlsplit

from stb_widget.http_client import MAX_RESPONSE_BYTES, HttpClient, Response


class HttpPool:
    """Kept-alive HTTP/1.1 connections to one ``http://`` origin, shared by many callers.

    Each connection is an :class:`HttpClient` carrying one request at a time; an idle one
    is reused, else a new one is made. ``timeout_s`` bounds each request (connect
    included), ``connect_timeout_s`` the connect.
    """

    def __init__(self, origin: str, *, timeout_s: float = 30.0, connect_timeout_s: float = 10.0,
                 user_agent: str = "box-sim/0.1", max_body: int = MAX_RESPONSE_BYTES) -> None:
        parts = urlsplit(origin)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"HttpPool needs an http:// origin, not {origin!r}")
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._user_agent = user_agent
        self._max_body = max_body
        self._idle: list[HttpClient] = []
        #: Every client made (one per request in flight at the busiest moment).
        self._made: list[HttpClient] = []

    @property
    def connections_opened(self) -> int:
        """Connections opened so far (reuse shows as few)."""
        return sum(c.connections_opened for c in self._made)

    async def post(self, url: str, *, body: bytes, headers: Mapping[str, str]) -> Response:
        """POST ``body`` to ``url`` (on this pool's origin); the whole answer."""
        client = self._idle.pop() if self._idle else self._new()
        try:
            return await client.post(url, body=body, headers=headers)
        finally:
            # After a failure too: the client drops a broken connection itself and
            # reconnects on its next request, as on a box.
            if not client.closed:
                self._idle.append(client)

    def _new(self) -> HttpClient:
        client = HttpClient(timeout_s=self._timeout_s, connect_timeout_s=self._connect_timeout_s,
                            user_agent=self._user_agent, max_response_bytes=self._max_body)
        self._made.append(client)
        return client

    async def close(self) -> None:
        """Close every connection."""
        self._idle.clear()
        for client in self._made:
            await client.close()


class Gate:
    """At most ``limit`` holders at a time (``async with gate:``); the others wait, first
    come first served.

    What ``asyncio.Semaphore`` does, at a constant cost: in Python 3.11 its ``acquire``
    calls ``locked()``, which looks at every waiter, and with thousands of simulated boxes
    queued for the fleet's connections that scan cost more than the requests themselves.
    """

    __slots__ = ("_free", "_waiters")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a gate lets at least one through")
        self._free = limit
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def __aenter__(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed a place, then cancelled: pass it on
            # (A cancelled waiter stays queued; _release skips it.)
            raise

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._release()

    def _release(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the place goes straight to the next in line
                return
        self._free += 1
