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
