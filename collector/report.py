"""``GET /v1/report``: the contract's figures, computed the same whatever store is behind."""

from __future__ import annotations

from typing import Any

from protocol import REASONS

from .buckets import BUCKETS, METRICS
from .model import Filters, SurveyFact
from .stats import nps, nps_ci95, pearson_correlation
from .storage import Storage
from .storage.aggregates import (
    SESSION_VEC,
    Deltas,
    Joined,
    ReportData,
    SurveyFacts,
    coarse_of_fine,
    fine_bin,
)


def _fact_metric(f: SurveyFact, metric: str) -> float | None:
    value: float | None = getattr(f, metric)
    return value


def classify(score: int) -> str:
    """promoter (9-10), passive (7-8) or detractor (0-6)."""
    if score >= 9:
        return "promoter"
    if score >= 7:
        return "passive"
    return "detractor"


def _nps_block(histogram: list[int]) -> dict[str, Any]:
    """n, NPS, its interval and the mean score of a score histogram."""
    n = sum(histogram)
    p = histogram[9] + histogram[10]
    d = sum(histogram[:7])
    return {
        "n": n,
        "nps": nps(p, d, n),
        "nps_ci95": nps_ci95(p, d, n),
        "mean_score": (sum(s * c for s, c in enumerate(histogram)) / n) if n else None,
    }


async def build_report(store: Storage, filters: Filters) -> dict[str, Any]:
    """The report for ``filters``, from the store's aggregates."""
    return compute_report_data(await store.report_data(filters))


def compute_report(groups: list[Any], facts: list[SurveyFact]) -> dict[str, Any]:
    """The report from session groups and survey facts (for tests and small tools): the
    facts are binned exactly as ingest bins them, so the answer is the stores' answer."""
    data = ReportData()
    for g in groups:
        row = [0] * len(SESSION_VEC)
        row[0] = g.count
        row[1] = g.count if g.surveyed else 0
        row[2] = g.count if g.failed else 0
        for metric, idx in zip(METRICS, (g.rb_bucket, g.br_bucket, g.su_bucket), strict=True):
            if idx is not None:
                row[SESSION_VEC.index(f"{_PREFIX[metric]}{idx}")] = g.count
        data.add_sessions(row)
    deltas = Deltas()
    for f in facts:
        joined = None
        if f.has_session:
            joined = Joined(None, None, *(fine_bin(m, _fact_metric(f, m)) for m in METRICS))
        deltas.survey(SurveyFacts(0, None, None, None, f.outcome, f.score, f.reason), joined)
    for key, vec in deltas.surveys.items():
        if key[0] == 1:
            data.add_surveys(vec)
    for key, vec in deltas.bins.items():
        if key[0] == 1:
            data.add_bin(METRICS[key[-2]], key[-1], vec)
    return compute_report_data(data)


_PREFIX = {"rebuffer_ratio": "rb", "avg_bitrate_kbps": "br", "startup_ms": "su"}


def _bins_spearman(bins: list[tuple[int, list[int]]]) -> dict[str, Any]:
    """Spearman's rho of score against a metric from counts by (fine bin, score): the
    values in one bin count as tied (see :data:`~collector.storage.aggregates.FINE_EDGES`
    for why that stays within the contract's 0.01), ties take average ranks."""
    bin_totals = [sum(counts) for _, counts in bins]
    score_totals = [sum(counts[s] for _, counts in bins) for s in range(11)]
    bin_rank: list[float] = []
    below = 0
    for total in bin_totals:
        bin_rank.append(below + (total + 1) / 2.0)
        below += total
    score_rank: list[float] = []
    below = 0
    for total in score_totals:
        score_rank.append(below + (total + 1) / 2.0)
        below += total
    rx: list[float] = []
    ry: list[float] = []
    w: list[float] = []
    for i, (_, counts) in enumerate(bins):
        for s, c in enumerate(counts):
            if c:
                rx.append(score_rank[s])
                ry.append(bin_rank[i])
                w.append(float(c))
    corr = pearson_correlation(rx, ry, w)
    return {"spearman": corr.spearman, "p_value": corr.p_value, "n": corr.n}


def compute_report_data(data: ReportData) -> dict[str, Any]:
    """The contract's report from the counts of :class:`ReportData`."""
    sessions = {"count": data.session("n"), "surveyed": data.session("surveyed"),
                "failed": data.session("failed")}
    histogram = [data.survey(f"h{i}") for i in range(11)]
    answered = sum(histogram)
    promoters = histogram[9] + histogram[10]
    detractors = sum(histogram[:7])
    shown = data.survey("shown")
    answered_outcomes = data.survey("answered")

    by_qos: dict[str, list[dict[str, Any]]] = {}
    correlation: dict[str, dict[str, Any]] = {}
    for m in METRICS:
        per_bucket = [[0] * 11 for _ in BUCKETS[m]]
        fine = sorted((b, counts) for (metric, b), counts in data.bins.items()
                      if metric == m and any(counts))
        for b, counts in fine:
            target = per_bucket[coarse_of_fine(m, b)]
            for s in range(11):
                target[s] += counts[s]
        by_qos[m] = [
            {"lo": b.lo, "hi": b.hi, "sessions": data.session(f"{_PREFIX[m]}{i}"),
             **_nps_block(per_bucket[i])}
            for i, b in enumerate(BUCKETS[m])
        ]
        correlation[m] = _bins_spearman(fine)

    return {
        "sessions": sessions,
        "surveys": {
            "shown": shown,
            "answered": answered_outcomes,
            "dismissed": data.survey("dismissed"),
            "timeout": data.survey("timeout"),
            "response_rate": (answered_outcomes / shown) if shown else None,
        },
        "promoters": promoters,
        "passives": answered - promoters - detractors,
        "detractors": detractors,
        "nps": nps(promoters, detractors, answered),
        "nps_ci95": nps_ci95(promoters, detractors, answered),
        "score_histogram": histogram,
        "reasons": {r: data.survey(f"r_{r}") for r in REASONS if data.survey(f"r_{r}")},
        "by_qos": by_qos,
        "correlation": correlation,
    }
