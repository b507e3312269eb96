"""``box-sim fleet`` as the contract names it: a real process against a real collector."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import orjson
import pytest

from tests.collector.conftest import ADMIN

from .conftest import Collector

pytestmark = pytest.mark.timeout(120)
BOX_SIM = str(Path(sys.executable).with_name("box-sim"))


async def run(*args: str, token: str | None = ADMIN) -> tuple[int, bytes, bytes]:
    env = {k: v for k, v in os.environ.items() if k != "NPS_ADMIN_TOKEN"}
    if token is not None:
        env["NPS_ADMIN_TOKEN"] = token
    proc = await asyncio.create_subprocess_exec(
        BOX_SIM, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out, err


async def test_fleet_command_enrols_runs_and_summarises(collector: Collector) -> None:
    code, out, err = await run("fleet", "--collector", collector.url, "--boxes", "6",
                               "--days", "1", "--seed", "4", "--json", "--outage", "6:3")
    assert code == 0, err.decode()
    summary = orjson.loads(out)
    assert summary["boxes"] == 6 and summary["sessions"] > 0
    assert summary["drained"] and summary["records_buffered"] == 0
    assert summary["network"]["failed_in_outage"] >= 0
    assert "ground_truth" in summary and "after_outage_peak_requests_per_virtual_s" in summary[
        "network"]
    report = await collector.report()
    assert report["sessions"]["count"] == summary["ground_truth"]["sessions"]
    assert b"\r[" not in err  # no progress bar when stderr is not a terminal

    code, out, _ = await run("fleet", "--collector", collector.url, "--boxes", "2", "--days",
                             "0.5", "--seed", "9")
    assert code == 0
    text = out.decode()
    assert "ground truth" in text and "sessions" in text


async def test_fleet_command_needs_the_admin_token(collector: Collector) -> None:
    code, _, err = await run("fleet", "--collector", collector.url, "--boxes", "1", token=None)
    assert code == 2 and b"NPS_ADMIN_TOKEN" in err
    code, _, err = await run("fleet", "--collector", collector.url, "--boxes", "1",
                             token="wrong-token")
    assert code == 1 and b"401" in err
    code, _, err = await run("fleet", "--collector", collector.url, "--outage", "x")
    assert code == 2 and b"START_H:DURATION_H" in err


async def test_fleet_command_plants_what_it_is_told(collector: Collector) -> None:
    code, out, err = await run("fleet", "--collector", collector.url, "--boxes", "4", "--days",
                               "0.5", "--seed", "2", "--json", "--no-confounder",
                               "--no-non-response", "--effect", "startup_s=-1.5")
    assert code == 0, err.decode()
    gt = orjson.loads(out)["ground_truth"]
    assert gt["true_slopes"]["startup_s"] == -1.5 and gt["true_slopes"]["rebuffer_pct"] == -3.0
    assert not gt["planted"]["confounder"] and not gt["planted"]["non_response"]
    # Bad effects are refused by name, before anything starts.
    for bad, word in (("rebuffer_pct=-40", b"outside [0, 1]"), ("stalls=-3", b"REGRESSOR"),
                      ("failed=lots", b"not a number")):
        code, _, err = await run("fleet", "--collector", collector.url, "--effect", bad)
        assert code == 2 and word in err, err


async def test_compare_exits_1_when_the_report_disagrees(collector: Collector,
                                                        tmp_path: Path) -> None:
    code, out, err = await run("fleet", "--collector", collector.url, "--boxes", "6", "--days",
                               "1", "--seed", "3", "--json", "--sample-rate", "1",
                               "--cooldown-days", "0")
    assert code == 0, err.decode()
    summary = orjson.loads(out)
    path = tmp_path / "fleet.json"
    path.write_bytes(out)
    code, text, err = await run("compare", "--collector", collector.url, "--summary", str(path))
    assert code == 0, err.decode()
    assert b"agrees with what the simulated viewers lived" in text
    assert b"/v1/impact" in text  # its estimates, or that it answered 404
    # A truth the report does not match: one answer more than the collector holds.
    summary["ground_truth"]["surveys"]["answered"] += 1
    path.write_bytes(orjson.dumps(summary))
    code, _, err = await run("compare", "--collector", collector.url, "--summary", str(path))
    assert code == 1 and b"answered: report" in err
    code, _, err = await run("compare", "--collector", collector.url, "--summary",
                             str(tmp_path / "missing.json"))
    assert code == 2 and b"missing.json" in err
