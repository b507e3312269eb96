"""A see-through wrapper around the agent's record store.

It changes nothing the store does. It (1) tells the virtual clock that a write is in
flight, so time waits for the buffer's thread; (2) notes every record the box made, for
the ground truth and the nothing-lost check; (3) lets a power cut strike in the middle of
a write (:meth:`TrackedStore.arm_power_cut`); (4) with ``held``, shows the uploader an
empty store until :meth:`TrackedStore.release` (a box that cannot reach the collector
yet, so that a simulated week can be uploaded when it ends, with clocks that are right).
It is not the ground truth: that is what the viewers lived (``SimBox.lived``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from protocol import SessionRecord, SurveyRecord
from stb_widget.buffer import Cooldowns, MemoryBuffer, RecordStore, Stored

from .clock import VirtualClock

_R = TypeVar("_R", SessionRecord, SurveyRecord)


class PowerCut(BaseException):
    """The box lost power. A BaseException: the agent's ``except Exception`` must not eat it."""


class TrackedStore:
    """A :class:`~stb_widget.buffer.RecordStore` that delegates every call to ``inner``."""

    def __init__(self, inner: RecordStore, clock: VirtualClock,
                 on_cut: Callable[[], None] | None = None, *,
                 sessions: dict[str, SessionRecord] | None = None,
                 surveys: dict[str, SurveyRecord] | None = None,
                 held: bool = False) -> None:
        self.inner = inner
        self._clock = clock
        #: While held, the uploader waits on an event of this wrapper's that only
        #: :meth:`release` sets; then on the inner store's again.
        self.changed = asyncio.Event() if held else inner.changed
        self._held = held
        self.evictions = inner.evictions
        #: Records whose write returned, by id (the last form written).
        self.sessions: dict[str, SessionRecord] = {} if sessions is None else sessions
        self.surveys: dict[str, SurveyRecord] = {} if surveys is None else surveys
        self._armed = False
        self.dead = False
        # Only a store that works off the event loop (sqlite's thread) makes time wait;
        # MemoryBuffer's coroutines never suspend, so marking them busy would be waste.
        self._threaded = not isinstance(inner, MemoryBuffer)
        self._on_cut = on_cut
        #: The write a power cut interrupted, to be awaited before the file is closed.
        self.cut_write: asyncio.Task[None] | None = None

    @property
    def ready_count(self) -> int:
        """Records that may be uploaded (none while held)."""
        return 0 if self._held else self.inner.ready_count

    @property
    def ready_bytes(self) -> int:
        """Their JSON size."""
        return 0 if self._held else self.inner.ready_bytes

    def oldest_ready_wall_us(self) -> int | None:
        """When the oldest uploadable record became uploadable."""
        return None if self._held else self.inner.oldest_ready_wall_us()

    def wake_when(self, count: int, nbytes: int) -> None:
        """When a new uploadable record sets ``changed`` (the inner store's)."""
        if not self._held:
            self.inner.wake_when(count, nbytes)

    def release(self) -> None:
        """Stop holding: the uploader sees what the store holds, and is woken."""
        if not self._held:
            return
        self._held = False
        waiting = self.changed
        self.changed = self.inner.changed
        waiting.set()

    def cooldowns(self) -> Cooldowns:
        """The cooldown marks."""
        return self.inner.cooldowns()

    def arm_power_cut(self) -> None:
        """Cut the power in the middle of the next write."""
        self._armed = True

    async def _write(self, write: Callable[[_R], Awaitable[None]], record: _R) -> None:
        if self.dead:
            raise PowerCut
        if not self._armed:
            if self._threaded:
                with self._clock.busy():
                    await write(record)
            else:
                await write(record)
            return
        with self._clock.busy():
            self._armed = False
            self.dead = True
            # Let the write get going (a statement or two on the buffer's thread), then die.
            task: asyncio.Task[None] = asyncio.ensure_future(write(record))
            for _ in range(2):
                await asyncio.sleep(0)
            task.cancel()
            self.cut_write = task
            await asyncio.gather(task, return_exceptions=True)
        if self._on_cut is not None:
            self._on_cut()
        raise PowerCut

    async def add_session(self, record: SessionRecord) -> None:
        """Store a finished session (noted once the write returns)."""
        await self._write(self.inner.add_session, record)
        self.sessions[record.id] = record

    async def confirmed(self, record: SurveyRecord) -> None:
        """Store a confirmed answer durably."""
        await self._write(self.inner.confirmed, record)
        self.surveys[record.id] = record

    async def finished(self, record: SurveyRecord) -> None:
        """Store the final survey record."""
        await self._write(self.inner.finished, record)
        self.surveys[record.id] = record

    async def fetch(self, max_records: int, max_bytes: int) -> list[Stored]:
        """The oldest uploadable records."""
        if self.dead:
            raise PowerCut
        if not self._threaded:
            return await self.inner.fetch(max_records, max_bytes)
        with self._clock.busy():
            return await self.inner.fetch(max_records, max_bytes)

    async def delete(self, ids: list[str]) -> None:
        """Forget records the collector has."""
        if self.dead:
            raise PowerCut
        if not self._threaded:
            await self.inner.delete(ids)
            return
        with self._clock.busy():
            await self.inner.delete(ids)

    async def close(self) -> None:
        """Close the inner store."""
        with self._clock.busy():
            await self.inner.close()
