"""The virtual clock: sleeps end in order, at their virtual time, with no real waiting."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from simulators.clock import BoxClock, VirtualClock

pytestmark = pytest.mark.timeout(120)

START = datetime(2026, 11, 1, tzinfo=UTC)


async def test_a_week_of_sleeps_passes_at_once_and_in_order() -> None:
    clock = VirtualClock(START)
    seen: list[tuple[str, float]] = []

    async def sleeper(name: str, *delays: float) -> None:
        for d in delays:
            await clock.sleep(d)
            seen.append((name, clock.now))

    tasks = [asyncio.create_task(sleeper("a", 86_400.0, 86_400.0 * 6)),
             asyncio.create_task(sleeper("b", 10.0, 3600.0))]
    t0 = time.monotonic()
    await clock.run_until(7 * 86_400.0)
    assert time.monotonic() - t0 < 1.0
    await asyncio.gather(*tasks)
    assert seen == [("b", 10.0), ("b", 3610.0), ("a", 86_400.0), ("a", 604_800.0)]
    assert clock.wall() == START + timedelta(days=7)


async def test_time_waits_for_work_in_flight() -> None:
    clock = VirtualClock(START)
    done_at: list[float] = []

    async def writer() -> None:
        with clock.busy():
            await asyncio.to_thread(time.sleep, 0.05)  # a buffer write on its thread
        done_at.append(clock.now)

    async def sleeper() -> None:
        await clock.sleep(5.0)

    w = asyncio.create_task(writer())
    s = asyncio.create_task(sleeper())
    await asyncio.sleep(0)
    await clock.run_until(100.0)
    await asyncio.gather(w, s)
    assert done_at == [0.0]


async def test_resolution_groups_wakeups_and_box_clock_skews_wall_only() -> None:
    clock = VirtualClock(START, resolution_s=10.0)
    box = BoxClock(clock, skew_s=-90.0)
    woke: list[float] = []

    async def one(d: float) -> None:
        await box.sleep(d)
        woke.append(clock.now)

    tasks = [asyncio.create_task(one(d)) for d in (1.0, 9.5, 10.0, 10.5)]
    await asyncio.sleep(0)
    await clock.run_until(60.0)
    await asyncio.gather(*tasks)
    assert woke == [10.0, 10.0, 10.0, 20.0]
    assert box.monotonic() == clock.monotonic()
    assert box.wall() == clock.wall() - timedelta(seconds=90)


async def test_timers_fire_in_virtual_time_in_order_with_sleeps() -> None:
    clock = VirtualClock(START, resolution_s=5.0)
    seen: list[tuple[str, float]] = []

    async def sleeper() -> None:
        await clock.sleep(7.0)
        seen.append(("sleep", clock.now))

    task = asyncio.create_task(sleeper())
    await asyncio.sleep(0)
    clock.call_later(8.0, lambda: seen.append(("timer", clock.now)))
    cancelled = clock.call_later(3.0, lambda: seen.append(("cancelled", clock.now)))
    cancelled.cancel()
    assert cancelled.done()
    clock.call_later(6.0, lambda: seen.append(("timer2", clock.now)))
    clock.call_later(12.0, lambda: seen.append(("late", clock.now)))
    await clock.run_until(60.0)
    await task
    # Due at 10 s (the resolution): timers are called in the order set, while the
    # scheduler fires them; the sleeping task resumes right after.
    assert seen == [("timer", 10.0), ("timer2", 10.0), ("sleep", 10.0), ("late", 15.0)]
    assert clock.next_deadline() is None


async def test_wait_event_on_the_virtual_clock() -> None:
    from stb_widget.clock import wait_event

    clock = VirtualClock(START)
    box = BoxClock(clock, skew_s=30.0)
    event = asyncio.Event()
    results: list[tuple[bool, float]] = []

    async def waiter(limit: float) -> None:
        results.append((await wait_event(box, event, limit), clock.now))

    first = asyncio.create_task(waiter(100.0))
    await asyncio.sleep(0)
    await clock.run_until(150.0)
    await first
    assert results == [(False, 100.0)]
    second = asyncio.create_task(waiter(100.0))
    await asyncio.sleep(0)
    await clock.run_until(180.0)
    event.set()
    await second
    assert results[1] == (True, 180.0)
    # The second wait's timer was called off: nothing is left to fire.
    assert clock.next_deadline() is None
