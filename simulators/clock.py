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
import itertools
import math
from collections import deque
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
        self._start_ts = self.start.timestamp()
        self._now = 0.0
        self._res = resolution_s
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
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
        return self.start + timedelta(seconds=self._now)

    def monotonic(self) -> float:
        """Virtual seconds since the start."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of virtual time (cancellable)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        deadline = self._now + max(0.0, seconds)
        if self._res > 0:
            # Rounding up to the resolution groups wake-ups into fewer instants to settle.
            deadline = math.ceil(deadline / self._res) * self._res
        heapq.heappush(self._heap, (deadline, next(self._seq), fut))
        await fut

    # -- driving ------------------------------------------------------------------------

    @property
    def now(self) -> float:
        """Virtual seconds since the start."""
        return self._now

    def wall_ts(self) -> float:
        """The virtual wall time as a POSIX timestamp (cheaper than :meth:`wall`)."""
        return self._start_ts + self._now

    def busy(self) -> _Busy:
        """Context manager marking real work (a buffer write) time must wait for."""
        return _Busy(self)

    def next_deadline(self) -> float | None:
        """The earliest pending deadline, if any (cancelled sleeps are dropped)."""
        heap = self._heap
        while heap and heap[0][2].done():
            heapq.heappop(heap)
        return heap[0][0] if heap else None

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
        heap = self._heap
        while heap and heap[0][0] <= self._now:
            fut = heapq.heappop(heap)[2]
            if not fut.done():
                fut.set_result(None)
                self.fired += 1
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

    def advance_to(self, t: float) -> None:
        """Jump to ``t`` without firing anything (only when nothing is due before ``t``)."""
        self._now = max(self._now, t)


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
        return self._base.wall() + timedelta(seconds=self.skew_s)

    def monotonic(self) -> float:
        """Virtual seconds (monotonic clocks are not skewed)."""
        return self._base.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Wait in virtual time."""
        await self._base.sleep(seconds)
