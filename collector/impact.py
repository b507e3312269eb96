"""``GET /v1/impact`` (contract section 6): what stream quality costs in NPS points.

The estimator, step by step, each formula beside its code:

1. **Rows** (read by :mod:`collector.storage.impact_sql`, from the survey rows, which keep
   their session's values): answered surveys in range whose session is known, less
   sessions that showed a frame but have no bitrate.
2. **y** = 100 for a promoter (9-10), -100 for a detractor (0-6), 0 for a passive, so
   that mean(y) is the NPS of the rows.
3. **Regressors**, in this order: ``rebuffer_pct`` = 100 * rebuffer_ratio,
   ``startup_s`` = startup_ms / 1000, ``bitrate_mbps`` = avg_bitrate_kbps / 1000,
   ``failed`` (0/1), ``no_start`` (1 where no frame was shown). On rows without a frame,
   ``startup_s`` and ``bitrate_mbps`` take their mean over the rows with a frame.
4. **Designs**: ``unadjusted`` = [1, the five]; ``adjusted`` = [1, fixed effects, the
   five], the fixed effects being one indicator per value of region, model, firmware
   (the survey's batch) and content_type (the session's), null a value of its own, the
   first value of each factor in sort order left out.
5. **Rank rule**: columns are taken in order and one is dropped when its residual after
   projection on the columns kept before it has a norm <= 1e-9 of its own norm;
   ``startup_s`` and ``bitrate_mbps`` are judged on the rows with a frame only. Both this
   and the fit below run on R of [X | y] = QR (X'X = R'R, see :class:`Geometry`): a few
   numbers a column instead of N.
6. **OLS** b = (X'X)^-1 X'y on the kept columns, with **CR1 box-clustered** covariance
   V = (X'X)^-1 (sum_g X_g'u_g u_g'X_g) (X'X)^-1 * G/(G-1) * (N-1)/(N-K),
   **t(G-1)** intervals b +- t(0.975, G-1) se and two-sided p-values.
7. **Thresholds**: N < 50, G < 20 or N <= K: every figure of that model is null; a slope
   with se < 1e-9 gets the interval [b, b] and a null p-value.
8. **Recoverable** NPS points, from the adjusted slopes: -b * mean(max(0, x - target))
   (``bitrate_mbps``: b * mean(max(0, target - x))), rows without a frame adding 0 to the
   means of ``startup_s`` and ``bitrate_mbps``; the interval is the slope's through the
   same (linear) formula, ends ascending.
9. **Response-adjusted NPS**: every survey shown falls in the rebuffer bucket of its
   session (or ``unknown``); over the strata with an answer, w_s = shown_s / shown,
   nps = 100 * sum w_s (p_s - d_s), ci = nps +- 1.96 * 100 * sqrt(sum w_s^2 (p_s + d_s -
   (p_s - d_s)^2) / n_s), clamped to [-100, 100].

Pure numpy (no scipy at run time: the t distribution comes from :mod:`collector.stats`,
checked against scipy in the tests). :func:`impact_from_arrays` is the whole computation
over plain arrays; :func:`compute_impact` reads the store and runs it off the event loop.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from protocol.nps import DETRACTOR_MAX, PROMOTER_MIN

from .errors import CollectorError
from .model import Filters
from .numeric import np, npt
from .stats import Z95_CONTRACT, t_quantile_two_sided, t_two_sided_p
from .storage import Storage
from .storage.impact_sql import Coded, ImpactData, StratumCounts

FloatArray = npt.NDArray[np.float64]

#: The five regressors, in the contract's order.
REGRESSORS: Final = ("rebuffer_pct", "startup_s", "bitrate_mbps", "failed", "no_start")
#: The regressors whose value is only defined on rows with a frame (imputed elsewhere).
FRAME_ONLY: Final = frozenset({"startup_s", "bitrate_mbps"})
#: The targets of ``recoverable`` (the contract's).
TARGETS: Final[dict[str, float]] = {"rebuffer_pct": 0.0, "startup_s": 2.0, "bitrate_mbps": 5.0,
                                    "failed": 0.0, "no_start": 0.0}
#: Below these, a model's figures are null.
MIN_ANSWERS: Final = 50
MIN_BOXES: Final = 20
#: The rank rule's relative residual norm, and the standard error of a perfect fit.
RANK_TOL: Final = 1e-9
SE_TOL: Final = 1e-9


class ImpactError(CollectorError):
    """The estimate could not be computed: a numerical failure that the rank rule is there
    to prevent (answered as a 500 that names no data)."""


@dataclass(frozen=True, slots=True)
class Slope:
    """One regressor's slope in NPS points per unit, its 95 % interval and p-value."""

    coef: float
    ci95: tuple[float, float]
    p_value: float | None


