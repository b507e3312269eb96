"""The statistics the collector needs: the NPS and its adjusted-Wald interval, normal and
t quantiles, and the t-test p-value of a correlation (the report's Spearman rho itself is
computed from fine bins in ``report.py``).

Pure Python on purpose: the formulas are short, exactly specified by the contract, and
checked against scipy in the tests; scipy itself would weigh more than the rest of
the collector.
"""

from __future__ import annotations

import math
from functools import lru_cache
from statistics import NormalDist

#: The contract writes 1.96 (not norm.ppf(0.975) = 1.95996...), and so do we.
Z95_CONTRACT = 1.96


def z_two_sided(level: float) -> float:
    """The standard normal quantile of a two-sided ``level`` interval (1.95996... for
    0.95); ``ValueError`` unless 0 < level < 1."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: must be between 0 and 1 (exclusive), got {level}")
    return NormalDist().inv_cdf(0.5 + level / 2.0)


#: The exact 95 % two-sided normal quantile, where the contract does not fix 1.96.
Z95 = z_two_sided(0.95)


def nps(promoters: int, detractors: int, answered: int) -> float | None:
    """``100 * (P - D) / n``; None with no answers."""
    if answered == 0:
        return None
    return 100.0 * (promoters - detractors) / answered


def nps_ci95(promoters: int, detractors: int, answered: int) -> list[float] | None:
    """The adjusted-Wald 95 % interval of the NPS (Rocks 2016), in points, clamped to ±100."""
    if answered == 0:
        return None
    n = answered + 3
    p = (promoters + 0.75) / n
    d = (detractors + 0.75) / n
    diff = p - d
    half = Z95_CONTRACT * math.sqrt(max(p + d - diff * diff, 0.0) / n)
    return [max(-100.0, 100.0 * (diff - half)), min(100.0, 100.0 * (diff + half))]


def adjusted_wald(promoters: int, detractors: int, answered: int) -> tuple[float, float]:
    """The adjusted-Wald estimate of the NPS (as a fraction) and its variance."""
    n = answered + 3
    p = (promoters + 0.75) / n
    d = (detractors + 0.75) / n
    return p - d, (p + d - (p - d) ** 2) / n


def t_test_p_value(r: float, n: int) -> float:
    """Two-sided p-value of a correlation ``r`` over ``n`` pairs (t with n - 2 df)."""
    df = n - 2
    if abs(r) >= 1.0:
        return 0.0
    t2 = r * r * df / (1.0 - r * r)
    # P(|T| > t) = I_{df/(df+t^2)}(df/2, 1/2)
    return regularized_beta(df / (df + t2), df / 2.0, 0.5)


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom (scipy's
    ``2 * t.sf(|t|, df)``): ``I_{df/(df+t^2)}(df/2, 1/2)``."""
    if math.isinf(t):
        return 0.0
    t2 = t * t
    if t2 < 0.25:
        # Small |t| (p > 0.6 for any df): df/(df+t^2) rounds towards 1 and loses the tail,
        # so use the complement, I_x(a, b) = 1 - I_{1-x}(b, a), 1 - x = t^2/(df+t^2)
        # being exact to the last bit (and what is subtracted is at most 0.4).
        return 1.0 - regularized_beta(t2 / (df + t2), 0.5, df / 2.0)
    return regularized_beta(df / (df + t2), df / 2.0, 0.5)


def _t_quantile_two_sided(level: float, df: float) -> float:
    """The t with P(|T| <= t) = ``level`` (so ``t(0.975, df)`` for ``level`` 0.95): the
    inverse of :func:`t_two_sided_p`, by bisection to the last bit (it is monotone)."""
    if not 0.0 < level < 1.0 or df <= 0:
        raise ValueError(f"level must be in (0, 1) and df > 0, not {level}, {df}")
    target = 1.0 - level
    lo, hi = 0.0, 1.0
    while t_two_sided_p(hi, df) > target:
        lo, hi = hi, hi * 2.0
    while True:
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):  # no double between them: converged
            return hi
        if t_two_sided_p(mid, df) > target:
            lo = mid
        else:
            hi = mid


#: The t with P(|T| <= t) = ``level``, cached: every interval of a model shares G - 1. A
#: plain function wrapped (not a decorated one), so that mutation testing reaches it.
t_quantile_two_sided = lru_cache(maxsize=256)(_t_quantile_two_sided)


def regularized_beta(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (continued fraction, Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(ln_front) * _beta_cf(x, a, b) / a
    return 1.0 - math.exp(ln_front) * _beta_cf(1.0 - x, b, a) / b


def _beta_cf(x: float, a: float, b: float) -> float:
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h
