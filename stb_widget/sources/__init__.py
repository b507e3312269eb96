"""Player sources: each turns one player's reports into :class:`~stb_widget.events.PlayerEvent`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..events import PlayerEvent

#: Where a source hands its events (``Agent.feed``).
Feed = Callable[[PlayerEvent], Awaitable[None]]

__all__ = ["Feed"]