def _figures(slope: Slope | None) -> dict[str, Any]:
    if slope is None:
        return {"nps_points": None, "ci95": None, "p_value": None}
    return {"nps_points": slope.coef, "ci95": list(slope.ci95), "p_value": slope.p_value}


# -- building y and the regressors ------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Design:
    """y, the five regressors and the frame mask of the rows (step 2 and 3)."""

    y: FloatArray
    #: N x 5, columns in :data:`REGRESSORS` order, no-frame rows imputed.
    x: FloatArray
    #: True where the session showed a frame.
    frame: npt.NDArray[np.bool_]


def build_design(score: npt.ArrayLike, rebuffer_ratio: npt.ArrayLike, startup_ms: npt.ArrayLike,
                 avg_bitrate_kbps: npt.ArrayLike, failed: npt.ArrayLike) -> Design:
    """y and the regressors from the raw columns (``startup_ms`` NaN where null)."""
    score_a = np.asarray(score, dtype=np.float64)
    # y = 100 * (promoter - detractor)
    y = 100.0 * ((score_a >= PROMOTER_MIN).astype(np.float64)
                 - (score_a <= DETRACTOR_MAX).astype(np.float64))
    startup = np.asarray(startup_ms, dtype=np.float64)
    bitrate = np.asarray(avg_bitrate_kbps, dtype=np.float64)
    frame = ~np.isnan(startup)
    n = len(y)
    x = np.empty((n, len(REGRESSORS)), dtype=np.float64)
    x[:, 0] = 100.0 * np.asarray(rebuffer_ratio, dtype=np.float64)  # rebuffer_pct
    for col, raw in ((1, startup), (2, bitrate)):
        value = raw / 1000.0  # startup_s, bitrate_mbps
        # No frame: the mean over the rows with a frame (any value where there is none:
        # the column is then judged on no rows and dropped).
        fill = float(value[frame].mean()) if frame.any() else 0.0
        x[:, col] = np.where(frame, value, fill)
    x[:, 3] = np.asarray(failed, dtype=np.float64)  # failed
    x[:, 4] = (~frame).astype(np.float64)  # no_start
    return Design(y, x, frame)


IntArray = npt.NDArray[np.int64]


def factor_indicators(factor: Coded) -> FloatArray:
    """One 0/1 column per level of a factor, the first in sort order left out (null is a
    level of its own, sorted first)."""
    order = sorted(range(len(factor.levels)),
                   key=lambda i: (factor.levels[i] is not None, factor.levels[i] or ""))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))  # each level's place in sort order
    sorted_codes = rank[factor.codes]
    # sorted_codes[:, None] == [1, 2, ...]: one column per level but the first.
    out: FloatArray = (sorted_codes[:, None] == np.arange(1, len(order))[None, :]).astype(np.float64)
    return out


# -- the columns' geometry: the R factor -----------------------------------------------------

@dataclass(frozen=True, slots=True)
class Geometry:
    """The candidate columns and y as least squares sees them, in a few numbers each.

    With [X | y] = Q R (Q with orthonormal columns), X'X = R'R: every inner product of
    columns, hence every projection, residual norm and least-squares fit over the N rows,
    is the same over the columns of the small matrix R (Householder QR is backward
    stable: R is exactly the factor of rows within rounding of ours). So the rank rule and
    OLS below run on R, and only the residuals and the cluster sums need the rows.
    ``rows``: R of all rows; ``frame``: R of the rows with a frame (for the columns judged
    there). The rows with a frame are factored once: R of all rows is R of [R_frame; the
    rows without a frame]."""

    rows: FloatArray
    frame: FloatArray


