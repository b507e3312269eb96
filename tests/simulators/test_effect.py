"""The planted effect (worse rebuffering, lower scores) is what the collector's report finds."""

from __future__ import annotations

import math

import pytest

from .conftest import Collector

pytestmark = pytest.mark.timeout(120)

async def test_report_recovers_the_planted_effect(collector: Collector) -> None:
    _, summary = await collector.fleet(
        boxes=120, days=3, seed=7, sample_rate=0.6, cooldown_answered_days=0,
        cooldown_dismissed_days=0, durable_boxes=10,
    )
    truth = summary["ground_truth"]
    assert summary["drained"]
    report = await collector.report()

    # The effect is there, and strong: the report must see it.
    rho = truth["correlation"]["rebuffer_ratio"]["spearman"]
    assert truth["surveys"]["answered"] >= 250
    assert rho < -0.3
    got = report["correlation"]["rebuffer_ratio"]
    assert got["n"] == truth["correlation"]["rebuffer_ratio"]["n"]
    assert abs(got["spearman"] - rho) <= 0.01

    assert report["surveys"]["answered"] == truth["surveys"]["answered"]
    assert report["surveys"]["shown"] == truth["surveys"]["shown"]
    assert report["sessions"]["count"] == truth["sessions"]
    assert math.isclose(report["nps"], truth["nps"], abs_tol=0.01)
    for mine, theirs in zip(truth["by_qos"]["rebuffer_ratio"], report["by_qos"]["rebuffer_ratio"],
                            strict=True):
        assert theirs["n"] == mine["n"], (mine, theirs)
        if mine["nps"] is None:
            assert theirs["nps"] is None
        else:
            assert math.isclose(theirs["nps"], mine["nps"], abs_tol=0.01)
    # Smooth streams are rated far better than badly stalling ones.
    buckets = [b for b in truth["by_qos"]["rebuffer_ratio"] if b["n"] >= 10]
    assert buckets[0]["nps"] - buckets[-1]["nps"] > 40
