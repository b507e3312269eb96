"""``GET /v1/report``: the contract's figures, computed the same whatever store is behind."""

from __future__ import annotations

import math
from typing import Any

from protocol import REASONS
from protocol.nps import SCORES, tally

from .fine_bins import FINE_EDGES, coarse_of_fine
from .metrics import BY_NAME, NAMES
from .model import Filters
from .stats import nps, nps_ci95, t_test_p_value
from .storage import Storage
from .storage.aggregates import BIN_VEC
from .storage.report_sql import ReportData


def _nps_block(histogram: list[int]) -> dict[str, Any]:
    """n, NPS, its interval and the mean score of a score histogram."""
    n = sum(histogram)
    p, _, d = tally(histogram)
    return {
        "n": n,
        "nps": nps(p, d, n),
        "nps_ci95": nps_ci95(p, d, n),
        "mean_score": (sum(s * c for s, c in enumerate(histogram)) / n) if n else None,
    }


async def build_report(store: Storage, filters: Filters) -> dict[str, Any]:
    """The report for ``filters``, from the store's aggregates."""
    return compute_report_data(await store.report_data(filters))


#: Where a fine bin's vector (:data:`BIN_VEC`) holds the count of score 0, the sum of
#: positions of score 0, the sum of squared positions, the least and greatest position.
_S0, _T0, _Q, _PMIN, _PMAX = (BIN_VEC.index(c) for c in ("s0", "t0", "q", "pmin", "pmax"))


def _exact_bin(metric: str, fine: int) -> bool:
    """Whether every value of the bin is the same: the bin of exact zeros, and bins of a
    whole-number metric (milliseconds, pixels) that hold at most one integer."""
    if fine == 0:
        return True
    edges = FINE_EDGES[metric]
    if BY_NAME[metric].integer and 0 < fine < len(edges):
        return math.floor(edges[fine]) - math.floor(edges[fine - 1]) <= 1
    return False


def bins_spearman(metric: str, bins: list[tuple[int, list[int]]]) -> dict[str, Any]:
    """Spearman's rho of score against a metric from the fine bins, ties taking average ranks.

    Spearman's rho is Pearson's r of the ranks. Each score's rank is exact (scores are
    integers). A value's rank is its bin's average rank, exact, plus its rank inside the
    bin, which binning loses and which is modelled here as a straight line of the value's
    position inside the bin: each bin keeps, by score, the count and the sum of positions,
    and over all scores the sum of squared positions and the least and greatest position.
    The line is as steep as the ranks of distinct values spread evenly over the positions'
    range, but no steeper than makes its spread that of distinct ranks, so that ties (an
    ABR rung, a common start-up time) flatten it. Bins of exactly one value (zeros, single
    milliseconds) and bins whose positions are all alike add nothing inside. What remains
    is of second order in the bins' shares: on skewed, tied and narrow data the tests find
    it under 0.001, against the contract's 0.01 (checked against scipy).
    """
    score_totals = [sum(v[_S0 + s] for _, v in bins) for s in SCORES]
    n_total = sum(score_totals)
    if n_total < 3:
        return {"spearman": None, "p_value": None, "n": n_total}
    mean = (n_total + 1) / 2.0
    score_rank: list[float] = []
    below = 0
    for total in score_totals:
        score_rank.append(below + (total + 1) / 2.0 - mean)
        below += total
    syy = sum(c * y * y for c, y in zip(score_totals, score_rank, strict=True))
    sxx = sxy = 0.0
    below = 0
    for fine, v in bins:
        n_b = sum(v[_S0:_S0 + 11])
        x = below + (n_b + 1) / 2.0 - mean
        below += n_b
        sxx += n_b * x * x
        sxy += x * sum(v[_S0 + s] * score_rank[s] for s in SCORES)
        if n_b < 2 or _exact_bin(metric, fine):
            continue
        sum_t = sum(v[_T0:_T0 + 11])
        if v[_Q] * n_b == sum_t * sum_t:  # every position alike: tied values
            continue
        mean_t = sum_t / n_b
        var_t = (v[_Q] * n_b - sum_t * sum_t) / (n_b * n_b)
        # Ranks inside the bin as a straight line of the positions: as steep as the ranks
        # of distinct values spread over the positions' range, and no steeper than makes
        # the line's spread the ranks' (ties flatten ranks, a spread-out few steepen them).
        span = max(v[_PMAX] - v[_PMIN], 1)
        slope = min(n_b / span, math.sqrt((n_b * n_b - 1) / 12.0 / var_t))
        sxx += slope * slope * var_t * n_b
        sxy += slope * sum((v[_T0 + s] - v[_S0 + s] * mean_t) * score_rank[s] for s in SCORES)
    if sxx <= 0.0 or syy <= 0.0:
        return {"spearman": None, "p_value": None, "n": n_total}
    r = max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))
    return {"spearman": r, "p_value": t_test_p_value(r, n_total), "n": n_total}


def compute_report_data(data: ReportData) -> dict[str, Any]:
    """The contract's report from the counts of :class:`ReportData`."""
    sessions = {"count": data.session("n"), "surveyed": data.session("surveyed"),
                "failed": data.session("failed"),
                "exited_before_start": data.session("exited_before_start"),
                "start_failures": data.session("start_failures")}
    histogram = [data.survey(f"h{i}") for i in SCORES]
    answered = sum(histogram)
    promoters, passives, detractors = tally(histogram)
    shown = data.survey("shown")
    answered_outcomes = data.survey("answered")

    by_qos: dict[str, list[dict[str, Any]]] = {}
    correlation: dict[str, dict[str, Any]] = {}
    for m in NAMES:
        buckets = BY_NAME[m].buckets
        sessions_in = data.bucket_sessions(m)
        per_bucket = [[0] * 11 for _ in buckets]
        fine = sorted((b, counts) for (metric, b), counts in data.bins.items()
                      if metric == m and any(counts))
        for b, counts in fine:
            target = per_bucket[coarse_of_fine(m, b)]
            for s in SCORES:
                target[s] += counts[_S0 + s]
        by_qos[m] = [
            {"lo": b.lo, "hi": b.hi, "sessions": sessions_in[i], **_nps_block(per_bucket[i])}
            for i, b in enumerate(buckets)
        ]
        correlation[m] = bins_spearman(m, fine)

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
        "passives": passives,
        "detractors": detractors,
        "nps": nps(promoters, detractors, answered),
        "nps_ci95": nps_ci95(promoters, detractors, answered),
        "score_histogram": histogram,
        "reasons": {r: data.survey(f"r_{r}") for r in REASONS if data.survey(f"r_{r}")},
        "by_qos": by_qos,
        "correlation": correlation,
    }
