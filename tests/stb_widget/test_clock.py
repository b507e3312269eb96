"""wait_event: the event or the time, whichever comes first, on any clock."""

from __future__ import annotations

import asyncio
import time

import pytest

from stb_widget.clock import SystemClock, wait_event

from .conftest import FakeClock

pytestmark = pytest.mark.timeout(60)


def tasks_now() -> int:
    return len(asyncio.all_tasks())


async def test_timer_clock_times_out_without_tasks() -> None:
    clock = SystemClock()
    event = asyncio.Event()
    before = tasks_now()
    seen: list[int] = []

    async def probe() -> None:
        await asyncio.sleep(0.01)
        seen.append(tasks_now())

    p = asyncio.create_task(probe())
    t0 = time.monotonic()
    assert await wait_event(clock, event, 0.05) is False
    assert 0.04 <= time.monotonic() - t0 < 1.0
    await p
    # Only this test's task and the probe: the wait itself made none.
    assert seen == [before + 1]
    # The timer's cancellation was taken back: the task goes on as if nothing happened.
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0.01)


async def test_timer_clock_event_wins() -> None:
    clock = SystemClock()
    event = asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, event.set)
    t0 = time.monotonic()
    assert await wait_event(clock, event, 5.0) is True
    assert time.monotonic() - t0 < 1.0
    assert await wait_event(clock, event, 5.0) is True  # already set: at once
    assert await wait_event(SystemClock(), asyncio.Event(), 0) is False


async def test_timer_clock_event_and_timer_in_the_same_instant() -> None:
    # The timer fires after the event was set but before the task resumed: the answer is
    # still True, and no cancellation is left pending on the task.
    clock = SystemClock()
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    at = loop.time() + 0.02
    loop.call_at(at, event.set)
    assert await wait_event(clock, event, 0.02) is True
    await asyncio.sleep(0.01)  # a pending cancel would strike here


async def test_timer_clock_outside_cancel_is_not_swallowed() -> None:
    clock = SystemClock()
    event = asyncio.Event()
    waiter = asyncio.create_task(wait_event(clock, event, 5.0))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter

    # Cancelled from outside in the very instant the timer fires: still cancelled.
    waiter = asyncio.create_task(wait_event(clock, event, 0.02))
    loop = asyncio.get_running_loop()
    loop.call_at(loop.time() + 0.02, waiter.cancel)
    with pytest.raises(asyncio.CancelledError):
        await waiter


async def test_clock_without_timers_falls_back_to_sleep() -> None:
    clock = FakeClock()
    event = asyncio.Event()
    t0 = clock.monotonic()
    assert await wait_event(clock, event, 30.0) is False
    assert clock.monotonic() - t0 == 30.0
    asyncio.get_running_loop().call_soon(event.set)
    assert await wait_event(clock, event, 3600.0) is True
