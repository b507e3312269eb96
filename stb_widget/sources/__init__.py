"""Player sources: each turns one player's reports into :class:`~stb_widget.events.PlayerEvent`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ..events import PlayerEvent

#: Where a source hands its events (``Agent.feed``).
Feed = Callable[[PlayerEvent], Awaitable[None]]


class ServedSource:
    """A source that listens for players (a unix socket, a loopback HTTP port): the serving
    loop and the shutdown both kinds share. Subclasses bind in :meth:`start`, keep each
    connection's task in ``_conns``, and may clean up after closing in :meth:`_closed`."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Start listening."""
        raise NotImplementedError

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
        """Stop listening and drop the connections; closing twice is harmless."""
        if self._server is not None:
            self._server.close()
            for task in list(self._conns):
                task.cancel()
            await asyncio.gather(*self._conns, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
            self._closed()

    def _closed(self) -> None:
        """After the server closed (nothing by default)."""


__all__ = ["Feed", "ServedSource"]
