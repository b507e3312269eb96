"""The ``events`` source: JSON lines on a unix socket the agent listens on.

Any number of writers, connecting and disconnecting as they like; a writer going away
ends nothing. A bad line is logged and skipped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from pathlib import Path

from ..errors import EventError, SourceError
from ..events import MAX_LINE, parse_event_line
from . import Feed

log = logging.getLogger(__name__)

#: Bad lines logged in full per connection; after that one in every ``_LOG_EVERY``.
_LOG_FIRST = 20
_LOG_EVERY = 1000


class EventsSocketSource:
    """Listens on ``path`` and feeds each good line to ``feed``."""

    def __init__(self, path: str | Path, feed: Feed, mode: int = 0o660) -> None:
        self._path = Path(path)
        self._feed = feed
        self._mode = mode
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self.bad_lines = 0

    async def start(self) -> None:
        """Bind the socket (a stale socket file from a previous run is replaced)."""
        try:
            if self._path.is_socket():
                self._path.unlink()
            elif self._path.exists():
                raise SourceError(f"player.events_socket: {self._path} exists and is no socket")
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._server = await asyncio.start_unix_server(
                self._client, path=str(self._path), limit=MAX_LINE + 1
            )
            os.chmod(self._path, stat.S_IMODE(self._mode))
        except OSError as exc:
            raise SourceError(f"player.events_socket: cannot listen on {self._path}: {exc}") \
                from exc
        log.info("listening for player events on %s", self._path)

    async def run(self) -> None:
        """Serve until cancelled."""
        if self._server is None:
            await self.start()
        assert self._server is not None
        try:
            await self._server.serve_forever()
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop listening and drop the writers."""
        if self._server is not None:
            self._server.close()
            for task in list(self._conns):
                task.cancel()
            await asyncio.gather(*self._conns, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
            self._path.unlink(missing_ok=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        bad = 0
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than MAX_LINE: the rest of it is dropped
                    line = b"\x00too long"
                except (ConnectionError, OSError):
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                try:
                    event = parse_event_line(line)
                except EventError as exc:
                    bad += 1
                    self.bad_lines += 1
                    if bad <= _LOG_FIRST or bad % _LOG_EVERY == 0:
                        log.warning("bad player event line skipped (%s): %.120r", exc, line)
                    continue
                await self._feed(event)
        except asyncio.CancelledError:
            # close() cancels the writers' handlers; ending quietly here keeps asyncio's
            # stream callback from logging the cancellation as an error at every shutdown.
            pass
        finally:
            self._conns.discard(task)
            writer.close()
