"""The box's HTTP client: one kept-alive HTTP/1.1 connection, h11 over asyncio streams.

The agent talks to one collector, one request at a time (the uploader has one in flight),
a few times an hour. aiohttp did that job until it turned out to cost about 14 MB of
resident memory on import, half the agent's 30 MB goal (bench/README.md, "Box agent").
This module does the part the agent needs with the pure-Python ``h11`` state machine:

- :class:`HttpClient` lives as long as the agent. It keeps one connection open between
  requests and reuses it; it reconnects when the server closed it, after any error, and
  after it sat idle for ``keepalive_s`` (it closes it then, so a quiet box holds no
  socket; aiohttp's connector did the same after 15 s).
- Explicit timeouts: ``connect_timeout_s`` for TCP connect plus the TLS handshake,
  ``timeout_s`` for the whole request, connect included.
- Every failure is one of the agent's own errors (:mod:`stb_widget.errors`), raised
  ``from`` the low-level one: :class:`~stb_widget.errors.NetworkError` and its
  subclasses, which the uploader retries; use after :meth:`HttpClient.close` is a
  :class:`~stb_widget.errors.ClientClosedError`, which it does not.
- Answers are read whole, Content-Length or chunked or up to the close, and bounded by
  ``max_response_bytes``.

:class:`Poster` is what the uploader depends on, so that a simulator running thousands of
boxes in one process can hand it something else (``simulators.transport`` forwards to one
shared aiohttp session).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol
from urllib.parse import urlsplit

import h11

from .errors import ClientClosedError, NetworkError, NetworkTimeout, ResponseTooLarge

if TYPE_CHECKING:
    import ssl

#: Bound on an answer's body. A collector answer is a few hundred bytes (at most ~60 KiB
#: for a batch of 500 rejected records); anything near this is not the collector.
MAX_RESPONSE_BYTES: Final = 1024 * 1024
#: An idle connection is closed after this long (seconds), as aiohttp's connector did:
#: servers and NAT boxes drop idle connections anyway, usually without telling.
KEEPALIVE_S: Final = 15.0
USER_AGENT: Final = "stb-widget/0.1"
_READ_CHUNK: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class Response:
    """A complete HTTP answer. ``headers`` has lower-case names; repeated headers are
    joined with ``", "``."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Poster(Protocol):
    """What the uploader needs from HTTP: one POST, answered in full.

    Implementations raise :class:`~stb_widget.errors.NetworkError` (or a subclass) for
    anything that is not a complete answer, whatever the status, and apply their own
    timeouts and body bound.
    """

    async def post(self, url: str, *, body: bytes, headers: Mapping[str, str]) -> Response:
        """POST ``body`` to ``url`` with ``headers``; the answer, whatever its status."""
        ...


@dataclass(frozen=True, slots=True)
class _Origin:
    https: bool
    host: str
    port: int
    #: The Host header: as the URL wrote it (IPv6 brackets and any explicit port kept).
    authority: str

    def __str__(self) -> str:
        return f"{'https' if self.https else 'http'}://{self.authority}"


