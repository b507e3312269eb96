"""``box-sim compare``: the collector's figures next to the fleet's truth, and a verdict.

The report (``GET /v1/report``) must agree with what the viewers lived and answered
(within :data:`REPORT_TOLERANCES`), and the agents' records with what was lived; the
impact estimates (``GET /v1/impact``, contract section 6) are printed next to the
planted slopes, adjusted and unadjusted, with their intervals. They are estimates: an
interval that misses the truth is chance 5 % of the time, so only the report and the
records decide the verdict.
"""

from __future__ import annotations

import math
import urllib.error
import urllib.request
from typing import Any, Final

import orjson

#: How far the report may be from the lived truth. Counts and the NPS are exact (the same
#: answers); bucket counts may move by a session or two where a ratio lies on a bucket
#: edge (the record keeps 3 decimals of each time); Spearman's rho is the contract's 0.01
#: plus the same rounding.
REPORT_TOLERANCES: Final = {"bucket_n": 2, "spearman": 0.02, "nps": 0.01}


class CompareError(Exception):
    """The collector could not be asked (unreachable, or an answer that is not JSON)."""


def fetch(url: str, token: str) -> tuple[int, Any]:
    """GET ``url`` with the admin token: (status, JSON body or None)."""
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (urllib.error.URLError, OSError, orjson.JSONDecodeError) as exc:
        raise CompareError(f"GET {url}: {exc}") from exc


