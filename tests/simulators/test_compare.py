"""``box-sim compare`` and the demo's verdict: a report that disagrees with the truth fails."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

from simulators.compare import impact_lines, report_problems

ROOT = Path(__file__).resolve().parents[2]
EDGES = [(0, 0), (0, 0.005), (0.005, 0.01), (0.01, 0.02), (0.02, 0.05), (0.05, None)]


def _buckets(ns: list[int]) -> list[dict[str, Any]]:
    return [{"lo": lo, "hi": hi, "n": n, "nps": 10.0 if n else None}
            for (lo, hi), n in zip(EDGES, ns, strict=True)]


def _pair() -> tuple[dict[str, Any], dict[str, Any]]:
    ns = [50, 10, 5, 3, 2, 1]
    report = {"sessions": {"count": 400}, "surveys": {"shown": 100, "answered": 71,
                                                      "response_rate": 0.71},
              "nps": 12.5, "by_qos": {"rebuffer_ratio": _buckets(ns)},
              "correlation": {"rebuffer_ratio": {"spearman": -0.2}}}
    truth = {"sessions": 400, "surveys": {"shown": 100, "answered": 71, "response_rate": 0.71},
             "nps": 12.5, "nps_shown": 9.0, "by_qos": {"rebuffer_ratio": _buckets(ns)},
             "correlation": {"rebuffer_ratio": {"spearman": -0.2}},
             "true_slopes": {"rebuffer_pct": -3.0, "startup_s": -1.0, "bitrate_mbps": 1.0,
                             "failed": -25.0, "no_start": -20.0}}
    summary = {"ground_truth": truth, "power_cuts": 0,
               "agent_vs_lived": {"agree": True, "mismatched_fields": {},
                                  "lived_without_record": 0, "records_without_lived": 0}}
    return report, summary


def test_agreeing_report_has_no_problems() -> None:
    report, summary = _pair()
    assert report_problems(report, summary) == []
    # A bucket off by two sessions (a ratio on an edge) is within the tolerance.
    report["by_qos"]["rebuffer_ratio"][1]["n"] += 2
    assert report_problems(report, summary) == []


def test_each_disagreement_is_named() -> None:
    cases = [
        (("sessions", "count"), 401, "sessions"),
        (("surveys", "answered"), 70, "answered"),
        (("nps",), 12.6, "NPS"),
    ]
    for path, value, word in cases:
        report, summary = _pair()
        target = report
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        problems = report_problems(report, summary)
        assert len(problems) == 1 and problems[0].startswith(word), problems
    report, summary = _pair()
    report["by_qos"]["rebuffer_ratio"][0]["n"] += 3
    assert "rebuffer bucket" in report_problems(report, summary)[0]
    report, summary = _pair()
    summary["agent_vs_lived"] = {**summary["agent_vs_lived"], "agree": False,
                                 "mismatched_fields": {"rebuffer_count": 4}}
    assert "records disagree" in report_problems(report, summary)[0]


def test_impact_is_printed_beside_the_planted_slopes() -> None:
    _, summary = _pair()
    effects = {m: {k: {"nps_points": -2.5, "ci95": [-6.0, 1.0], "p_value": 0.2}
                   for k in summary["ground_truth"]["true_slopes"]}
               for m in ("adjusted", "unadjusted")}
    effects["unadjusted"]["rebuffer_pct"] = {"nps_points": -7.25, "ci95": [-9.5, -5.0],
                                             "p_value": 0.001}
    impact = {"answers": 71, "boxes": 30, "nps": 12.5, "effects": copy.deepcopy(effects),
              "response_adjusted": {"nps": 10.25, "ci95": [1.0, 20.0]}}
    text = "\n".join(impact_lines(impact, summary))
    row = next(line for line in text.splitlines() if line.strip().startswith("rebuffer_pct"))
    assert "-3.0" in row and "-2.5 [-6.0, 1.0]" in row and "-7.2 [-9.5, -5.0]" in row
    assert "response-adjusted 10.2" in text and "everyone shown (the truth) 9.0" in text


def test_demo_help_is_help() -> None:
    out = subprocess.run([str(ROOT / "scripts" / "demo"), "--help"], capture_output=True,
                         text=True, timeout=30, check=False)
    assert out.returncode == 0 and out.stdout.startswith("usage: scripts/demo")
    for flag in ("--exit", "--boxes", "--no-confounder", "--no-non-response", "--sample-rate"):
        assert flag in out.stdout
    bad = subprocess.run([str(ROOT / "scripts" / "demo"), "--nope"], capture_output=True,
                         text=True, timeout=30, check=False)
    assert bad.returncode == 2 and "--nope" in bad.stderr
