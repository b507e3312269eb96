"""A reference for contract section 6, written from its words, over the collector's export.

Independent of the collector's own code: the rows are built here from ``GET /v1/export``
and fitted with statsmodels (``OLS(...).fit(cov_type="cluster", use_t=True)``, as the
contract names it). The simulators' tests use it to check the planted truth, next to
what ``GET /v1/impact`` answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import statsmodels.api as sm

REGRESSORS = ("rebuffer_pct", "startup_s", "bitrate_mbps", "failed", "no_start")
REBUFFER_EDGES = (0.0, 0.005, 0.01, 0.02, 0.05)


@dataclass(frozen=True)
class Rows:
    """The rows of contract section 6: y, regressors, segments, box."""

    y: np.ndarray
    x: dict[str, np.ndarray]
    segments: dict[str, list[str | None]]
    box: list[str]


def _ratio(qos: dict[str, Any]) -> float:
    return qos["rebuffer_s"] / qos["watch_s"] if qos["watch_s"] > 0 else 0.0


def build_rows(sessions: list[dict[str, Any]], surveys: list[dict[str, Any]]) -> Rows:
    """Answered surveys whose session is known, minus started sessions without a bitrate."""
    by_id = {s["id"].lower(): s for s in sessions}
    y: list[float] = []
    cols: dict[str, list[float]] = {k: [] for k in REGRESSORS}
    seg: dict[str, list[str | None]] = {k: [] for k in ("region", "model", "firmware",
                                                        "content_type")}
    box: list[str] = []
    for v in surveys:
        if v["outcome"] != "answered" or v.get("session_id") is None:
            continue
        s = by_id.get(v["session_id"].lower())
        if s is None:
            continue
        q = s["qos"]
        frame = q["startup_ms"] is not None
        if frame and q["avg_bitrate_kbps"] is None:
            continue
        score = v["score"]
        y.append(100.0 if score >= 9 else -100.0 if score <= 6 else 0.0)
        cols["rebuffer_pct"].append(100.0 * _ratio(q))
        cols["startup_s"].append(q["startup_ms"] / 1000.0 if frame else np.nan)
        cols["bitrate_mbps"].append(q["avg_bitrate_kbps"] / 1000.0 if frame else np.nan)
        cols["failed"].append(1.0 if q["failed"] else 0.0)
        cols["no_start"].append(0.0 if frame else 1.0)
        attrs = v.get("box") or {}
        seg["region"].append(attrs.get("region"))
        seg["model"].append(attrs.get("model"))
        seg["firmware"].append(attrs.get("firmware"))
        seg["content_type"].append(s.get("content_type"))
        box.append(v["box_id"])
    x = {k: np.array(c, dtype=float) for k, c in cols.items()}
    framed = x["no_start"] == 0
    for k in ("startup_s", "bitrate_mbps"):
        # Rows without a frame take the mean over the rows with one.
        if framed.any():
            x[k][~framed] = x[k][framed].mean()
    return Rows(np.array(y, dtype=float), x, seg, box)


def _fixed_effects(rows: Rows) -> list[tuple[str, np.ndarray]]:
    out: list[tuple[str, np.ndarray]] = []
    for factor in ("region", "model", "firmware", "content_type"):
        values = rows.segments[factor]
        # null is a value of its own; it sorts first here (any order gives the same slopes).
        levels = sorted(set(values), key=lambda v: (v is not None, v or ""))
        for level in levels[1:]:
            out.append((f"{factor}={level}", np.array([v == level for v in values], dtype=float)))
    return out


def _keep(columns: list[tuple[str, np.ndarray]], framed: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Drop each column that adds no rank to those before it (residual norm <= 1e-9 of its own)."""
    kept: list[tuple[str, np.ndarray]] = []
    for name, col in columns:
        on = framed if name in ("startup_s", "bitrate_mbps") else np.ones(len(col), dtype=bool)
        c = col[on]
        norm = float(np.linalg.norm(c))
        if norm == 0.0:
            continue
        if kept:
            a = np.column_stack([k[1][on] for k in kept])
            coef, *_ = np.linalg.lstsq(a, c, rcond=None)
            resid = float(np.linalg.norm(c - a @ coef))
        else:
            resid = norm
        if resid > 1e-9 * norm:
            kept.append((name, col))
    return kept


@dataclass(frozen=True)
class Fit:
    """One regressor's slope, interval and standard error (None: dropped or thresholds)."""

    coef: float | None
    ci95: tuple[float, float] | None
    se: float | None


def fit(rows: Rows, adjusted: bool) -> dict[str, Fit]:
    """Contract section 6's model (``adjusted``: with the segments' fixed effects)."""
    n = len(rows.y)
    groups = sorted(set(rows.box))
    none = {k: Fit(None, None, None) for k in REGRESSORS}
    if n == 0:
        return none
    columns: list[tuple[str, np.ndarray]] = [("const", np.ones(n))]
    if adjusted:
        columns += _fixed_effects(rows)
    columns += [(k, rows.x[k]) for k in REGRESSORS]
    kept = _keep(columns, rows.x["no_start"] == 0)
    if n < 50 or len(groups) < 20 or n <= len(kept):
        return none
    design = np.column_stack([c for _, c in kept])
    codes = np.array([groups.index(b) for b in rows.box])
    res = sm.OLS(rows.y, design).fit(cov_type="cluster", cov_kwds={"groups": codes}, use_t=True)
    ci = res.conf_int(0.05)
    out = dict(none)
    for i, (name, _) in enumerate(kept):
        if name in out:
            out[name] = Fit(float(res.params[i]), (float(ci[i][0]), float(ci[i][1])),
                            float(res.bse[i]))
    return out


def response_adjusted(sessions: list[dict[str, Any]], surveys: list[dict[str, Any]]) -> float | None:
    """Contract section 6's ``response_adjusted.nps``: post-stratified by rebuffer bucket."""
    by_id = {s["id"].lower(): s for s in sessions}
    strata: dict[str, list[int]] = {}
    shown: dict[str, int] = {}
    for v in surveys:
        s = by_id.get((v.get("session_id") or "").lower())
        if s is None:
            key = "unknown"
        else:
            r = _ratio(s["qos"])
            key = str(sum(1 for edge in REBUFFER_EDGES if r > edge))  # bucket 0..5
        shown[key] = shown.get(key, 0) + 1
        if v["outcome"] == "answered":
            strata.setdefault(key, []).append(v["score"])
    total = sum(shown[k] for k in strata)
    if not total:
        return None
    out = 0.0
    for k, scores in strata.items():
        share = sum(1 for s in scores if s >= 9) / len(scores) - sum(
            1 for s in scores if s <= 6) / len(scores)
        out += shown[k] / total * share
    return 100.0 * out
