"""Virtual time: a discrete-event scheduler that lets a week pass in seconds.

Every simulated box's agent gets a :class:`BoxClock` over one shared :class:`VirtualClock`.
``sleep`` does not wait in real time: it parks a future in a heap keyed by virtual
deadline. :meth:`VirtualClock.run_until` advances time to the next deadline only once the
event loop has settled (nothing runnable, no buffer write in flight), so every box sees
the same, reproducible order of events.

HTTP is waited for only loosely (a :class:`TimeGuard`): uploads run in real time in the
background while virtual time goes on, but time never runs more than a set lag ahead of the
oldest request still out. That keeps the collector and the simulation busy at once; what
the boxes' viewers do does not depend on it (see docs/simulators.md).
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol


class TimeGuard(Protocol):
    """Real work that virtual time may run ahead of, but only so far."""

    def allows(self, deadline: float) -> bool:
        """May time move to ``deadline`` now?"""

    async def wait(self) -> None:
        """Wait until some of that work is done."""


class VirtualClock:
    """Shared virtual time for a whole fleet (a ``stb_widget.clock.Clock``).

    ``start`` is the wall time at virtual second 0. Time only moves inside
    :meth:`step` and :meth:`run_until`. With ``resolution_s`` > 0, sleeps end on whole
    multiples of it (at most that much late).
    """

    def __init__(self, start: datetime, resolution_s: float = 0.0) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be an aware datetime")
        self.start = start.astimezone(UTC)
        self._now = 0.0
        self._res = resolution_s
        # Sleeps (futures) and timers (call_later) due at each deadline, in the order they
        # were set, and a heap of those deadlines. With a resolution, thousands of boxes
        # share each deadline: one list append per sleep instead of a heap push of its own.
        self._due: dict[float, list[_Due]] = {}
        self._deadlines: list[float] = []
        # wall() is asked several times per session per box; it changes only with _now.
        self._wall = self.start
        self._wall_at = 0.0
        #: Store operations in flight (threads); time waits for them (see :meth:`settle`).
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        #: Timers fired so far (for the benchmark's figures).
        self.fired = 0
        self._guard: TimeGuard | None = None

    # -- the Clock protocol -------------------------------------------------------------

    def wall(self) -> datetime:
        """The virtual wall time, aware, UTC."""
        if self._wall_at != self._now:
            self._wall = self.start + timedelta(seconds=self._now)
            self._wall_at = self._now
        return self._wall

    def monotonic(self) -> float:
        """Virtual seconds since the start."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of virtual time (cancellable)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._add(seconds, fut)
        await fut

    def call_later(self, seconds: float, callback: Callable[[], object]) -> _Timer:
        """Call ``callback()`` after ``seconds`` of virtual time (a ``TimerClock``).

        No task and no future: the driver calls it when it fires the timers of that
        instant, in the same order as the sleeps due then.
        """
        timer = _Timer(callback)
        self._add(seconds, timer)
        return timer

    def _add(self, seconds: float, item: _Due) -> None:
        deadline = self._now + max(0.0, seconds)
        if self._res > 0:
            # Rounding up to the resolution groups wake-ups into fewer instants to settle.
            deadline = math.ceil(deadline / self._res) * self._res
        bucket = self._due.get(deadline)
        if bucket is None:
            self._due[deadline] = [item]
            heapq.heappush(self._deadlines, deadline)
        else:
            bucket.append(item)

    # -- driving ------------------------------------------------------------------------

    @property
    def now(self) -> float:
        """Virtual seconds since the start."""
        return self._now

    def busy(self) -> _Busy:
        """Context manager marking real work (a buffer write) time must wait for."""
        return _Busy(self)

    def next_deadline(self) -> float | None:
        """The earliest pending deadline, if any (cancelled sleeps and timers are dropped)."""
        deadlines, due = self._deadlines, self._due
        while deadlines:
            deadline = deadlines[0]
            bucket = due[deadline]
            if not bucket[0].done():
                return deadline
            # Most of these are the timers of waits that ended early: drop them once.
            live = [item for item in bucket if not item.done()]
            if live:
                due[deadline] = live
                return deadline
            heapq.heappop(deadlines)
            del due[deadline]
        return None

    async def settle(self) -> None:
        """Return once nothing is runnable and no store write is in flight.

        Reads the loop's ready queue (CPython's ``BaseEventLoop._ready``): without it,
        we could only guess when the callbacks set off by a timer are done.
        """
        loop = asyncio.get_running_loop()
        ready: deque[Any] | None = getattr(loop, "_ready", None)
        spins = 0
        if ready is not None and not ready and not self._busy:
            return
        while True:
            await asyncio.sleep(0)
            if self._busy:
                await self._idle.wait()
                continue
            if ready is not None:
                if not ready:
                    return
            else:  # another loop: a few rounds are the best we can do
                spins += 1
                if spins >= 8:
                    return

    def set_guard(self, guard: TimeGuard | None) -> None:
        """Hold time back for real work that is allowed to lag a little (HTTP)."""
        self._guard = guard

    async def step(self) -> bool:
        """Settle, then fire every sleep due at the next deadline; False when none is left."""
        while True:
            await self.settle()
            deadline = self.next_deadline()
            if deadline is None:
                return False
            guard = self._guard
            if guard is None or guard.allows(deadline):
                break
            # A request sent long ago (in virtual time) is still out: wait for answers, whose
            # handling may set earlier sleeps, then look again.
            await guard.wait()
        self._now = max(self._now, deadline)
        deadlines, due = self._deadlines, self._due
        while deadlines and deadlines[0] <= self._now:
            # In deadline order, and in the order set within one: as a heap of
            # (deadline, sequence) would. A timer's callback may add to a later deadline,
            # or to this one (a zero delay), which this loop then fires too.
            for item in due.pop(heapq.heappop(deadlines)):
                if item.done():
                    continue
                self.fired += 1
                if isinstance(item, _Timer):
                    item.fire()
                else:
                    item.set_result(None)
        return True

    async def run_until(self, t: float) -> None:
        """Advance virtual time to ``t`` (virtual seconds), firing every sleep due before."""
        while True:
            # Settle first: what just ran may have set sleeps due before ``t``.
            await self.settle()
            deadline = self.next_deadline()
            if deadline is None or deadline > t:
                break
            await self.step()
        self._now = max(self._now, t)


