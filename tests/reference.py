"""The report's rules written once more, here, straight from the contract's words (§4).

Tests compare the collector with this, never with the collector's own helpers: a
deliberate bug in ``collector/stats.py``, ``collector/metrics.py`` or ``collector/report.py``
(a promoter threshold of 8, a Wald constant of 0.5, an edge on the wrong side) then fails a
test instead of agreeing with itself. Deliberately naive: linear scans, no binning, no
shared code with the collector.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

#: §4 "Bucket edges, in order": (lo, hi), hi None for the open last bucket. A value falls
#: in the bucket with lo < x <= hi, except the first, which also takes x = lo.
BUCKET_EDGES: dict[str, list[tuple[float, float | None]]] = {
    "rebuffer_ratio": [(0, 0), (0, 0.005), (0.005, 0.01), (0.01, 0.02), (0.02, 0.05), (0.05, None)],
    "avg_bitrate_kbps": [(0, 1000), (1000, 2500), (2500, 5000), (5000, 8000), (8000, None)],
    "startup_ms": [(0, 1000), (1000, 2000), (2000, 5000), (5000, None)],
    "video_height": [(0, 576), (576, 720), (720, 1080), (1080, None)],
}

#: The reasons of §3, in the contract's order.
REASONS = ("picture", "buffering", "content", "price", "interface", "support", "other")


def bucket_of(metric: str, x: float | None) -> int | None:
    """The index of the contract bucket ``x`` falls in; None for a null metric."""
    if x is None:
        return None
    for i, (lo, hi) in enumerate(BUCKET_EDGES[metric]):
        upper = math.inf if hi is None else hi
        if (lo < x <= upper) or (i == 0 and x == lo):
            return i
    raise AssertionError(f"{metric} = {x} falls in no contract bucket")


def is_promoter(score: int) -> bool:
    return score in (9, 10)


def is_detractor(score: int) -> bool:
    return 0 <= score <= 6


def nps(scores: Sequence[int]) -> float | None:
    """``100 * (promoters - detractors) / answered``; null with no answers."""
    if not scores:
        return None
    p = sum(1 for s in scores if is_promoter(s))
    d = sum(1 for s in scores if is_detractor(s))
    return 100 * (p - d) / len(scores)


def adjusted_wald(promoters: int, detractors: int, n: int) -> tuple[float, float]:
    """Rocks (2016) as §4 writes it: the estimate (a fraction) and its variance."""
    n2 = n + 3
    p = (promoters + 0.75) / n2
    d = (detractors + 0.75) / n2
    return p - d, (p + d - (p - d) ** 2) / n2


def nps_ci95(scores: Sequence[int]) -> list[float] | None:
    """§4's adjusted Wald interval in points, each end clamped to [-100, 100]."""
    if not scores:
        return None
    p = sum(1 for s in scores if is_promoter(s))
    d = sum(1 for s in scores if is_detractor(s))
    est, var = adjusted_wald(p, d, len(scores))
    half = 1.96 * math.sqrt(var)
    return [max(-100.0, 100 * (est - half)), min(100.0, 100 * (est + half))]


def nps_block(scores: Sequence[int]) -> dict[str, Any]:
    """One ``by_qos`` bucket's figures (less ``lo``, ``hi`` and ``sessions``)."""
    return {"n": len(scores), "nps": nps(scores), "nps_ci95": nps_ci95(scores),
            "mean_score": sum(scores) / len(scores) if scores else None}


def histogram(scores: Iterable[int]) -> list[int]:
    out = [0] * 11
    for s in scores:
        out[s] += 1
    return out


def by_qos(metric: str, session_values: Iterable[float | None],
           answered: Iterable[tuple[float | None, int]]) -> list[dict[str, Any]]:
    """Every bucket of ``metric``: ``sessions`` from the metric of every session in range,
    the NPS figures from (metric of the survey's session, score) of answered surveys."""
    edges = BUCKET_EDGES[metric]
    sessions = [0] * len(edges)
    for x in session_values:
        i = bucket_of(metric, x)
        if i is not None:
            sessions[i] += 1
    scores: list[list[int]] = [[] for _ in edges]
    for x, score in answered:
        i = bucket_of(metric, x)
        if i is not None:
            scores[i].append(score)
    return [{"lo": lo, "hi": hi, "sessions": sessions[i], **nps_block(scores[i])}
            for i, (lo, hi) in enumerate(edges)]


def session_figures(sessions: Iterable[tuple[float | None, bool, bool]]) -> dict[str, int]:
    """§4's ``sessions`` block from (``startup_ms``, ``failed``, surveyed) of each session in
    range: ``exited_before_start`` no frame shown (startup_ms null) and not failed,
    ``start_failures`` no frame shown and failed."""
    out = {"count": 0, "surveyed": 0, "failed": 0, "exited_before_start": 0, "start_failures": 0}
    for startup_ms, failed, surveyed in sessions:
        out["count"] += 1
        out["surveyed"] += 1 if surveyed else 0
        out["failed"] += 1 if failed else 0
        if startup_ms is None and not failed:
            out["exited_before_start"] += 1
        if startup_ms is None and failed:
            out["start_failures"] += 1
    return out


def answer_figures(scores: Sequence[int], reasons: Iterable[str | None]) -> dict[str, Any]:
    """The report's top-level NPS figures from the answered surveys' scores and reasons."""
    given = [r for r in reasons if r is not None]
    return {
        "promoters": sum(1 for s in scores if is_promoter(s)),
        "passives": sum(1 for s in scores if s in (7, 8)),
        "detractors": sum(1 for s in scores if is_detractor(s)),
        "nps": nps(scores),
        "nps_ci95": nps_ci95(scores),
        "score_histogram": histogram(scores),
        "reasons": {r: given.count(r) for r in REASONS if r in given},
    }


def assert_close(got: Any, want: Any, path: str = "report", rel: float = 1e-9) -> None:
    """``got == want``, floats within ``rel`` (the report's sums may be added up in another
    order than here), naming the first place they differ."""
    if isinstance(want, dict):
        assert isinstance(got, dict), (path, got)
        assert set(got) >= set(want), (path, sorted(set(want) - set(got)))
        for k, v in want.items():
            assert_close(got[k], v, f"{path}.{k}", rel)
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), (path, got, want)
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_close(g, w, f"{path}[{i}]", rel)
    elif isinstance(want, float) and not isinstance(got, bool):
        assert isinstance(got, int | float), (path, got)
        assert math.isclose(got, want, rel_tol=rel, abs_tol=1e-9), (path, got, want)
    else:
        assert got == want and isinstance(got, bool) == isinstance(want, bool), (path, got, want)