@dataclass(slots=True)
class _Connection:
    origin: _Origin
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    proto: h11.Connection
    idle_timer: asyncio.TimerHandle | None = None

    def usable(self, origin: _Origin) -> bool:
        """Can the next request go on this connection? Not where the server has closed
        or reset it meanwhile (its FIN has been read) or it is for another origin."""
        return (self.origin == origin and not self.writer.is_closing()
                and not self.reader.at_eof() and self.reader.exception() is None)

    def close(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        self.writer.close()


def _split(url: str) -> tuple[_Origin, str]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise NetworkError(f"not a usable URL: {url!r} ({exc})") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NetworkError(f"not an http:// or https:// URL: {url!r}")
    https = parts.scheme == "https"
    origin = _Origin(https, parts.hostname, port or (443 if https else 80),
                     parts.netloc.rpartition("@")[2])
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return origin, target


class HttpClient:
    """The agent's HTTP/1.1 client (see the module docstring); implements :class:`Poster`.

    Requests are serialised (one connection, one request on it at a time). Create it
    inside the running event loop's life and :meth:`close` it when done.
    """

    def __init__(self, *, timeout_s: float, connect_timeout_s: float,
                 user_agent: str = USER_AGENT, max_response_bytes: int = MAX_RESPONSE_BYTES,
                 keepalive_s: float = KEEPALIVE_S) -> None:
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._user_agent = user_agent
        self._max = max_response_bytes
        self._keepalive_s = keepalive_s
        self._conn: _Connection | None = None
        self._lock = asyncio.Lock()
        self._ssl: ssl.SSLContext | None = None
        self._closed = False
        #: Connections opened so far (for tests and logs: reuse shows as fewer).
        self.connections_opened = 0

    @property
    def closed(self) -> bool:
        """Has :meth:`close` been called?"""
        return self._closed

    async def post(self, url: str, *, body: bytes, headers: Mapping[str, str]) -> Response:
        """POST ``body``; the whole answer, whatever its status.

        Raises :class:`~stb_widget.errors.NetworkTimeout` past ``connect_timeout_s`` or
        ``timeout_s``, :class:`~stb_widget.errors.ResponseTooLarge` for an answer over
        ``max_response_bytes``, :class:`~stb_widget.errors.NetworkError` for any other
        failure to get a complete answer, and
        :class:`~stb_widget.errors.ClientClosedError` after :meth:`close`.
        """
        self._check_open()
        origin, target = _split(url)
        async with self._lock:
            self._check_open()
            try:
                async with asyncio.timeout(self._timeout_s):
                    return await self._exchange(origin, target, body, headers)
            except TimeoutError as exc:  # before OSError: TimeoutError is one
                self._drop()
                raise NetworkTimeout(
                    f"POST {origin}{target}: no complete answer within {self._timeout_s:g} s"
                ) from exc
            except NetworkError:
                self._drop()
                raise
            except (OSError, EOFError, h11.ProtocolError) as exc:
                self._drop()
                what = str(exc) or "connection lost"
                raise NetworkError(
                    f"POST {origin}{target}: {type(exc).__name__}: {what}") from exc
            except BaseException:
                # Cancelled mid-request (the agent stopping) or a bug: the connection is in
                # an unknown state, so it must not carry the next request.
                self._drop()
                raise

    async def close(self) -> None:
        """Close the connection, if any; later :meth:`post` calls fail. Idempotent."""
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            # Closing our own socket; an error from the peer at this point changes nothing.
            with contextlib.suppress(OSError):
                await conn.writer.wait_closed()

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("HttpClient used after close()")

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            # Imported here: an http:// collector never needs it. (asyncio loads ssl
            # anyway, so this saves no memory; the CA store that the context loads does.)
            import ssl

            self._ssl = ssl.create_default_context()  # verifies certificate and host name
        return self._ssl

    async def _connect(self, origin: _Origin) -> _Connection:
        context = self._ssl_context() if origin.https else None
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                reader, writer = await asyncio.open_connection(
                    origin.host, origin.port, ssl=context, limit=_READ_CHUNK)
        except TimeoutError as exc:
            raise NetworkTimeout(
                f"connect to {origin} timed out after {self._connect_timeout_s:g} s") from exc
        except (OSError, UnicodeError) as exc:  # UnicodeError: a host name IDNA refuses
            raise NetworkError(f"cannot connect to {origin}: {exc}") from exc
        self.connections_opened += 1
        return _Connection(origin, reader, writer, h11.Connection(h11.CLIENT))

    async def _exchange(self, origin: _Origin, target: str, body: bytes,
                        headers: Mapping[str, str]) -> Response:
        conn = self._conn
        if conn is not None and not conn.usable(origin):
            self._drop()
            conn = None
        if conn is None:
            conn = self._conn = await self._connect(origin)
        elif conn.idle_timer is not None:
            conn.idle_timer.cancel()
            conn.idle_timer = None
        h = conn.proto
        # Host and Content-Length are the client's to set; the caller's others go as given.
        fields = [("Host", origin.authority), ("Content-Length", str(len(body)))]
        given = {k.lower() for k in headers}
        if "user-agent" not in given:
            fields.append(("User-Agent", self._user_agent))
        fields += [(k, v) for k, v in headers.items()
                   if k.lower() not in ("host", "content-length")]
        conn.writer.write(h.send(h11.Request(method="POST", target=target, headers=fields))
                          + h.send(h11.Data(data=body)) + h.send(h11.EndOfMessage()))
        await conn.writer.drain()
        response = await self._read(conn, origin)
        if h.our_state is h11.DONE and h.their_state is h11.DONE:
            h.start_next_cycle()
            conn.idle_timer = asyncio.get_running_loop().call_later(
                self._keepalive_s, self._idle_expired, conn)
        else:  # "Connection: close", HTTP/1.0, or an answer that ends with the connection
            self._drop()
        return response

    async def _read(self, conn: _Connection, origin: _Origin) -> Response:
        h = conn.proto
        status = 0
        headers: dict[str, str] = {}
        chunks: list[bytes] = []
        size = 0
        while True:
            event = h.next_event()
            if event is h11.NEED_DATA:
                h.receive_data(await conn.reader.read(_READ_CHUNK))  # b"" is the end
            elif isinstance(event, h11.Response):
                status = event.status_code
                for name, value in event.headers:
                    key, text = name.decode("ascii"), value.decode("latin-1")
                    headers[key] = f"{headers[key]}, {text}" if key in headers else text
                length = headers.get("content-length", "")
                if length.isdigit() and int(length) > self._max:
                    raise ResponseTooLarge(f"answer from {origin} is {length} bytes, over "
                                           f"the {self._max}-byte bound")
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > self._max:
                    raise ResponseTooLarge(
                        f"answer from {origin} is over the {self._max}-byte bound")
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return Response(status, headers, b"".join(chunks))
            elif isinstance(event, h11.InformationalResponse):
                continue  # 100 Continue and the like: the real answer follows
            else:  # ConnectionClosed (or PAUSED, which cannot happen before the end)
                raise NetworkError(f"{origin} closed the connection before answering")

    def _idle_expired(self, conn: _Connection) -> None:
        if self._conn is conn and not self._lock.locked():
            self._drop()
