"""PLACEHOLDER for branch ``impact`` (contract §6): dropped at merge.

A stand-in with the real module's name and signature so that the dashboard can be built
and tested against contract-shaped data. Its slopes are FIXED NUMBERS, not estimates;
``answers``, ``nps``, ``recoverable`` (the contract's formula over the rows, with those
slopes) and ``response_adjusted`` follow the contract's definitions.
"""

from __future__ import annotations

import math
from typing import Any

from .buckets import bucket_index
from .model import Filters
from .storage import Storage

REGRESSORS = ("rebuffer_pct", "startup_s", "bitrate_mbps", "failed", "no_start")
TARGETS = {"rebuffer_pct": 0.0, "startup_s": 2.0, "bitrate_mbps": 5.0, "failed": 0.0,
           "no_start": 0.0}
# Placeholder slopes and half-widths (NOT estimated): (adjusted, unadjusted).
_FAKE = {"rebuffer_pct": (-6.0, -9.0, 2.0), "startup_s": (-2.0, -2.5, 1.0),
         "bitrate_mbps": (1.5, 2.5, 1.0), "no_start": (-30.0, -35.0, 15.0)}


def _effect(coef: float | None, half: float) -> dict[str, Any]:
    if coef is None:
        return {"nps_points": None, "ci95": None, "p_value": None}
    return {"nps_points": coef, "ci95": [coef - half, coef + half], "p_value": 0.01}


async def compute_impact(storage: Storage, query: Filters) -> dict[str, Any]:
    """Contract §6's JSON (placeholder figures, see the module's docstring)."""
    facts = await storage.survey_facts(query)
    rows = [f for f in facts if f.outcome == "answered" and f.score is not None and f.has_session
            and not (f.startup_ms is not None and f.avg_bitrate_kbps is None)]
    n = len(rows)
    ys = [100 if f.score is not None and f.score >= 9 else (-100 if (f.score or 0) <= 6 else 0)
          for f in rows]
    enough = n >= 50
    effects = {
        kind: {r: _effect(_FAKE[r][i] if enough and r in _FAKE else None,
                          _FAKE[r][2] if r in _FAKE else 0.0) for r in REGRESSORS}
        for i, kind in enumerate(("adjusted", "unadjusted"))
    }

    def excess(r: str) -> float:
        t = TARGETS[r]
        total = 0.0
        for f in rows:
            framed = f.startup_ms is not None
            if r == "rebuffer_pct":
                total += max(0.0, 100 * (f.rebuffer_ratio or 0.0) - t)
            elif r == "startup_s" and framed:
                total += max(0.0, (f.startup_ms or 0.0) / 1000 - t)
            elif r == "bitrate_mbps" and framed:
                total += max(0.0, t - (f.avg_bitrate_kbps or 0.0) / 1000)
            elif r == "no_start" and not framed:
                total += 1.0
        return total / n if n else 0.0

    recoverable: dict[str, Any] = {}
    for r in REGRESSORS:
        e = effects["adjusted"][r]
        if e["nps_points"] is None:
            recoverable[r] = {"target": TARGETS[r], "nps_points": None, "ci95": None}
            continue
        sign = 1.0 if r == "bitrate_mbps" else -1.0
        m = excess(r)
        ends = sorted(sign * c * m for c in e["ci95"])
        recoverable[r] = {"target": TARGETS[r], "nps_points": sign * e["nps_points"] * m,
                          "ci95": ends}

    strata: dict[str, list[int]] = {}
    for f in facts:
        idx = bucket_index("rebuffer_ratio", f.rebuffer_ratio) if f.has_session else None
        s = strata.setdefault("unknown" if idx is None else str(idx), [0, 0, 0, 0])
        s[0] += 1
        if f.outcome == "answered" and f.score is not None:
            s[1] += 1
            s[2] += f.score >= 9
            s[3] += f.score <= 6
    answered = {k: v for k, v in strata.items() if v[1]}
    shown_all = sum(v[0] for v in answered.values())
    adj: dict[str, Any] = {"nps": None, "ci95": None,
                           "unrepresented_shown": sum(v[0] for v in strata.values() if not v[1])}
    if answered:
        est = sum(v[0] / shown_all * (v[2] - v[3]) / v[1] for v in answered.values())
        var = sum((v[0] / shown_all) ** 2 * ((v[2] + v[3]) / v[1] - ((v[2] - v[3]) / v[1]) ** 2)
                  / v[1] for v in answered.values())
        half = 1.96 * 100 * math.sqrt(var)
        adj.update(nps=100 * est, ci95=[max(-100.0, 100 * est - half), min(100.0, 100 * est + half)])
    return {
        "answers": n, "boxes": n, "nps": sum(ys) / n if n else None,
        "effects": effects, "recoverable": recoverable, "response_adjusted": adj,
    }
