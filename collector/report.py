"""``GET /v1/report``: the contract's figures, computed the same whatever store is behind."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from protocol import REASONS

from .buckets import BUCKETS, METRICS, bucket_index
from .model import Filters, SurveyFact
from .stats import nps, nps_ci95, spearman
from .storage import Storage


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


def _nps_block(scores: list[int]) -> dict[str, Any]:
    n = len(scores)
    p = sum(1 for s in scores if s >= 9)
    d = sum(1 for s in scores if s <= 6)
    return {
        "n": n,
        "nps": nps(p, d, n),
        "nps_ci95": nps_ci95(p, d, n),
        "mean_score": (sum(scores) / n) if n else None,
    }


async def build_report(store: Storage, filters: Filters) -> dict[str, Any]:
    """The report for ``filters``."""
    groups, facts = await asyncio.gather(store.session_groups(filters), store.survey_facts(filters))
    return compute_report(groups, facts)


def compute_report(groups: list[Any], facts: list[SurveyFact]) -> dict[str, Any]:
    """The report from session groups and survey facts (separate for testing)."""
    sessions = {"count": 0, "surveyed": 0, "failed": 0}
    bucket_sessions: dict[str, list[int]] = {m: [0] * len(BUCKETS[m]) for m in METRICS}
    index_attr = {"rebuffer_ratio": "rb_bucket", "avg_bitrate_kbps": "br_bucket", "startup_ms": "su_bucket"}
    for g in groups:
        sessions["count"] += g.count
        if g.surveyed:
            sessions["surveyed"] += g.count
        if g.failed:
            sessions["failed"] += g.count
        for m in METRICS:
            idx = getattr(g, index_attr[m])
            if idx is not None:
                bucket_sessions[m][idx] += g.count

    outcomes = Counter(f.outcome for f in facts)
    shown = len(facts)
    answered_facts = [f for f in facts if f.outcome == "answered" and f.score is not None]
    scores = [f.score for f in answered_facts if f.score is not None]
    answered = len(scores)
    promoters = sum(1 for s in scores if s >= 9)
    detractors = sum(1 for s in scores if s <= 6)
    histogram = [0] * 11
    for s in scores:
        histogram[s] += 1
    reason_counts = Counter(f.reason for f in answered_facts if f.reason is not None)

    joined = [f for f in answered_facts if f.has_session]
    by_qos: dict[str, list[dict[str, Any]]] = {}
    correlation: dict[str, dict[str, Any]] = {}
    for m in METRICS:
        per_bucket: list[list[int]] = [[] for _ in BUCKETS[m]]
        xs: list[float] = []
        ys: list[float] = []
        for f in joined:
            value = _fact_metric(f, m)
            if value is None:
                continue
            assert f.score is not None
            idx = bucket_index(m, value)
            if idx is not None:
                per_bucket[idx].append(f.score)
            xs.append(float(f.score))
            ys.append(float(value))
        by_qos[m] = [
            {"lo": b.lo, "hi": b.hi, "sessions": bucket_sessions[m][i], **_nps_block(per_bucket[i])}
            for i, b in enumerate(BUCKETS[m])
        ]
        c = spearman(xs, ys)
        correlation[m] = {"spearman": c.spearman, "p_value": c.p_value, "n": c.n}

    return {
        "sessions": sessions,
        "surveys": {
            "shown": shown,
            "answered": outcomes.get("answered", 0),
            "dismissed": outcomes.get("dismissed", 0),
            "timeout": outcomes.get("timeout", 0),
            "response_rate": (outcomes.get("answered", 0) / shown) if shown else None,
        },
        "promoters": promoters,
        "passives": answered - promoters - detractors,
        "detractors": detractors,
        "nps": nps(promoters, detractors, answered),
        "nps_ci95": nps_ci95(promoters, detractors, answered),
        "score_histogram": histogram,
        "reasons": {r: reason_counts[r] for r in REASONS if reason_counts.get(r)},
        "by_qos": by_qos,
        "correlation": correlation,
    }
