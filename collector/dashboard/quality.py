"""The dashboard's "What quality costs" section: the what-if of the recoverable points, the
"unknown" rows of the bucket tables, small-n buckets, and the section's HTML.

The slopes and their intervals come from :func:`collector.impact.compute_impact` (contract
§6), the call list from :func:`collector.at_risk.compute_at_risk` (§7); nothing here
estimates them again. What the what-if adds is the distribution of each metric over the
rows, which the recoverable formula needs and ``/v1/impact`` does not carry:

    recoverable(target) = -coef · mean(max(0, x - target))    (rebuffer_pct, startup_s)
    recoverable(target) =  coef · mean(max(0, target - x))    (bitrate_mbps)

over the N rows of §6, rows without a frame adding 0 to the means of ``startup_s`` and
``bitrate_mbps``. The mean gap ``mean(max(0, x - target))`` is computed here exactly from
the stored rows at every step of the page's slider (:data:`WHATIF_GRID`), so moving the
slider needs no round trip and every position shows the exact figure, not an interpolation.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from protocol.nps import SCORES, tally

from ..metrics import ALWAYS as _ALWAYS
from ..metrics import NAMES as METRICS
from ..stats import nps, nps_ci95
from ..storage.report_sql import ReportData
from .html import fmt_ci, fmt_nps

#: The what-if's metrics, in the contract's units, and the slider's steps for each (the
#: contract's default targets, 0 %, 2 s and 5 Mbit/s, are steps).
WHATIF_GRID: dict[str, tuple[float, ...]] = {
    "rebuffer_pct": tuple(round(0.1 * i, 1) for i in range(51)),      # 0 to 5 % stalled
    "startup_s": tuple(round(0.25 * i, 2) for i in range(41)),        # 0 to 10 s
    "bitrate_mbps": tuple(round(0.5 * i, 1) for i in range(31)),      # 0 to 15 Mbit/s
}
#: Whether a row is worse above the target (True) or below it (bitrate).
WORSE_ABOVE = {"rebuffer_pct": True, "startup_s": True, "bitrate_mbps": False}
REGRESSOR_TITLES = {
    "rebuffer_pct": ("Rebuffering", "per percentage point of watch time stalled"),
    "startup_s": ("Startup time", "per second of startup"),
    "bitrate_mbps": ("Bitrate", "per Mbit/s"),
    "failed": ("Failed session", "a failed session against one that did not fail"),
    "no_start": ("Never started", "no picture at all against an average start"),
}
#: Buckets with fewer answers are drawn as small-n: the adjusted-Wald interval shrinks
#: toward 0, so with one or two answers the point lies outside its own interval.
SMALL_N = 3


@dataclass(frozen=True, slots=True)
class MetricRows:
    """One metric's values over the §6 rows, sorted, with prefix sums; ``n`` counts every
    row (rows without a frame add 0 to the mean gap of startup and bitrate)."""

    values: tuple[float, ...]
    prefix: tuple[float, ...]
    n: int

    @classmethod
    def of(cls, values: Iterable[float], n: int) -> MetricRows:
        """Sort ``values`` and keep their prefix sums."""
        ordered = tuple(sorted(values))
        return cls(ordered, (0.0, *itertools.accumulate(ordered)), n)

    def mean_gap(self, target: float, worse_above: bool) -> float:
        """``mean(max(0, x - target))`` (or ``max(0, target - x)``) over all ``n`` rows."""
        if self.n == 0:
            return 0.0
        if worse_above:
            i = bisect.bisect_right(self.values, target)
            above = len(self.values) - i
            total = (self.prefix[-1] - self.prefix[i]) - target * above
        else:
            i = bisect.bisect_left(self.values, target)
            total = target * i - self.prefix[i]
        return max(0.0, total) / self.n


def metric_rows(rebuffer_ratio: Sequence[float], startup_ms: Sequence[float | None],
                avg_bitrate_kbps: Sequence[float | None]) -> dict[str, MetricRows]:
    """The what-if metrics over §6's rows given column by column (as
    :class:`~collector.storage.impact_sql.ImpactRows` holds them: a null startup or bitrate
    None or NaN), in the units of the slopes."""
    rebuffer = [100.0 * x for x in rebuffer_ratio]
    startup: list[float] = []
    bitrate: list[float] = []
    for su, br in zip(startup_ms, avg_bitrate_kbps, strict=True):
        # A row with a frame has its bitrate (§6's rows); one without adds 0 to their gaps.
        if su is not None and su == su and br is not None and br == br:
            startup.append(su / 1000.0)
            bitrate.append(br / 1000.0)
    n = len(rebuffer)
    return {"rebuffer_pct": MetricRows.of(rebuffer, n), "startup_s": MetricRows.of(startup, n),
            "bitrate_mbps": MetricRows.of(bitrate, n)}


def points_for(coef: float | None, ci95: Sequence[float] | None, gap: float,
               worse_above: bool) -> tuple[float | None, list[float] | None]:
    """The recoverable points of a mean gap and a slope (with its interval, ends ascending)."""
    if coef is None:
        return None, None
    sign = -1.0 if worse_above else 1.0
    ends = None if ci95 is None else sorted(sign * c * gap for c in ci95)
    return sign * coef * gap, ends


def whatif(rows: Mapping[str, MetricRows], impact: Mapping[str, Any]) -> dict[str, Any]:
    """Per what-if metric: the adjusted slope and, at each slider step, the mean gap and the
    points won with their interval."""
    out: dict[str, Any] = {}
    for metric, grid in WHATIF_GRID.items():
        effect = impact["effects"]["adjusted"][metric]
        above = WORSE_ABOVE[metric]
        steps = []
        for target in grid:
            gap = rows[metric].mean_gap(target, above)
            pts, ci = points_for(effect["nps_points"], effect["ci95"], gap, above)
            steps.append({"target": target, "mean_gap": gap, "nps_points": pts, "ci95": ci})
        out[metric] = {"default": impact["recoverable"][metric]["target"],
                       "nps_points_per_unit": effect["nps_points"], "ci95": effect["ci95"],
                       "steps": steps}
    return out


# -- the bucket tables' "unknown" rows and small-n buckets ------------------------------------------

def unknown_rows(data: ReportData, report: Mapping[str, Any],
                 responses: Mapping[str, Sequence[tuple[int, int]]]) -> dict[str, dict[str, Any]]:
    """Per metric, what falls in no bucket because the session's metric is null (a session
    that never showed a frame has no startup time nor bitrate): sessions, surveys shown,
    answers with their NPS. A known session always has a rebuffer ratio, so the rebuffer
    buckets hold every survey whose session is known; the rest is this row."""
    hist: dict[str, list[int]] = {m: [0] * 11 for m in METRICS}
    for (metric, _fine), counts in data.bins.items():
        for s in SCORES:
            hist[metric][s] += counts[s]
    shown_known = sum(shown for shown, _ in responses[_ALWAYS])
    answered_known = sum(a for _, a in responses[_ALWAYS])
    out: dict[str, dict[str, Any]] = {}
    for m in METRICS:
        h = [hist[_ALWAYS][s] - hist[m][s] for s in SCORES]
        n = sum(h)
        p, _, d = tally(h)
        shown = shown_known - sum(s for s, _ in responses[m])
        answered = answered_known - sum(a for _, a in responses[m])
        out[m] = {
            "sessions": report["sessions"]["count"] - sum(b["sessions"] for b in report["by_qos"][m]),
            "shown": shown, "answered": answered,
            "response_rate": answered / shown if shown else None,
            "n": n, "nps": nps(p, d, n), "nps_ci95": nps_ci95(p, d, n),
        }
    return out


def is_small_n(n: int, value: float | None, ci: Sequence[float] | None) -> bool:
    """Too few answers to show a point with confidence: under :data:`SMALL_N` answers, or a
    point that lies outside its own interval."""
    if n == 0 or value is None:
        return False
    if n < SMALL_N:
        return True
    return ci is not None and not (ci[0] <= value <= ci[1])


def small_n_flags(report: Mapping[str, Any]) -> dict[str, list[bool]]:
    """Per metric and bucket: whether the bucket is small-n (drawn hollow and greyed)."""
    return {m: [is_small_n(b["n"], b["nps"], b["nps_ci95"]) for b in report["by_qos"][m]]
            for m in METRICS}


def reasons_ranked(reasons: Mapping[str, int], order: Sequence[str]) -> list[str]:
    """Reasons most given first, ties in the contract's order: the table and the chart
    both list them so."""
    return sorted(reasons, key=lambda r: (-reasons[r], order.index(r) if r in order else len(order)))


# -- the section's HTML -----------------------------------------------------------------------------

REGRESSORS = ("rebuffer_pct", "startup_s", "bitrate_mbps", "failed", "no_start")
WHATIF_UNITS = {"rebuffer_pct": "%", "startup_s": "s", "bitrate_mbps": "Mbit/s"}
#: The at-risk windows the page offers (contract §7 takes 1 to 90 days).
RISK_WINDOWS = (7, 14, 28, 90)
DEFAULT_RISK_DAYS = 7
PAGE_AT_RISK = 50


def _signed(x: float | None) -> str:
    # + 0.0 turns -0.0 into 0.0, as the page's script does: "+0.0" on both sides.
    return "—" if x is None else f"{x + 0.0:+.1f}"


def _ci(ci: Sequence[float] | None) -> str:
    return "—" if ci is None else f"{ci[0]:+.1f} to {ci[1]:+.1f}"


def _p_text(p: float | None) -> str:
    if p is None:
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def target_text(metric: str, target: float) -> str:
    """A what-if target for people: ``0.5 %``, ``2 s``, ``5 Mbit/s``."""
    unit = WHATIF_UNITS.get(metric)
    return f"{target:g}" if unit is None else f"{target:g} {unit}"


def biggest_win(recoverable: Mapping[str, Any]) -> str | None:
    """The metric whose fixing would win the most points at its target, if any wins."""
    won = [(r["nps_points"], name) for name, r in recoverable.items()
           if r["nps_points"] is not None and r["nps_points"] > 0]
    return max(won)[1] if won else None


def _headline(recoverable: Mapping[str, Any], e: Any) -> str:
    best = biggest_win(recoverable)
    if best is None:
        return ""
    r = recoverable[best]
    title = REGRESSOR_TITLES[best][0].lower()
    t = target_text(best, r["target"])
    goals = {"failed": "no session failing", "no_start": "every session starting",
             "rebuffer_pct": f"no session stalling over {t} of the time" if r["target"] else "no stalls at all",
             "startup_s": f"every session starting within {t}",
             "bitrate_mbps": f"every session playing at least {t}"}
    return (f'<p class="headline" id="costs-headline">Biggest win: {e(title)}. With '
            f'{e(goals[best])}, the NPS would rise by about <b>{_signed(r["nps_points"])}</b> points '
            f'(95 % CI {_ci(r["ci95"])}).</p>')


def costs_section(impact: Mapping[str, Any], report: Mapping[str, Any], e: Any) -> str:
    """"What quality costs": the response-adjusted NPS, the slopes (forest plot and table),
    the recoverable points and the what-if sliders. ``e`` escapes for HTML."""
    adj = impact["response_adjusted"]
    unrepresented = (
        f' {adj["unrepresented_shown"]} surveys were shown in quality groups where nobody '
        "answered; they cannot be weighted in." if adj["unrepresented_shown"] else "")
    adjusted_block = (
        '<div class="adjusted-nps">'
        '<div class="kpi"><span class="label">NPS as answered</span>'
        f'<span class="value" id="plain-nps">{fmt_nps(report["nps"])}</span>'
        f'<span class="sub">95 % CI <span id="plain-ci">{fmt_ci(report["nps_ci95"])}</span></span></div>'
        '<div class="kpi"><span class="label">NPS adjusted for who answers</span>'
        f'<span class="value" id="adjusted-nps">{fmt_nps(adj["nps"])}</span>'
        f'<span class="sub">95 % CI <span id="adjusted-ci">{fmt_ci(adj["ci95"])}</span></span></div>'
        '<p class="explain" id="adjusted-explain">Viewers after bad streams answer less often; the '
        "adjusted NPS weights each stream-quality group by how many viewers were asked, not by "
        f"how many answered.{e(unrepresented)}</p></div>"
    )
    rows = []
    for r in REGRESSORS:
        a = impact["effects"]["adjusted"][r]
        u = impact["effects"]["unadjusted"][r]
        title, per = REGRESSOR_TITLES[r]
        rows.append(
            f'<tr data-regressor="{r}"><th scope="row">{e(title)} <span class="sub">{e(per)}</span></th>'
            f'<td class="num adj">{_signed(a["nps_points"])}</td><td class="num adj-ci">{_ci(a["ci95"])}</td>'
            f'<td class="num adj-p">{_p_text(a["p_value"])}</td>'
            f'<td class="num unadj">{_signed(u["nps_points"])}</td><td class="num unadj-ci">{_ci(u["ci95"])}</td></tr>'
        )
    rec_rows = []
    for r in REGRESSORS:
        rec = impact["recoverable"][r]
        title, _ = REGRESSOR_TITLES[r]
        goal = {"failed": "no failures", "no_start": "every session starts"}.get(
            r, ("at most " if WORSE_ABOVE.get(r, True) else "at least ") + target_text(r, rec["target"]))
        rec_rows.append(
            f'<tr data-regressor="{r}"><th scope="row">{e(title)}</th>'
            f'<td class="target">{e(goal)}</td>'
            f'<td class="num points">{_signed(rec["nps_points"])}</td>'
            f'<td class="num ci">{_ci(rec["ci95"])}</td></tr>'
        )
    sliders = []
    for m, grid in WHATIF_GRID.items():
        title, _ = REGRESSOR_TITLES[m]
        default = impact["recoverable"][m]["target"]
        idx = min(range(len(grid)), key=lambda i: abs(grid[i] - default))
        word = "at most" if WORSE_ABOVE[m] else "at least"
        sliders.append(
            f'<label class="whatif" for="whatif-{m}"><span>{e(title)}: {word} '
            f'<output id="whatif-{m}-target">{e(target_text(m, grid[idx]))}</output></span>'
            f'<input type="range" id="whatif-{m}" data-metric="{m}" min="0" max="{len(grid) - 1}" '
            f'step="1" value="{idx}"></label>'
        )
    enough = any(impact["effects"]["adjusted"][r]["nps_points"] is not None for r in REGRESSORS)
    headline = _headline(impact["recoverable"], e)
    note = "" if enough else (
        '<p class="error" id="impact-too-few">Too few answers for these estimates: they need at '
        "least 50 answers from at least 20 boxes in the period.</p>")
    return (
        '<section class="card" id="quality-costs"><h2>What quality costs '
        f'<span class="sub">{impact["answers"]} answers from {impact["boxes"]} boxes, each joined to '
        "the session it followed</span></h2>"
        f"{note}{headline}{adjusted_block}"
        '<div class="row2 costs"><div>'
        '<h3>NPS points per unit of quality</h3>'
        '<div class="chart"><canvas id="chart-forest" aria-label="NPS points per unit of quality"></canvas></div>'
        '<p class="explain">How many NPS points one more unit of each problem costs: the dot is the '
        "best estimate, the bar the range the true cost very likely (95 %) lies in. <b>Adjusted</b> "
        "compares viewers within the same region, box model, firmware and kind of content, so a "
        "region with both poor network and grumpy viewers does not inflate the cost; "
        "<b>unadjusted</b> does not. A bar that crosses 0 means no cost could be shown. These are "
        "associations measured on your viewers, not a controlled experiment.</p>"
        '<table id="effects"><thead><tr><th>Quality</th><th>Adjusted</th><th>95 % CI</th><th>p</th>'
        f'<th>Unadjusted</th><th>95 % CI</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
        '</div><div>'
        '<h3>Points won by fixing it</h3>'
        '<div class="chart"><canvas id="chart-recoverable" aria-label="Recoverable NPS points"></canvas></div>'
        f'<div class="whatif-controls" id="whatif">{"".join(sliders)}</div>'
        '<p class="explain">If every session that was worse than the target were brought to it, the '
        "NPS would rise by about this many points (the adjusted cost times how far sessions are "
        "from the target, on average); the interval carries the cost's uncertainty. Move a target "
        "to see what a cheaper or a bolder goal would win. Points of different rows overlap, so "
        "do not add them up.</p>"
        '<table id="recoverable"><thead><tr><th>Quality</th><th>Target</th><th>Points won</th>'
        f'<th>95 % CI</th></tr></thead><tbody>{"".join(rec_rows)}</tbody></table>'
        "</div></div></section>"
    )


def at_risk_section(at_risk: Mapping[str, Any] | str, window_days: int, hidden: Mapping[str, str],
                    csv_query: str, segment: str, e: Any) -> str:
    """"Who to call first": the boxes most likely to answer as detractors now."""
    options = "".join(f'<option value="{d}"{" selected" if d == window_days else ""}>{d} days</option>'
                      for d in RISK_WINDOWS)
    keep = "".join(f'<input type="hidden" name="{e(k)}" value="{e(v)}">' for k, v in hidden.items() if v)
    form = (f'<form method="get" action="/dashboard" class="inline" id="risk-form">{keep}'
            f'<label>Sessions of the last <select name="risk_days" id="f-risk_days">{options}</select></label>'
            '<button type="submit" class="secondary" id="risk-apply">Show</button></form>')
    if isinstance(at_risk, str):  # why there is no list
        body = f'<p class="error" id="at-risk-unavailable">{e(at_risk)}</p>'
    elif not at_risk["boxes"]:
        body = '<p class="sub" id="at-risk-empty">No box had a session in this window.</p>'
    else:
        trs = []
        for i, b in enumerate(at_risk["boxes"], 1):
            def num(x: float | None, fmt: str, unit: str = "") -> str:
                return "—" if x is None else f"{x:{fmt}}{unit}"
            trs.append(
                f'<tr data-box="{e(b["box_id"])}"><td class="num">{i}</td><td class="mono box">{e(b["box_id"])}</td>'
                f'<td class="num risk">{100 * b["risk"]:.0f} %</td><td class="num">{b["sessions"]}</td>'
                f'<td class="num">{num(b["rebuffer_pct"], ".2f", " %")}</td>'
                f'<td class="num">{num(b["startup_s"], ".1f", " s")}</td>'
                f'<td class="num">{num(b["bitrate_mbps"], ".1f", " Mbit/s")}</td>'
                f'<td class="num">{100 * b["failed_share"]:.0f} %</td>'
                f'<td class="num">{"—" if b["last_score"] is None else b["last_score"]}</td>'
                f'<td>{e((b["last_answered_at"] or "never asked")[:16].replace("T", " "))}</td></tr>'
            )
        body = ('<div class="scroll"><table id="at-risk-table"><thead><tr><th>#</th><th>Box</th>'
                '<th>Risk</th><th>Sessions</th><th>Stalled</th><th>Startup</th><th>Bitrate</th>'
                '<th>Failed</th><th>Last score</th><th>Last answer (UTC)</th></tr></thead>'
                f'<tbody>{"".join(trs)}</tbody></table></div>')
    span = "" if isinstance(at_risk, str) else f' ({e(at_risk["from"][:16].replace("T", " "))} to {e(at_risk["to"][:16].replace("T", " "))} UTC)'
    return (
        '<section class="card" id="at-risk"><h2>Who to call first</h2>'
        f'<div class="toolbar">{form}<a href="/dashboard/at-risk.csv?{e(csv_query)}" id="at-risk-csv" '
        'download>Download CSV</a></div>'
        '<p class="explain">The boxes whose viewers are most likely to score 0–6 if asked today, '
        f"judged by the stream quality they had in the window{span}: the chance is learned from "
        "the viewers who did answer, so boxes never asked are ranked too. Call the top of the "
        f"list before they call you. {e(segment)} The page shows the top {PAGE_AT_RISK}; the "
        "CSV the top 1000.</p>"
        f"{body}</section>"
    )
