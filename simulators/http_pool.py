"""A lean HTTP/1.1 client for the fleet: kept-alive connections to the one collector.

A fleet in one process sends a few hundred thousand small POSTs (one gzip batch, one
short JSON answer each) to one collector. Through ``aiohttp.ClientSession`` each cost the
simulation about a third of a millisecond of CPU, as much as the agent's own work for a
session. This client does only what that traffic needs, on plain ``asyncio.Protocol``
connections: write the request in one call, parse the status line and headers of the
answer, read its body by ``Content-Length`` (or chunked, or up to the close). It is the
fleet's plumbing, not the box's (each box's agent has its own client for a real line);
the requests are real HTTP over real TCP to the real collector all the same.

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
from typing import Final
from urllib.parse import urlsplit

from stb_widget.errors import NetworkError, NetworkTimeout, ResponseTooLarge
from stb_widget.http_client import MAX_RESPONSE_BYTES, Response

#: Longest answer head (status line and headers) accepted.
MAX_HEAD_BYTES: Final = 64 * 1024


class _Connection(asyncio.Protocol):
    """One kept-alive connection; one request on it at a time."""

    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.alive = False
        self._buf = bytearray()
        self._waiter: asyncio.Future[Response] | None = None
        # The answer being read: its status and headers once the head is in, and how its
        # body ends: ``_length`` bytes, chunked, or at the close (``_length`` None).
        self._status = 0
        self._headers: dict[str, str] | None = None
        self._length: int | None = None
        self._chunked = False
        self._keep = True

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.alive = True

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._waiter is None:
            # Bytes nobody asked for: the connection is out of step; do not reuse it.
            self._fail(NetworkError("unexpected data from the server"))
            return
        try:
            self._parse()
        except NetworkError as exc:
            self._fail(exc)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._headers is not None and self._length is None and not self._chunked:
            self._finish(bytes(self._buf))  # an answer that ends with the connection
            return
        self._waiter = None
        waiter.set_exception(NetworkError(
            f"connection closed before the answer was complete ({exc or 'by the server'})"))

    # -- one exchange -------------------------------------------------------------------

    def send(self, request: bytes) -> asyncio.Future[Response]:
        """Write ``request`` (a whole HTTP/1.1 message); the future gets the answer."""
        assert self.transport is not None and self._waiter is None
        waiter: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self._headers = None
        self._buf.clear()
        self.transport.write(request)
        return waiter

    def abort(self) -> None:
        """Drop the connection at once (after a timeout or an error)."""
        self.alive = False
        self._waiter = None
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, exc: Exception) -> None:
        waiter = self._waiter
        self.abort()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _parse(self) -> None:
        buf = self._buf
        while self._headers is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    raise NetworkError("answer head too long")
                return
            self._head(bytes(buf[:end]))
            del buf[:end + 4]
        if self._chunked:
            body = self._dechunk()
            if body is not None:
                self._finish(body)
        elif self._length is not None:
            if len(buf) >= self._length:
                self._finish(bytes(buf[:self._length]))
        elif len(buf) > self._max_body:
            raise ResponseTooLarge(f"answer over {self._max_body} bytes")

    def _head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise NetworkError(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise NetworkError(f"bad header line: {line[:80]!r}")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        status = int(code)
        if 100 <= status < 200:
            return  # 100 Continue and the like: the real answer follows
        self._status = status
        self._headers = headers
        self._keep = (version != "HTTP/1.0"
                      and "close" not in headers.get("connection", "").lower())
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        if self._chunked:
            self._length = None
        elif length is not None:
            if not length.isdigit():
                raise NetworkError(f"bad Content-Length: {length[:40]!r}")
            self._length = int(length)
            if self._length > self._max_body:
                raise ResponseTooLarge(f"answer of {self._length} bytes, over {self._max_body}")
        elif status in (204, 304):
            self._length = 0
        else:
            self._length = None
            self._keep = False  # the body ends with the connection

    def _dechunk(self) -> bytes | None:
        """The whole body once every chunk (and the trailer) is in, else None."""
        buf = self._buf
        out = bytearray()
        pos = 0
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size_text = bytes(buf[pos:eol]).split(b";")[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise NetworkError(f"bad chunk size: {size_text[:20]!r}") from None
            if size == 0:
                end = buf.find(b"\r\n\r\n", eol)  # the (usually empty) trailer
                if end < 0 and buf[eol:eol + 4] != b"\r\n\r\n":
                    return None
                return bytes(out)
            if len(buf) < eol + 2 + size + 2:
                return None
            out += buf[eol + 2:eol + 2 + size]
            if len(out) > self._max_body:
                raise ResponseTooLarge(f"answer over {self._max_body} bytes")
            pos = eol + 2 + size + 2

    def _finish(self, body: bytes) -> None:
        waiter = self._waiter
        headers = self._headers
        assert waiter is not None and headers is not None
        self._waiter = None
        self._buf.clear()
        if not self._keep:
            self.alive = False
            if self.transport is not None:
                self.transport.close()
        if not waiter.done():
            waiter.set_result(Response(self._status, headers, body))


class HttpPool:
    """Kept-alive HTTP/1.1 connections to one ``http://`` origin, shared by many callers.

    A connection carries one request at a time; an idle one is reused, else a new one is
    opened (bound the callers' concurrency to bound the connections). ``timeout_s`` bounds
    each request (connect included), ``connect_timeout_s`` the connect.
    """

    def __init__(self, origin: str, *, timeout_s: float = 30.0, connect_timeout_s: float = 10.0,
                 user_agent: str = "box-sim/0.1", max_body: int = MAX_RESPONSE_BYTES) -> None:
        parts = urlsplit(origin)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"HttpPool needs an http:// origin, not {origin!r}")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._authority = parts.netloc.rpartition("@")[2]
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._user_agent = user_agent
        self._max_body = max_body
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()
        #: Connections opened so far (reuse shows as few).
        self.connections_opened = 0

    async def post(self, url: str, *, body: bytes, headers: Mapping[str, str]) -> Response:
        """POST ``body`` to ``url`` (on this pool's origin); the whole answer."""
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"POST {target} HTTP/1.1\r\nHost: {self._authority}\r\n"
                 f"Content-Length: {len(body)}\r\nUser-Agent: {self._user_agent}\r\n"]
        for k, v in headers.items():
            if k.lower() not in ("host", "content-length", "user-agent"):
                lines.append(f"{k}: {v}\r\n")
        lines.append("\r\n")
        request = "".join(lines).encode("latin-1") + body
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        conn = await self._acquire(deadline)
        waiter = conn.send(request)
        timer = loop.call_at(deadline, _expire, conn, waiter)
        try:
            response = await waiter
        except BaseException:
            conn.abort()
            self._all.discard(conn)
            raise
        finally:
            timer.cancel()
        if conn.alive:
            self._idle.append(conn)
        else:
            self._all.discard(conn)
        return response

    async def _acquire(self, deadline: float) -> _Connection:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.alive and conn.transport is not None and not conn.transport.is_closing():
                return conn
            self._all.discard(conn)
        loop = asyncio.get_running_loop()
        timeout = min(self._connect_timeout_s, deadline - loop.time())
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self._max_body), self._host, self._port)
        except TimeoutError as exc:  # before OSError, which it is
            raise NetworkTimeout(f"connect to {self._host}:{self._port} timed out") from exc
        except OSError as exc:
            raise NetworkError(f"cannot connect to {self._host}:{self._port}: {exc}") from exc
        self.connections_opened += 1
        self._all.add(conn)
        return conn

    async def close(self) -> None:
        """Close every connection."""
        for conn in self._all:
            if conn.transport is not None:
                conn.transport.close()
        self._all.clear()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports' close callbacks run


def _expire(conn: _Connection, waiter: asyncio.Future[Response]) -> None:
    if not waiter.done():
        conn.abort()
        waiter.set_exception(NetworkTimeout("no complete answer in time"))


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
