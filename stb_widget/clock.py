"""An injectable clock: wall time, monotonic time and sleeping.

Everything in the agent that reads the time or waits goes through a :class:`Clock`, so a
simulator can run the real agent code under a virtual clock.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """What the agent needs to know about time."""

    def wall(self) -> datetime:
        """The current wall time, aware, UTC."""

    def monotonic(self) -> float:
        """Seconds on a clock that never steps back."""

    async def sleep(self, seconds: float) -> None:
        """Wait this long (cancellable)."""


class SystemClock:
    """The real clock of the machine."""

    def wall(self) -> datetime:
        """The current wall time, aware, UTC."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(max(0.0, seconds))


async def wait_event(clock: Clock, event: asyncio.Event, seconds: float | None) -> bool:
    """Wait until ``event`` is set or ``seconds`` pass on ``clock`` (None: no limit).

    Answers whether the event is set. No polling: both waits are futures.
    """
    if event.is_set():
        return True
    if seconds is None:
        await event.wait()
        return True
    if seconds <= 0:
        return False
    waiter = asyncio.ensure_future(event.wait())
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait((waiter, sleeper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiter, sleeper):
            if not task.done():
                task.cancel()
        # Let the cancellations land so no task is left pending at loop close.
        await asyncio.gather(waiter, sleeper, return_exceptions=True)
    return event.is_set()