#: Rows per block of :func:`r_factor`: a block of a few dozen columns stays in the cache.
QR_BLOCK: Final = 2048


def r_factor(a: FloatArray) -> FloatArray:
    """R of a tall matrix's QR, by blocks of rows: R of [R_1; R_2; ...], R_i that of the
    i-th block (a tall-skinny QR: the same R within rounding, and twice as fast at
    350,000 rows, since each block's reflections stay in the cache where one pass of them
    over all rows does not). Zero rows pad the last block: they change nothing in R."""
    n, k = a.shape
    if n <= QR_BLOCK:
        whole: FloatArray = np.linalg.qr(a, mode="r")  # type: ignore[assignment]
        return whole
    blocks = -(-n // QR_BLOCK)
    padded = np.zeros((blocks * QR_BLOCK, k))
    padded[:n] = a
    each = np.linalg.qr(padded.reshape(blocks, QR_BLOCK, k), mode="r")  # a stack of R_i
    out: FloatArray = np.linalg.qr(np.reshape(each, (-1, k)), mode="r")  # type: ignore[assignment]
    return out


def geometry(xy: FloatArray, frame: npt.NDArray[np.bool_]) -> Geometry:
    """The R factors of ``xy`` (N x (K+1): the candidate columns, then y) over all rows
    and over the rows with a frame."""
    r_frame = r_factor(xy[frame])
    return Geometry(r_factor(np.vstack([r_frame, xy[~frame]])), r_frame)


# -- the rank rule -------------------------------------------------------------------------

def _project_out(v: FloatArray, basis: FloatArray) -> FloatArray:
    """v minus its projection on the orthonormal *rows* of ``basis``. One Gram-Schmidt pass
    loses orthogonality when v lies nearly in the span; a second pass, made when the first
    removed more than half of v's length (Kahan and Parlett's "twice is enough"), restores
    it to rounding."""
    if basis.shape[0] == 0:
        return v
    r = v - basis.T @ (basis @ v)
    if np.linalg.norm(r) < 0.5 * np.linalg.norm(v):
        r = r - basis.T @ (basis @ r)
    return r


def keep_columns(rows: FloatArray, frame: FloatArray, frame_only: Sequence[bool]) -> list[bool]:
    """The rank rule (step 5): for each column in order, whether it is kept.

    ``rows`` and ``frame`` hold the candidate columns over all rows and over the rows with
    a frame, or any matrices with the same column geometry (the R factors of
    :class:`Geometry`). A column c is dropped when ``||r|| <= 1e-9 * ||c||``, r being c's
    residual after projection on the kept columns before it (over the rows with a frame
    where ``frame_only``). Two orthonormal bases of the kept columns grow as columns are
    kept: over all rows, and over the rows with a frame.
    """
    k = len(frame_only)
    # The bases, one vector a row: [:size] holds the basis so far.
    bases = [np.empty((k, rows.shape[0])), np.empty((k, frame.shape[0]))]
    sizes = [0, 0]
    # The basis over the rows with a frame is needed up to the last column judged there.
    last_frame_only = max((j for j in range(k) if frame_only[j]), default=-1)
    kept: list[bool] = []
    for j in range(k):
        vectors = (np.ascontiguousarray(rows[:, j]), np.ascontiguousarray(frame[:, j]))
        which = 1 if frame_only[j] else 0
        v = vectors[which]
        r = _project_out(v, bases[which][:sizes[which]])
        keep = bool(np.linalg.norm(r) > RANK_TOL * np.linalg.norm(v))
        kept.append(keep)
        if not keep:
            continue
        for w in (0, 1) if j < last_frame_only else (0,):
            vec = vectors[w]
            r = _project_out(vec, bases[w][:sizes[w]])
            norm = np.linalg.norm(r)
            # A kept column may still lie in the span over the rows with a frame.
            if norm > RANK_TOL * np.linalg.norm(vec):
                bases[w][sizes[w]] = r / norm
                sizes[w] += 1
    return kept


# -- OLS with box-clustered (CR1) errors --------------------------------------------------

def cluster_ols(xy: FloatArray, r_rows: FloatArray, columns: Sequence[int],
                groups: IntArray, n_groups: int) -> tuple[FloatArray, FloatArray]:
    """OLS coefficients of y (the last column of ``xy``) on ``columns`` of ``xy`` and their
    CR1 box-clustered standard errors (step 6).

    The fit runs on R (``r_rows``, see :class:`Geometry`): with A = R[:, columns] = Q_A R_A,
    b = R_A^-1 Q_A' R[:, y] is the least-squares b of the rows, and (X'X)^-1 = R_A^-1 R_A^-T,
    without forming X'X (which would square the condition number). ``groups`` holds each
    row's box as 0..G-1.
    """
    n, k = xy.shape[0], len(columns)
    q_a, r_a = np.linalg.qr(r_rows[:, columns])
    b = np.linalg.solve(r_a, q_a.T @ r_rows[:, -1])  # b = (X'X)^-1 X'y
    r_inv = np.linalg.solve(r_a, np.eye(k))
    bread = r_inv @ r_inv.T  # (X'X)^-1
    u = xy[:, -1] - xy[:, columns] @ b  # the rows' residuals
    # s_g = X_g'u_g, one row per box: sum over the box's rows of x_i * u_i.
    scores = np.empty((n_groups, k))
    for i, j in enumerate(columns):
        scores[:, i] = np.bincount(groups, weights=xy[:, j] * u, minlength=n_groups)
    meat = scores.T @ scores  # sum_g X_g'u_g u_g'X_g
    g = n_groups
    v = bread @ meat @ bread * (g / (g - 1)) * ((n - 1) / (n - k))
    se = np.sqrt(np.maximum(np.diag(v), 0.0))
    return b, se


def fit_model(xy: FloatArray, geom: Geometry, columns: Sequence[int], frame_only: Sequence[bool],
              groups: IntArray, n_groups: int) -> dict[str, Slope | None]:
    """One model (step 4 to 7): the slope of each regressor, None where dropped or where
    the model's figures are null. ``columns``: the model's candidate columns of ``xy`` in
    order (the intercept, any fixed effects, then the five regressors last)."""
    n = xy.shape[0]
    null: dict[str, Slope | None] = dict.fromkeys(REGRESSORS)
    if n < MIN_ANSWERS or n_groups < MIN_BOXES:
        return null
    kept = keep_columns(geom.rows[:, columns], geom.frame[:, columns], frame_only)
    k = sum(kept)
    if n <= k:
        return null
    b, se = cluster_ols(xy, geom.rows, [c for c, keep in zip(columns, kept, strict=True) if keep],
                        groups, n_groups)
    t_crit = t_quantile_two_sided(0.95, n_groups - 1)  # t(0.975, G-1)
    position = np.cumsum(kept) - 1  # each kept column's index among the kept
    out: dict[str, Slope | None] = {}
    first = len(columns) - len(REGRESSORS)
    for i, name in enumerate(REGRESSORS):
        j = first + i
        if not kept[j]:
            out[name] = None
            continue
        coef, s = float(b[position[j]]), float(se[position[j]])
        if s < SE_TOL:  # a perfect fit: no spread to test against
            out[name] = Slope(coef, (coef, coef), None)
        else:
            out[name] = Slope(coef, (coef - t_crit * s, coef + t_crit * s),
                              t_two_sided_p(coef / s, n_groups - 1))
    return out


# -- recoverable points and the response-adjusted NPS ------------------------------------------

def recoverable(design: Design, adjusted: dict[str, Slope | None]) -> dict[str, Any]:
    """NPS points won if every row were brought to the target where it is worse (step 8)."""
    n = len(design.y)
    out: dict[str, Any] = {}
    for i, name in enumerate(REGRESSORS):
        target = TARGETS[name]
        slope = adjusted[name]
        if slope is None or n == 0:
            out[name] = {"target": target, "nps_points": None, "ci95": None}
            continue
        x = design.x[:, i]
        if name == "bitrate_mbps":
            gap = np.maximum(0.0, target - x)  # bitrate: below the target is worse
            sign = 1.0
        else:
            gap = np.maximum(0.0, x - target)
            sign = -1.0
        if name in FRAME_ONLY:
            gap = np.where(design.frame, gap, 0.0)  # no frame: that loss is no_start's
        mean_gap = float(gap.sum() / n)

        def points(coef: float, sign: float = sign, mean_gap: float = mean_gap) -> float:
            return sign * coef * mean_gap

        lo, hi = sorted((points(slope.ci95[0]), points(slope.ci95[1])))
        out[name] = {"target": target, "nps_points": points(slope.coef), "ci95": [lo, hi]}
    return out


def response_adjusted(strata: Sequence[StratumCounts]) -> dict[str, Any]:
    """The NPS post-stratified by the rebuffer bucket of each shown survey (step 9)."""
    answered = [s for s in strata if s.answered > 0]
    unrepresented = sum(s.shown for s in strata if s.answered == 0)
    shown = sum(s.shown for s in answered)
    if not answered:
        return {"nps": None, "ci95": None, "unrepresented_shown": unrepresented}
    est = var = 0.0
    for s in answered:
        w = s.shown / shown  # w_s
        p, d = s.promoters / s.answered, s.detractors / s.answered
        est += w * (p - d)  # sum w_s (p_s - d_s)
        var += w * w * (p + d - (p - d) ** 2) / s.answered  # sum w_s^2 (...) / n_s
    half = Z95_CONTRACT * 100.0 * math.sqrt(max(var, 0.0))
    nps = 100.0 * est
    return {"nps": nps, "ci95": [max(-100.0, nps - half), min(100.0, nps + half)],
            "unrepresented_shown": unrepresented}


# -- the whole answer ------------------------------------------------------------------------

def impact_from_arrays(
    *, box_id: Sequence[str], score: npt.ArrayLike, region: Sequence[str | None],
    model: Sequence[str | None], firmware: Sequence[str | None],
    content_type: Sequence[str | None], rebuffer_ratio: npt.ArrayLike,
    startup_ms: npt.ArrayLike, avg_bitrate_kbps: npt.ArrayLike, failed: npt.ArrayLike,
    strata: Sequence[StratumCounts] = (),
) -> dict[str, Any]:
    """The contract's ``/v1/impact`` answer from the rows' columns (one entry per row;
    ``startup_ms`` and ``avg_bitrate_kbps`` NaN where null) and the shown strata."""
    return impact_from_coded(
        box=Coded.of(box_id), segments=[Coded.of(v) for v in (region, model, firmware, content_type)],
        score=score, rebuffer_ratio=rebuffer_ratio, startup_ms=startup_ms,
        avg_bitrate_kbps=avg_bitrate_kbps, failed=failed, strata=strata)


def impact_from_coded(
    *, box: Coded, segments: Sequence[Coded], score: npt.ArrayLike, rebuffer_ratio: npt.ArrayLike,
    startup_ms: npt.ArrayLike, avg_bitrate_kbps: npt.ArrayLike, failed: npt.ArrayLike,
    strata: Sequence[StratumCounts] = (),
) -> dict[str, Any]:
    """:func:`impact_from_arrays` with the boxes and the four segment factors (region,
    model, firmware, content_type) already numbered."""
    design = build_design(score, rebuffer_ratio, startup_ms, avg_bitrate_kbps, failed)
    n = len(design.y)
    groups = box.codes
    n_groups = len(box.levels) if n else 0
    fixed = [factor_indicators(f) for f in segments] if n else []
    n_fixed = sum(f.shape[1] for f in fixed)
    # [X | y] of the adjusted model, column by column (Fortran order, as LAPACK wants it):
    # the intercept, the fixed effects, the five regressors, y.
    xy = np.empty((n, 1 + n_fixed + len(REGRESSORS) + 1), order="F")
    xy[:, 0] = 1.0
    at = 1
    for f in fixed:
        xy[:, at:at + f.shape[1]] = f
        at += f.shape[1]
    xy[:, at:at + len(REGRESSORS)] = design.x
    xy[:, -1] = design.y
    five = list(range(at, at + len(REGRESSORS)))
    frame_only = [name in FRAME_ONLY for name in REGRESSORS]
    null: dict[str, Slope | None] = dict.fromkeys(REGRESSORS)
    if n >= MIN_ANSWERS and n_groups >= MIN_BOXES:
        # One factorisation serves both models: the unadjusted one's columns are a subset.
        geom = geometry(xy, design.frame)
        unadjusted = fit_model(xy, geom, [0, *five], [False, *frame_only], groups, n_groups)
        adjusted = fit_model(xy, geom, list(range(at + len(REGRESSORS))),
                             [False] * at + frame_only, groups, n_groups)
    else:
        unadjusted = adjusted = null
    return {
        "answers": n,
        "boxes": n_groups,
        "nps": float(design.y.mean()) if n else None,
        "effects": {
            "unadjusted": {name: _figures(unadjusted[name]) for name in REGRESSORS},
            "adjusted": {name: _figures(adjusted[name]) for name in REGRESSORS},
        },
        "recoverable": recoverable(design, adjusted),
        "response_adjusted": response_adjusted(strata),
    }


def impact_from_data(data: ImpactData) -> dict[str, Any]:
    """:func:`impact_from_arrays` over what the store read."""
    rows = data.rows
    return impact_from_coded(
        box=rows.box, segments=rows.segments, score=rows.score,
        rebuffer_ratio=rows.rebuffer_ratio, startup_ms=rows.startup_ms,
        avg_bitrate_kbps=rows.avg_bitrate_kbps, failed=rows.failed, strata=data.strata)


async def compute_impact(storage: Storage, query: Filters, data: ImpactData | None = None) -> dict[str, Any]:
    """``GET /v1/impact`` for the report's filters ``query``: read the store (unless
    ``data``, its read for ``query``, is given), then compute in a worker thread (numpy
    releases the GIL; the event loop keeps serving)."""
    if data is None:
        data = await storage.impact_data(query)
    try:
        return await asyncio.to_thread(impact_from_data, data)
    except (np.linalg.LinAlgError, FloatingPointError, ValueError) as exc:
        raise ImpactError(f"impact estimate failed: {exc}") from exc


def impact_schema() -> dict[str, Any]:
    """The JSON Schema of the answer, for ``/openapi.json``."""
    num = {"type": ["number", "null"]}
    pair = {"type": ["array", "null"], "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
    slope = {
        "type": "object", "required": ["nps_points", "ci95", "p_value"],
        "properties": {
            "nps_points": {**num, "description": "NPS points per +1 unit of the regressor."},
            "ci95": {**pair, "description": "coef ± t(0.975, G−1)·se (box-clustered CR1)."},
            "p_value": {**num, "minimum": 0, "maximum": 1},
        },
    }
    model = {"type": "object", "required": list(REGRESSORS),
             "properties": dict.fromkeys(REGRESSORS, slope)}
    gain = {"type": "object", "required": ["target", "nps_points", "ci95"],
            "properties": {"target": {"type": "number"}, "nps_points": num, "ci95": pair}}
    count = {"type": "integer", "minimum": 0}
    return {
        "type": "object",
        "required": ["answers", "boxes", "nps", "effects", "recoverable", "response_adjusted"],
        "properties": {
            "answers": count, "boxes": count, "nps": num,
            "effects": {"type": "object", "required": ["unadjusted", "adjusted"],
                        "properties": {"unadjusted": model, "adjusted": model}},
            "recoverable": {"type": "object", "required": list(REGRESSORS),
                            "properties": dict.fromkeys(REGRESSORS, gain)},
            "response_adjusted": {
                "type": "object", "required": ["nps", "ci95", "unrepresented_shown"],
                "properties": {"nps": num, "ci95": pair, "unrepresented_shown": count},
            },
        },
    }