def report_problems(report: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    """Where the report disagrees with the lived truth (empty: it agrees)."""
    truth = summary["ground_truth"]
    problems: list[str] = []
    if summary.get("power_cuts"):
        # Sessions open when the power went are lived but never recorded.
        exact = [("answered", report["surveys"]["answered"], truth["surveys"]["answered"])]
    else:
        exact = [("sessions", report["sessions"]["count"], truth["sessions"]),
                 ("shown", report["surveys"]["shown"], truth["surveys"]["shown"]),
                 ("answered", report["surveys"]["answered"], truth["surveys"]["answered"])]
    for name, got, want in exact:
        if got != want:
            problems.append(f"{name}: report {got}, truth {want}")
    if not _close(report["nps"], truth["nps"], REPORT_TOLERANCES["nps"]):
        problems.append(f"NPS: report {report['nps']}, truth {truth['nps']}")
    for got, want in zip(report["by_qos"]["rebuffer_ratio"], truth["by_qos"]["rebuffer_ratio"],
                         strict=True):
        if abs(got["n"] - want["n"]) > REPORT_TOLERANCES["bucket_n"]:
            problems.append(f"rebuffer bucket ({want['lo']}, {want['hi']}]: report n "
                            f"{got['n']}, truth n {want['n']}")
    rho_got = report["correlation"]["rebuffer_ratio"]["spearman"]
    rho_want = truth["correlation"]["rebuffer_ratio"]["spearman"]
    if not _close(rho_got, rho_want, REPORT_TOLERANCES["spearman"]):
        problems.append(f"Spearman(score, rebuffer_ratio): report {rho_got}, truth {rho_want}")
    cmp = summary["agent_vs_lived"]
    if not cmp["agree"]:
        problems.append(f"the agents' records disagree with what was lived: "
                        f"{cmp['mismatched_fields']}, {cmp['lived_without_record']} lived "
                        f"without a record, {cmp['records_without_lived']} records without")
    return problems


def _close(a: float | None, b: float | None, tol: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, abs_tol=tol)


def _f(x: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if x is None else fmt.format(x)


def report_lines(report: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    """The report's headline figures next to the truth."""
    truth = summary["ground_truth"]
    out = [f"{'':34}{'collector report':>18}{'lived truth':>15}"]
    rows: list[tuple[str, Any, Any, str]] = [
        ("sessions", report["sessions"]["count"], truth["sessions"], "{}"),
        ("answered", report["surveys"]["answered"], truth["surveys"]["answered"], "{}"),
        ("response rate", report["surveys"]["response_rate"],
         truth["surveys"]["response_rate"], "{:.3f}"),
        ("NPS (answers)", report["nps"], truth["nps"], "{:.1f}"),
        ("Spearman(score, rebuffer_ratio)", report["correlation"]["rebuffer_ratio"]["spearman"],
         truth["correlation"]["rebuffer_ratio"]["spearman"], "{:.3f}"),
    ]
    for name, got, want, fmt in rows:
        out.append(f"{name:34}{_f(got, fmt):>18}{_f(want, fmt):>15}")
    for got, want in zip(report["by_qos"]["rebuffer_ratio"], truth["by_qos"]["rebuffer_ratio"],
                         strict=True):
        hi = "inf" if want["hi"] is None else f"{want['hi']:g}"
        name = f"NPS, rebuffer ({want['lo']:g}, {hi}]"
        out.append(f"{name:34}{_f(got['nps']) + ' n=' + str(got['n']):>18}"
                   f"{_f(want['nps']) + ' n=' + str(want['n']):>15}")
    return out


UNITS: Final = {"rebuffer_pct": "per % of time stalled", "startup_s": "per s of startup",
                "bitrate_mbps": "per Mbit/s", "failed": "a failed session",
                "no_start": "no picture at all"}


def impact_lines(impact: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    """``/v1/impact``'s slopes and intervals next to the planted ones."""
    truth = summary["ground_truth"]
    width = 2 + max(len(f"{k} ({u})") for k, u in UNITS.items())
    out = [f"what quality costs, NPS points (GET /v1/impact: {impact.get('answers')} answers, "
           f"{impact.get('boxes')} boxes):",
           f"{'':{width}}{'planted':>9}{'adjusted [95 % interval]':>30}"
           f"{'unadjusted [95 % interval]':>30}"]
    effects = impact.get("effects", {})
    for name, planted in truth["true_slopes"].items():
        cells = []
        for model in ("adjusted", "unadjusted"):
            e = effects.get(model, {}).get(name) or {}
            ci = e.get("ci95")
            cell = _f(e.get("nps_points"))
            if ci is not None:
                cell += f" [{ci[0]:.1f}, {ci[1]:.1f}]"
            cells.append(cell)
        label = f"{name} ({UNITS[name]})"
        out.append(f"  {label:{width - 2}}{planted:>9.1f}{cells[0]:>30}{cells[1]:>30}")
    ra = impact.get("response_adjusted") or {}
    out.append(f"NPS of the answers {_f(impact.get('nps'))}, response-adjusted "
               f"{_f(ra.get('nps'))}; NPS of everyone shown (the truth) "
               f"{_f(truth.get('nps_shown'))}")
    out.append("(estimates: a 95 % interval misses the planted value in about 1 fleet of 20; "
               "with a few hundred answers the rebuffering slope's interval is wide: see "
               "docs/simulators.md, 'How many answers an effect needs')")
    return out


def compare(collector: str, token: str, summary: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Ask the collector; answers (lines to print, problems)."""
    base = collector.rstrip("/")
    status, report = fetch(base + "/v1/report", token)
    if status != 200 or not isinstance(report, dict):
        raise CompareError(f"GET {base}/v1/report answered {status}")
    lines = report_lines(report, summary)
    problems = report_problems(report, summary)
    status, impact = fetch(base + "/v1/impact", token)
    lines.append("")
    if status == 404:
        lines.append("GET /v1/impact answered 404: this collector has no impact endpoint yet "
                     "(contract section 6); the planted slopes were:")
        lines += [f"  {k} {v:+g} NPS points {UNITS[k]}"
                  for k, v in summary["ground_truth"]["true_slopes"].items()]
        lines.append(f"NPS of everyone shown (answered or not): "
                     f"{_f(summary['ground_truth']['nps_shown'])}")
    elif status != 200 or not isinstance(impact, dict):
        problems.append(f"GET /v1/impact answered {status}")
    else:
        lines += impact_lines(impact, summary)
    return lines, problems
