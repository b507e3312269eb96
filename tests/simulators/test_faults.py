"""A fleet through an outage, lossy lines and power cuts mid-write loses and duplicates nothing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from simulators.faults import Faults, parse_outage

from .conftest import Collector

pytestmark = pytest.mark.timeout(120)

async def test_outage_loss_and_power_cuts_lose_and_duplicate_nothing(
    collector: Collector, tmp_path: Path
) -> None:
    faults = Faults(outages=(parse_outage("12:8"),), loss=0.2, loss_all=True,
                    power_cuts_per_day=1.5, clock_skew_s=3600.0, reboot_s=300.0)
    fleet, summary = await collector.fleet(
        boxes=24, days=2, seed=11, faults=faults, durable_boxes=24, data_dir=tmp_path / "boxes",
        sample_rate=0.5, cooldown_answered_days=0, cooldown_dismissed_days=0,
    )
    # The faults did strike, or this test would prove nothing.
    net = summary["network"]
    assert summary["power_cuts"] >= 10
    assert net["failed_in_outage"] > 0
    assert net["lost_answers"] > 0 and net["lost_requests"] > 0
    assert summary["records_duplicate"] > 0  # answers lost after the collector stored them
    assert summary["drained"] and summary["records_buffered"] == 0

    exported = [r["id"] for kind in ("session", "survey") for r in await collector.export(kind)]
    once = Counter(exported)
    assert [i for i, n in once.items() if n > 1] == []
    # Every record id the boxes' agents stored (survived a power cut included).
    made = {i for b in fleet.boxes for i in (*b.sessions, *b.surveys)}
    assert len(made) > 200
    assert set(exported) - made == set(), "the collector holds records no box made"
    assert made - set(exported) == set(), "records the boxes made never arrived"


async def test_outage_recovery_rate_is_measured(collector: Collector) -> None:
    faults = Faults(outages=(parse_outage("20:6"),))
    _, summary = await collector.fleet(boxes=40, days=2, seed=5, faults=faults,
                                       durable_boxes=0)
    net = summary["network"]
    assert net["failed_in_outage"] > 0
    # Boxes come back with jittered backoff: busier than before, but spread, not all at once.
    assert net["after_outage_peak_requests_per_virtual_s"] > net[
        "before_outage_requests_per_virtual_s"]
    assert net["after_outage_peak_requests_per_virtual_s"] < 40 / 10
    assert summary["drained"] and summary["records_buffered"] == 0
