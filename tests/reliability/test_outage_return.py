"""A fleet returning after an outage, small: bench/outage_return.py's herd with 300
boxes (10,000 in the benchmark) and a tiny write queue, so the collector must shed.
It sheds with 503 + Retry-After only (never a 500), stays up (healthz answers all
along), drains the backlog, and loses and doubles nothing."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest

from .conftest import ROOT, scale


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("outage_return", ROOT / "bench" / "outage_return.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["outage_return"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(900)
async def test_returning_fleet_is_shed_then_drained_without_loss() -> None:
    boxes = scale(300, 3000)
    figures = await _bench().herd(boxes, 3, concurrency=boxes, write_queue=8, retry_after=1,
                                  backoff_base=0.2, backoff_cap=2.0, seed=3, drain_limit_s=240)
    print(f"\noutage return ({boxes} boxes): {figures}")
    assert figures["drained"], figures
    assert figures["lost"] == 0 and figures["doubled"] == 0
    assert figures["collector_up"] and figures["healthz_failures"] == 0
    answers = figures["answers"]
    assert answers.get("503", 0) > 0, "the collector never shed"
    assert set(answers) <= {"200", "429", "503"}, answers
    assert answers["200"] >= boxes
