"""An injectable clock: wall time, monotonic time and sleeping.

Everything in the agent that reads the time or waits goes through a :class:`Clock`, so a
simulator can run the real agent code under a virtual clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
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


class Timer(Protocol):
    """A pending callback that can be called off (``asyncio.TimerHandle`` is one)."""

    def cancel(self) -> None:
        """Do not call the callback (no effect once it ran)."""


class TimerClock(Protocol):
    """A clock that can also call a plain function later, without a task.

    Optional: :func:`wait_event` uses ``call_later`` where a clock has it, and falls back
    to :meth:`Clock.sleep` where it does not. A clock whose ``sleep`` is not the event
    loop's (a subclass of :class:`SystemClock` that changes it) must change this too.
    """

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Timer:
        """Call ``callback()`` once ``seconds`` have passed on this clock."""


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

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Timer:
        """``loop.call_later`` (a :class:`TimerClock`)."""
        return asyncio.get_running_loop().call_later(max(0.0, seconds), callback)


_CallLater = Callable[[float, Callable[[], object]], Timer]


async def wait_event(clock: Clock, event: asyncio.Event, seconds: float | None) -> bool:
    """Wait until ``event`` is set or ``seconds`` pass on ``clock`` (None: no limit).

    Answers whether the event is set. No polling. On a :class:`TimerClock` the wait costs
    no task: the current task waits on the event and a timer on ``clock`` cancels that
    wait (as ``asyncio.timeout`` does), which matters on a box that waits like this after
    every session, and more in a simulator running thousands of boxes. Other clocks get
    two tasks (the event's wait and the clock's sleep), the first one to finish wins.
    """
    if event.is_set():
        return True
    if seconds is None:
        await event.wait()
        return True
    if seconds <= 0:
        return False
    # getattr, not isinstance(clock, TimerClock): a runtime Protocol check costs more
    # than the wait it would save.
    call_later: _CallLater | None = getattr(clock, "call_later", None)
    if call_later is not None:
        return await _wait_event_timer(call_later, event, seconds)
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


async def _wait_event_timer(call_later: _CallLater, event: asyncio.Event,
                            seconds: float) -> bool:
    task = asyncio.current_task()
    assert task is not None, "wait_event runs in a task"
    # Cancellations asked of this task before we start are not ours to swallow.
    before = task.cancelling()
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    timer = call_later(seconds, expire)
    try:
        await event.wait()
    except asyncio.CancelledError:
        # Ours (the time is up) only if nobody else cancelled the task meanwhile; then
        # the cancellation is taken back, as asyncio.timeout does.
        if expired and task.uncancel() <= before:
            return event.is_set()
        raise
    finally:
        timer.cancel()
    # (A timer that fired always interrupts the wait above, even when the event was set
    # in the same instant: the task's pending wake-up becomes the CancelledError.)
    return True
