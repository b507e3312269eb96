"""``GET /v1/at-risk`` (contract section 7): which households to call first.

``risk`` is the estimated chance that a box's viewer would answer *now* as a detractor
(0 to 6), given the stream quality the box lived through in the window. It is learned
from the answered surveys and evaluated on every box with a session in the window, so
a household that was never asked ranks by what it went through, not by what it said.

The model (docs/impact.md, "Who to call first: the at-risk list", says the same for
operators):

* **Training rows.** The latest :data:`TRAIN_MAX` answered surveys shown in
  ``[to − TRAIN_DAYS days, to)`` and answered before ``to`` whose session is stored, and
  whose session did not show a frame without a bitrate (section 6 leaves those out too).
  The whole fleet trains the model whatever the filters: they choose the boxes listed,
  not what a stall costs.
* **Regressors**, per training row, as section 6 defines them: ``rebuffer_pct`` = 100 ·
  rebuffer_ratio, ``startup_s``, ``bitrate_mbps``, ``failed`` (0/1), ``no_start`` (0/1, no
  frame shown); on rows without a frame, ``startup_s`` and ``bitrate_mbps`` take their
  mean over the rows with a frame, so that ``no_start`` carries that loss alone.
* **Fit.** Logistic regression of ``detractor`` on an intercept and the five, by
  iteratively reweighted least squares (Newton's method on the log-likelihood), on
  standardised columns for conditioning; the maximum-likelihood estimate, equal to
  statsmodels' ``Logit``. A column that adds no rank to those before it (no variation,
  e.g. no failed session among the answers) is dropped and its coefficient is 0. Where
  the answers separate (e.g. every failed session's viewer detracted) the likelihood has
  no maximum; the fit then adds a ridge penalty of :data:`RIDGE` / 2 · Σ β² on the
  standardised slopes (never the intercept): a normal prior of variance 1 on each,
  negligible against a few hundred answers.
* **Fallback.** With fewer than :data:`MIN_ANSWERS` training rows, or fewer than
  :data:`MIN_CLASS` detractors or non-detractors among them, no slope can be learned:
  every box gets the base detractor rate of the training rows (0 with none), and the
  list is in ``box_id`` order.
* **Evaluation.** A box's risk is the mean, over its sessions in the window, of the
  model's detractor probability for each session (its regressors built as in training):
  the chance that a survey after one of the box's recent sessions, picked at random,
  comes back a detractor. It is computed and ranked in the database.

Why the mean of per-session risks and not the model at the box's window figures: the
model was learned from single sessions, so it is applied to single sessions. Evaluated
at a box's averages (2 % stalled, say, made of one very bad evening among six clean
ones) it would be asked about a session that never happened, and a linear predictor
fitted where stalls, slow starts and low bitrates come together extrapolates badly
there (in the tests' planted fleet, such boxes outranked boxes whose every session had
gone bad). The mean of probabilities also answers the question the contract asks (how
likely is a detractor answer now) in the units it asks it. The figures the list shows
beside the risk are section 7's aggregates, for the operator to read.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from protocol import format_rfc3339, parse_rfc3339, to_micros, utcnow
from protocol.nps import is_detractor
from protocol.timefmt import from_micros
from protocol.units import DAY_US

from .errors import BadQueryError
from .model import Filters
from .numeric import np, npt
from .query import check_keys
from .storage import Storage
from .storage.at_risk import (
    RISK_DECIMALS,
    BoxSums,
    Ranking,
    TrainingRow,
    read_box_sums,
    read_last_answers,
    read_ranked_boxes,
    read_training_rows,
)

#: The regressors, in the order of the coefficients after the intercept.
FEATURES = ("rebuffer_pct", "startup_s", "bitrate_mbps", "failed", "no_start")
#: Training rows: answered surveys shown at most this many days before ``to`` ...
TRAIN_DAYS = 90
#: ... and at most this many of them, the newest: with six coefficients that is over a
#: thousand answers per coefficient, and the cap keeps the read (a join per answer)
#: bounded however much history is kept.
TRAIN_MAX = 10_000
#: Below this many training rows, or this many of either class, the base rate is used.
MIN_ANSWERS = 50
MIN_CLASS = 10
#: The ridge penalty on standardised slopes, used only where the answers separate.
RIDGE = 1.0
#: A slope beyond this many log-odds per standard deviation of its regressor (an odds
#: ratio of e^15 ≈ 3·10^6) only arises where the likelihood has no maximum.
SEPARATION_BOUND = 15.0
#: A column whose residual on those before it has a norm at most this fraction of its
#: own adds no rank (section 6's rule).
RANK_TOL = 1e-9

WINDOW_DAYS = (1, 90, 7)  # min, max, default
LIMIT = (1, 1000, 50)
_PARAMS = ("window_days", "limit", "region", "model", "firmware", "to")
_DIGITS = re.compile(r"[0-9]{1,9}")

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class LogitFit:
    """A fitted logistic regression on the columns given (intercept first)."""

    #: Coefficients on the original (unstandardised) columns; 0 for dropped ones.
    coef: FloatArray
    #: Indices of the columns dropped for adding no rank.
    dropped: tuple[int, ...]
    #: The ridge penalty used (0: the plain maximum-likelihood estimate).
    ridge: float
    iterations: int


@dataclass(frozen=True, slots=True)
class RiskModel:
    """What the at-risk list is ranked by."""

    #: "logit", "logit_ridge" or "base_rate".
    kind: str
    #: Intercept, then one coefficient per :data:`FEATURES` (all 0 for the base rate).
    coef: tuple[float, ...]
    #: The training means put in for a session without a startup time or bitrate.
    startup_fill: float
    bitrate_fill: float
    answers: int
    detractors: int

    @property
    def base_rate(self) -> float:
        """The detractor share of the training rows (0 with none)."""
        return self.detractors / self.answers if self.answers else 0.0

    def ranking(self) -> Ranking:
        """The coefficients and fills as the database ranks with them."""
        c = self.coef
        return (c[0], c[1], c[2], c[3], c[4], c[5], self.startup_fill, self.bitrate_fill)


# -- the fit --------------------------------------------------------------------------------

def independent_columns(x: FloatArray, tol: float = RANK_TOL) -> list[int]:
    """Indices of the columns kept, left to right: a column is dropped where its residual
    after projecting it on the kept columns before it has a norm at most ``tol`` of its
    own (or it is all zero)."""
    kept: list[int] = []
    for j in range(x.shape[1]):
        col = x[:, j]
        norm = float(np.linalg.norm(col))
        if norm == 0.0:
            continue
        if kept:
            basis = x[:, kept]
            beta, *_ = np.linalg.lstsq(basis, col, rcond=None)
            resid = col - basis @ beta
            if float(np.linalg.norm(resid)) <= tol * norm:
                continue
        kept.append(j)
    return kept


def _newton(z: FloatArray, y: FloatArray, ridge: float, max_iter: int = 100
            ) -> tuple[FloatArray, int, bool]:
    """Maximise the (penalised) log-likelihood ``Σ y·η − log(1 + e^η) − ridge/2 · Σ_{j≥1} β_j²``
    over standardised columns ``z`` (column 0 the intercept) by Newton's method, each
    step halved until the objective does not fall. Answers (β, iterations, converged)."""
    k = z.shape[1]
    penalty = np.full(k, ridge)
    penalty[0] = 0.0

    def objective(beta: FloatArray) -> float:
        eta = z @ beta
        # log(1 + e^η) without overflow.
        return float(y @ eta - np.logaddexp(0.0, eta).sum() - 0.5 * (penalty * beta * beta).sum())

    beta = np.zeros(k)
    current = objective(beta)
    for it in range(1, max_iter + 1):
        eta = z @ beta
        p = 0.5 * (1.0 + np.tanh(0.5 * eta))  # the logistic function, overflow-free
        w = p * (1.0 - p)
        grad = z.T @ (y - p) - penalty * beta
        hess = (z * w[:, None]).T @ z + np.diag(penalty)
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            return beta, it, False
        t = 1.0
        while True:
            trial = beta + t * step
            value = objective(trial)
            if value >= current - 1e-12 * (1.0 + abs(current)) or t < 1e-10:
                break
            t *= 0.5
        beta, current = trial, value
        if float(np.max(np.abs(t * step))) < 1e-10:
            return beta, it, True
    return beta, max_iter, False


def fit_logit(x: FloatArray, y: FloatArray) -> LogitFit:
    """Logistic regression of ``y`` (0/1) on ``x`` (column 0 the intercept, all ones).

    The maximum-likelihood estimate where it exists; where the answers separate (the
    estimate does not converge, or a standardised slope passes
    :data:`SEPARATION_BOUND`), the ridge-penalised one with :data:`RIDGE`.
    """
    kept = independent_columns(x)
    dropped = tuple(j for j in range(x.shape[1]) if j not in kept)
    xs = x[:, kept]
    # Standardise the slopes' columns: Newton's steps then see a well-conditioned
    # Hessian whatever the units (ms against Mbit/s). The estimate is the same on any
    # affine reparametrisation, so it is mapped back exactly below.
    mean = xs.mean(axis=0)
    sd = xs.std(axis=0)
    mean[0], sd[0] = 0.0, 1.0
    sd[sd == 0.0] = 1.0  # only the intercept can be constant once dependent columns are gone
    z = (xs - mean) / sd
    ridge = 0.0
    beta, iterations, converged = _newton(z, y, 0.0)
    if not converged or float(np.max(np.abs(beta[1:]), initial=0.0)) > SEPARATION_BOUND:
        ridge = RIDGE
        beta, iterations, _ = _newton(z, y, RIDGE)
    slopes = beta / sd
    slopes[0] = beta[0] - float((beta[1:] * mean[1:] / sd[1:]).sum())
    coef = np.zeros(x.shape[1])
    coef[kept] = slopes
    return LogitFit(coef, dropped, ridge, iterations)


def design(rows: Sequence[TrainingRow]) -> tuple[FloatArray, FloatArray, float, float]:
    """The training design (intercept, then :data:`FEATURES`), the detractor indicator,
    and the means of ``startup_s`` and ``bitrate_mbps`` over the rows with a frame that
    rows without one take (0 where no row showed a frame)."""
    n = len(rows)
    framed = [r for r in rows if r.startup_ms is not None]
    startup_fill = (math.fsum(r.startup_ms / 1000 for r in framed if r.startup_ms is not None)
                    / len(framed)) if framed else 0.0
    bitrate_fill = (math.fsum((r.avg_bitrate_kbps or 0.0) / 1000 for r in framed)
                    / len(framed)) if framed else 0.0
    x = np.empty((n, 1 + len(FEATURES)))
    y = np.empty(n)
    for i, r in enumerate(rows):
        no_frame = r.startup_ms is None
        x[i] = (
            1.0, 100.0 * r.rebuffer_ratio,
            startup_fill if r.startup_ms is None else r.startup_ms / 1000,
            bitrate_fill if no_frame or r.avg_bitrate_kbps is None else r.avg_bitrate_kbps / 1000,
            1.0 if r.failed else 0.0, 1.0 if no_frame else 0.0,
        )
        y[i] = 1.0 if is_detractor(r.score) else 0.0
    return x, y, startup_fill, bitrate_fill


def learn(rows: Sequence[TrainingRow]) -> RiskModel:
    """The risk model from the training rows (see the module's docstring)."""
    x, y, startup_fill, bitrate_fill = design(rows)
    n = len(rows)
    detractors = int(y.sum())
    zero = (0.0,) * (1 + len(FEATURES))
    if n < MIN_ANSWERS or min(detractors, n - detractors) < MIN_CLASS:
        return RiskModel("base_rate", zero, startup_fill, bitrate_fill, n, detractors)
    fit = fit_logit(x, y)
    if not np.all(np.isfinite(fit.coef)):  # pragma: no cover - a guard, not a path
        return RiskModel("base_rate", zero, startup_fill, bitrate_fill, n, detractors)
    return RiskModel("logit_ridge" if fit.ridge else "logit", tuple(float(c) for c in fit.coef),
                     startup_fill, bitrate_fill, n, detractors)


# -- the list -------------------------------------------------------------------------------

def box_figures(s: BoxSums) -> dict[str, Any]:
    """Section 7's figures of one box from its window sums."""
    return {
        "sessions": s.sessions,
        "rebuffer_pct": 100.0 * s.rebuffer_s / s.watch_s if s.watch_s > 0 else None,
        "startup_s": s.startup_ms_sum / s.framed / 1000.0 if s.framed else None,
        "bitrate_mbps": (s.bitrate_watch_sum / s.bitrate_watch_s / 1000.0
                         if s.bitrate_watch_s > 0 else None),
        "failed_share": s.failed / s.sessions,
    }


def _check_range(name: str, value: int, bounds: tuple[int, int, int]) -> None:
    lo, hi, _ = bounds
    if not lo <= value <= hi:
        raise BadQueryError(f"{name}: must be an integer from {lo} to {hi}, not {value}")


async def fit_risk_model(storage: Storage, to_us: int) -> RiskModel:
    """The model learned from the answered surveys before ``to_us``."""
    fetch, style = storage.sql_reader()
    rows = await read_training_rows(fetch, style, shown_from_us=to_us - TRAIN_DAYS * DAY_US,
                                    to_us=to_us, max_rows=TRAIN_MAX)
    # Off the event loop: tens of milliseconds of numpy that uploads need not wait for.
    return await asyncio.to_thread(learn, rows)


async def compute_at_risk(storage: Storage, *, to: datetime | None, window_days: int, limit: int,
                          region: str | None, model: str | None,
                          firmware: str | None) -> dict[str, Any]:
    """Section 7's answer: the boxes with a session in ``[to − window_days, to)``, riskiest
    first. ``to`` None is now on the collector's clock. A parameter out of range raises
    :class:`~collector.errors.BadQueryError` naming it."""
    _check_range("window_days", window_days, WINDOW_DAYS)
    _check_range("limit", limit, LIMIT)
    for name, value in (("region", region), ("model", model), ("firmware", firmware)):
        if value is not None and value == "":
            raise BadQueryError(f"{name}: must not be empty")
    if to is not None and to.tzinfo is None:
        raise BadQueryError("to: must carry a UTC offset")
    end = to if to is not None else utcnow()
    try:
        start = end - timedelta(days=window_days)
    except OverflowError:
        raise BadQueryError(f"to: too early for a window of {window_days} days") from None
    to_us = to_micros(end)
    fetch, style = storage.sql_reader()
    risk_model = await fit_risk_model(storage, to_us)
    window = Filters(from_us=to_micros(start), to_us=to_us, region=region, model=model,
                     firmware=firmware)
    large, _ = storage.sql_reader(large=True)
    ranked = await read_ranked_boxes(large, style, window, risk_model.ranking(), limit)
    ids = [box_id for box_id, _ in ranked]
    # Read after the ranking, not in its snapshot: a session stored in between shows in
    # the figures and not yet in the risk, an upload's worth of difference at most.
    sums = await read_box_sums(fetch, style, window, ids)
    last = await read_last_answers(fetch, style, ids, to_us)
    boxes = []
    for box_id, risk in ranked:
        if box_id not in sums:  # deleted (delete-box, retention) since it was ranked
            continue
        answer = last.get(box_id)
        boxes.append({
            "box_id": box_id,
            "risk": risk if risk_model.kind != "base_rate" else round(risk_model.base_rate, RISK_DECIMALS),
            **box_figures(sums[box_id]),
            "last_score": answer.score if answer else None,
            "last_answered_at": format_rfc3339(from_micros(answer.answered_us)) if answer else None,
        })
    return {"from": format_rfc3339(start), "to": format_rfc3339(end), "boxes": boxes}


def parse_at_risk_query(query: Mapping[str, str], keys: Iterable[str]) -> dict[str, Any]:
    """``compute_at_risk``'s keyword arguments from a query string; an unknown, repeated
    or out-of-range parameter raises :class:`BadQueryError` naming it."""
    check_keys(keys, _PARAMS)
    out: dict[str, Any] = {}
    for name, bounds in (("window_days", WINDOW_DAYS), ("limit", LIMIT)):
        text = query.get(name)
        if text is None:
            out[name] = bounds[2]
            continue
        if not _DIGITS.fullmatch(text):
            raise BadQueryError(
                f"{name}: must be an integer from {bounds[0]} to {bounds[1]}, not {text[:40]!r}")
        out[name] = int(text)
        _check_range(name, out[name], bounds)
    to_text = query.get("to")
    try:
        out["to"] = parse_rfc3339(to_text) if to_text is not None else None
    except ValueError as exc:
        raise BadQueryError(f"to: {exc}") from None
    for name in ("region", "model", "firmware"):
        value = query.get(name)
        if value is not None and value == "":
            raise BadQueryError(f"{name}: must not be empty")
        out[name] = value
    return out
