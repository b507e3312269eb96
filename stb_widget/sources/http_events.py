"""The ``http`` source: player events POSTed to a small HTTP endpoint on 127.0.0.1.

This is how an HTML5 player feeds the agent: a web page cannot open a unix socket, but
it can ``fetch()``. The bridge shipped in ``stb_widget/bridge/nps-bridge.js`` attaches to
a ``<video>`` (and Shaka Player, dash.js or hls.js) and posts here.

``POST /events`` carries one or more contract §2 event lines (JSON, one object a line,
the same lines as the ``events`` socket, each parsed by
:func:`~stb_widget.events.parse_event_line` and fed in order). The answer:

- ``200 {"accepted": n}``: every line was taken;
- ``400 {"accepted": n, "error": "...", "bad_lines": [{"line": i, "error": "..."}]}``:
  some lines were bad (``line`` counts from 1, blank lines included); the good lines of
  the same body *were* taken, in order. A player that resends the whole body on a 400
  would count its good events twice, so it must not;
- ``413``: the body is over :data:`MAX_BODY` bytes; nothing of it was taken and the
  connection is closed (the rest of the body is never read);
- ``404``/``405``: another path or method.

The server is the agent's own, like its client (:mod:`stb_widget.http_client`): the
pure-Python ``h11`` state machine over asyncio streams, no aiohttp on the box. It binds
127.0.0.1 only: the box's own pages are its only writers.

CORS: the box UI's page comes from another origin than this endpoint (``file://``, a
local web server, or the operator's portal), so the browser asks before a JSON POST
(preflight) and hides the answer unless allowed. The endpoint allows any origin
(``Access-Control-Allow-Origin: *``), without credentials, for ``POST`` with a
``Content-Type`` header, and answers Chromium's Private Network Access preflight
(``Access-Control-Allow-Private-Network``) so that a portal served from the network may
reach loopback. That exposes nothing: the answers hold only counts and what was wrong
with the posted lines. It is no access control either: any page on the box could send
a "simple" text/plain POST without asking; loopback binding is the boundary, as the unix
socket's file mode is for the ``events`` source.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Final

import h11
import orjson

from ..errors import EventError, SourceError
from ..events import parse_event_line
from . import Feed, ServedSource

log = logging.getLogger(__name__)

#: Largest request body taken (bytes); a player posts a few events at a time.
MAX_BODY: Final = 64 * 1024
#: Largest request head (request line and headers), in bytes.
MAX_HEAD: Final = 16 * 1024
#: A connection that sends nothing for this long is closed (browsers keep connections
#: open between requests; the agent keeps no socket of a page that went away).
IDLE_TIMEOUT_S: Final = 30.0
#: Requests at once beyond this are refused at accept (a runaway page cannot exhaust
#: the agent's file descriptors).
MAX_CONNECTIONS: Final = 32
#: Bad lines listed in one answer (the count is always exact).
_MAX_LISTED: Final = 20
_LOG_FIRST: Final = 20
_LOG_EVERY: Final = 1000
_READ_CHUNK: Final = 16 * 1024
#: After a 413, the rest of the body is read and dropped for up to this long / this much.
_LINGER_S: Final = 1.0
_LINGER_BYTES: Final = 1024 * 1024
#: The host the endpoint binds; never anything but loopback.
HOST: Final = "127.0.0.1"

_CORS: Final[list[tuple[bytes, bytes]]] = [(b"access-control-allow-origin", b"*")]
_PREFLIGHT: Final[list[tuple[bytes, bytes]]] = [
    *_CORS,
    (b"access-control-allow-methods", b"POST, OPTIONS"),
    (b"access-control-allow-headers", b"content-type"),
    (b"access-control-allow-private-network", b"true"),
    (b"access-control-max-age", b"86400"),
]


class _TooLarge(Exception):
    """The body went over MAX_BODY (internal: answered 413)."""


class HttpEventsSource(ServedSource):
    """Serves ``POST /events`` on 127.0.0.1:``port`` and feeds each good line to ``feed``."""

    def __init__(self, port: int, feed: Feed, *, host: str = HOST) -> None:
        super().__init__()
        self._port = port
        self._host = host
        self._feed = feed
        self.bad_lines = 0
        self.accepted = 0

    @property
    def port(self) -> int:
        """The port listened on (the bound one where 0 was asked for)."""
        if self._server is not None and self._server.sockets:
            bound: int = self._server.sockets[0].getsockname()[1]
            return bound
        return self._port

    async def start(self) -> None:
        """Bind the listening socket."""
        try:
            self._server = await asyncio.start_server(self._client, self._host, self._port)
        except OSError as exc:
            raise SourceError(f"player.http_port: cannot listen on {self._host}:{self._port}: "
                              f"{exc.strerror or exc}") from exc
        log.info("listening for player events on http://%s:%d/events", self._host, self.port)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._conns) >= MAX_CONNECTIONS:
            writer.close()
            return
        self._conns.add(task)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        try:
            while await self._one_request(conn, reader, writer):
                conn.start_next_cycle()
        except (asyncio.CancelledError, ConnectionError, OSError, TimeoutError):
            # Shutdown, or the page went away or sat idle: nothing to answer.
            pass
        finally:
            self._conns.discard(task)
            writer.close()

    async def _next(self, conn: h11.Connection, reader: asyncio.StreamReader) -> h11.Event:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            data = await asyncio.wait_for(reader.read(_READ_CHUNK), IDLE_TIMEOUT_S)
            conn.receive_data(data)

    async def _one_request(self, conn: h11.Connection, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> bool:
        """Read and answer one request; True where the connection may carry another."""
        try:
            event = await self._next(conn, reader)
        except h11.RemoteProtocolError as exc:
            await self._send(conn, writer, exc.error_status_hint,
                             {"error": f"bad HTTP request: {exc}"}, close=True)
            return False
        if isinstance(event, h11.ConnectionClosed) or not isinstance(event, h11.Request):
            return False
        target = event.target.split(b"?", 1)[0]
        method = event.method
        if target != b"/events":
            await self._drain_and_answer(conn, reader, writer, 404,
                                         {"error": "not found: POST event lines to /events"})
        elif method == b"OPTIONS":
            await self._drain_and_answer(conn, reader, writer, 204, None, _PREFLIGHT)
        elif method != b"POST":
            await self._drain_and_answer(conn, reader, writer, 405,
                                         {"error": "method not allowed: POST event lines"},
                                         [(b"allow", b"POST, OPTIONS")])
        else:
            length = _content_length(event.headers)
            if length is not None and length > MAX_BODY:
                await self._too_large(conn, reader, writer)
                return False
            if conn.they_are_waiting_for_100_continue:
                writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
            try:
                body = await self._body(conn, reader)
            except _TooLarge:
                await self._too_large(conn, reader, writer)
                return False
            except h11.RemoteProtocolError as exc:
                await self._send(conn, writer, 400, {"error": f"bad HTTP request: {exc}"},
                                 close=True)
                return False
            status, answer = await self._take(body)
            await self._send(conn, writer, status, answer)
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    async def _body(self, conn: h11.Connection, reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        size = 0
        while True:
            event = await self._next(conn, reader)
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > MAX_BODY:
                    raise _TooLarge
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(parts)
            else:  # ConnectionClosed mid-body
                raise ConnectionError("closed mid-body")

    async def _drain_and_answer(self, conn: h11.Connection, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter, status: int,
                                answer: dict[str, object] | None,
                                extra: list[tuple[bytes, bytes]] | None = None) -> None:
        try:
            await self._body(conn, reader)
        except (_TooLarge, h11.RemoteProtocolError):
            await self._send(conn, writer, status, answer, extra, close=True)
            return
        await self._send(conn, writer, status, answer, extra)

    async def _too_large(self, conn: h11.Connection, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        log.warning("player events POST refused: body over %d bytes", MAX_BODY)
        await self._send(conn, writer, 413,
                         {"error": f"body over {MAX_BODY} bytes; send fewer events at a time"},
                         close=True)
        # A lingering close: closing with the client's body still unread would reset the
        # connection, and the client might lose the 413 before reading it. Read (and drop)
        # what follows for a moment, bounded in time and bytes.
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(_LINGER_S):
                dropped = 0
                while dropped < _LINGER_BYTES:
                    chunk = await reader.read(_READ_CHUNK)
                    if not chunk:
                        break
                    dropped += len(chunk)

    async def _take(self, body: bytes) -> tuple[int, dict[str, object]]:
        """Parse and feed every line of ``body``; the status and the answer's document."""
        accepted = 0
        bad: list[dict[str, object]] = []
        for number, line in enumerate(body.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                event = parse_event_line(line)
            except EventError as exc:
                bad.append({"line": number, "error": str(exc)})
                self.bad_lines += 1
                if self.bad_lines <= _LOG_FIRST or self.bad_lines % _LOG_EVERY == 0:
                    log.warning("bad player event line %d of a POST skipped (%s): %.120r",
                                number, exc, line)
                continue
            await self._feed(event)
            accepted += 1
        self.accepted += accepted
        if not bad and not accepted:
            return 400, {"accepted": 0, "error": "no event lines in the body", "bad_lines": []}
        if not bad:
            return 200, {"accepted": accepted}
        summary = "; ".join(f"line {b['line']}: {b['error']}" for b in bad[:_MAX_LISTED])
        more = len(bad) - _MAX_LISTED
        if more > 0:
            summary += f"; and {more} more"
        return 400, {"accepted": accepted,
                     "error": f"{len(bad)} bad line(s) skipped, {accepted} taken: {summary}",
                     "bad_lines": bad[:_MAX_LISTED]}

    async def _send(self, conn: h11.Connection, writer: asyncio.StreamWriter, status: int,
                    answer: dict[str, object] | None,
                    extra: list[tuple[bytes, bytes]] | None = None, *,
                    close: bool = False) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return  # the answer was already sent (h11 lets a server answer a bad request
            # while still IDLE)
        body = b"" if answer is None else orjson.dumps(answer)
        headers = [*(extra if extra is not None else _CORS),
                   (b"content-length", str(len(body)).encode()),
                   (b"cache-control", b"no-store")]
        if answer is not None:
            headers.append((b"content-type", b"application/json"))
        if close:
            headers.append((b"connection", b"close"))
        data = conn.send(h11.Response(status_code=status, headers=headers))
        if body:
            data += conn.send(h11.Data(data=body))
        data += conn.send(h11.EndOfMessage())
        writer.write(data)
        with contextlib.suppress(ConnectionError):
            await writer.drain()


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:  # h11 refuses such a request before we see it
                return None
    return None