class _Timer:
    """A callback due at a virtual time (the ``Timer`` of ``VirtualClock.call_later``)."""

    __slots__ = ("_callback", "_done")

    def __init__(self, callback: Callable[[], object]) -> None:
        self._callback = callback
        self._done = False

    def cancel(self) -> None:
        """Do not call it (no effect once it ran)."""
        self._done = True

    def done(self) -> bool:
        """Called or cancelled."""
        return self._done

    def fire(self) -> None:
        self._done = True
        try:
            self._callback()
        except Exception as exc:  # as the event loop does with a failing callback
            asyncio.get_running_loop().call_exception_handler(
                {"message": "exception in a virtual-clock timer", "exception": exc})


_Due = asyncio.Future[None] | _Timer


class _Busy:
    __slots__ = ("_clock",)

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock

    def __enter__(self) -> None:
        c = self._clock
        c._busy += 1
        c._idle.clear()

    def __exit__(self, *exc: object) -> None:
        c = self._clock
        c._busy -= 1
        if not c._busy:
            c._idle.set()


class BoxClock:
    """One box's view of the virtual clock: the same time, its wall clock off by ``skew_s``."""

    __slots__ = ("_base", "skew_s")

    def __init__(self, base: VirtualClock, skew_s: float = 0.0) -> None:
        self._base = base
        self.skew_s = skew_s

    def wall(self) -> datetime:
        """The box's (possibly wrong) wall time."""
        if not self.skew_s:
            return self._base.wall()
        return self._base.wall() + timedelta(seconds=self.skew_s)

    def monotonic(self) -> float:
        """Virtual seconds (monotonic clocks are not skewed)."""
        return self._base.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Wait in virtual time."""
        await self._base.sleep(seconds)

    def call_later(self, seconds: float, callback: Callable[[], object]) -> _Timer:
        """Call ``callback()`` after ``seconds`` of virtual time."""
        return self._base.call_later(seconds, callback)
