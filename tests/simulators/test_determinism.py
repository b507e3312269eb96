"""The same seed gives the same fleet: the same sessions, questions and answers."""

from __future__ import annotations

from typing import Any

import pytest

from simulators.fleet import Fleet

from .conftest import Collector

pytestmark = pytest.mark.timeout(120)

def fingerprint(fleet: Fleet) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for box in fleet.boxes:
        for s in box.sessions.values():
            out.append((box.box_id, s.id, s.started_at, s.ended_at, s.channel, s.qos))
        for v in box.surveys.values():
            out.append((box.box_id, v.id, v.session_id, v.shown_at, v.outcome, v.score, v.reason))
    return sorted(out, key=repr)


async def test_same_seed_same_fleet(collector: Collector, collector2: Collector) -> None:
    kw: dict[str, Any] = {"boxes": 12, "days": 2, "sample_rate": 0.5,
                          "cooldown_answered_days": 0, "durable_boxes": 4}
    a, sa = await collector.fleet(seed=3, **kw)
    b, sb = await collector2.fleet(seed=3, **kw)
    assert len(fingerprint(a)) > 100
    assert fingerprint(a) == fingerprint(b)
    assert sa["ground_truth"] == sb["ground_truth"]
    for key in ("sessions", "questions", "answers", "dismissed", "timeouts", "not_asked"):
        assert sa[key] == sb[key], key


async def test_another_seed_another_fleet(collector: Collector) -> None:
    kw: dict[str, Any] = {"boxes": 6, "days": 1, "durable_boxes": 0}
    a, _ = await collector.fleet(seed=1, box_prefix="a", **kw)
    b, _ = await collector.fleet(seed=2, box_prefix="b", **kw)
    qa = sorted(repr(s.qos) for box in a.boxes for s in box.sessions.values())
    qb = sorted(repr(s.qos) for box in b.boxes for s in box.sessions.values())
    assert qa != qb
