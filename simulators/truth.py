"""The ground truth of a simulated fleet, computed here independently of the collector.

Over the records the boxes' agents actually made (answered surveys joined to their
sessions), the figures the collector's ``/v1/report`` should show: NPS, NPS by rebuffer
ratio bucket (the contract's edges, section 4) and Spearman's rank correlation of score
against each QoS metric.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Final

from protocol import SessionRecord, SurveyRecord

#: Contract section 4's bucket edges: (lo, hi); hi None is open-ended.
REBUFFER_EDGES: Final = ((0.0, 0.0), (0.0, 0.005), (0.005, 0.01), (0.01, 0.02), (0.02, 0.05),
                         (0.05, None))
BITRATE_EDGES: Final = ((0.0, 1000.0), (1000.0, 2500.0), (2500.0, 5000.0), (5000.0, 8000.0),
                        (8000.0, None))
STARTUP_EDGES: Final = ((0.0, 1000.0), (1000.0, 2000.0), (2000.0, 5000.0), (5000.0, None))


def nps(scores: Sequence[int]) -> float | None:
    """100 × (promoters − detractors) / answers; None without answers."""
    if not scores:
        return None
    p = sum(1 for s in scores if s >= 9)
    d = sum(1 for s in scores if s <= 6)
    return 100.0 * (p - d) / len(scores)


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        avg = (i + j) / 2.0 + 1.0  # ties take the average rank
        for k in range(i, j + 1):
            ranks[order[k]] = avg
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho (Pearson over average ranks); None for n < 3 or a constant side."""
    n = len(x)
    if n < 3:
        return None
    rx, ry = _ranks(x), _ranks(y)
    mx, my = sum(rx) / n, sum(ry) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def _bucket(x: float, edges: Sequence[tuple[float, float | None]]) -> int:
    for i, (lo, hi) in enumerate(edges):
        if i == 0 and x == lo:
            return 0
        if x > lo and (hi is None or x <= hi):
            return i
    return 0


def rebuffer_ratio(s: SessionRecord) -> float:
    """The collector's derivation: rebuffer_s / watch_s, 0 where watch_s is 0."""
    q = s.qos
    return q.rebuffer_s / q.watch_s if q.watch_s > 0 else 0.0


def ground_truth(sessions: Iterable[SessionRecord], surveys: Iterable[SurveyRecord]) -> dict[str, Any]:
    """The report's headline figures over these records (contract section 4's rules)."""
    by_id = {s.id: s for s in sessions}
    shown = answered = dismissed = timeout = 0
    scores: list[int] = []
    pairs: list[tuple[int, SessionRecord]] = []
    for v in surveys:
        shown += 1
        if v.outcome == "answered" and v.score is not None:
            answered += 1
            scores.append(v.score)
            s = by_id.get(v.session_id or "")
            if s is not None:
                pairs.append((v.score, s))
        elif v.outcome == "dismissed":
            dismissed += 1
        else:
            timeout += 1

    def by(metric: str, edges: Sequence[tuple[float, float | None]]) -> list[dict[str, Any]]:
        groups: list[list[int]] = [[] for _ in edges]
        for score, s in pairs:
            value = _metric(s, metric)
            if value is not None:
                groups[_bucket(value, edges)].append(score)
        return [{"lo": lo, "hi": hi, "n": len(g), "nps": nps(g),
                 "mean_score": (sum(g) / len(g)) if g else None}
                for (lo, hi), g in zip(edges, groups, strict=True)]

    def corr(metric: str) -> dict[str, Any]:
        xs = [(float(_metric(s, metric)), float(score)) for score, s in pairs  # type: ignore[arg-type]
              if _metric(s, metric) is not None]
        return {"spearman": spearman([a for a, _ in xs], [b for _, b in xs]), "n": len(xs)}

    return {
        "sessions": len(by_id),
        "surveys": {"shown": shown, "answered": answered, "dismissed": dismissed,
                    "timeout": timeout,
                    "response_rate": answered / shown if shown else None},
        "nps": nps(scores),
        "by_qos": {"rebuffer_ratio": by("rebuffer_ratio", REBUFFER_EDGES),
                   "avg_bitrate_kbps": by("avg_bitrate_kbps", BITRATE_EDGES),
                   "startup_ms": by("startup_ms", STARTUP_EDGES)},
        "correlation": {m: corr(m) for m in ("rebuffer_ratio", "avg_bitrate_kbps", "startup_ms")},
    }


def _metric(s: SessionRecord, metric: str) -> float | None:
    if metric == "rebuffer_ratio":
        return rebuffer_ratio(s)
    if metric == "avg_bitrate_kbps":
        return s.qos.avg_bitrate_kbps
    v = s.qos.startup_ms
    return None if v is None else float(v)
