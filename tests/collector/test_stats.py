"""The report's statistics against scipy."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

from collector.stats import (
    Correlation,
    average_ranks,
    nps_ci95,
    pearson_correlation,
    regularized_beta,
    spearman,
    t_quantile_two_sided,
    t_test_p_value,
    t_two_sided_p,
)


@settings(max_examples=300)
@given(st.floats(0.0001, 0.9999), st.floats(0.5, 5000), st.sampled_from([0.5, 1.0, 2.5]))
def test_regularized_beta_matches_scipy(x: float, a: float, b: float) -> None:
    assert regularized_beta(x, a, b) == pytest.approx(special.betainc(a, b, x), rel=1e-7, abs=1e-300)


@pytest.mark.parametrize(("r", "n"), [(0.0, 3), (0.3, 10), (-0.31, 760), (0.05, 100_000), (0.999, 50), (-0.9, 4)])
def test_p_value_matches_scipy(r: float, n: int) -> None:
    df = n - 2
    t = r * math.sqrt(df / (1 - r * r))
    assert t_test_p_value(r, n) == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-6)


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 10), st.floats(0, 1, allow_nan=False) | st.sampled_from([0.0, 0.5])),
                min_size=3, max_size=80))
def test_spearman_matches_scipy_with_ties(pairs: list[tuple[int, float]]) -> None:
    xs = [float(a) for a, _ in pairs]
    ys = [b for _, b in pairs]
    got = spearman(xs, ys)
    if len(set(xs)) == 1 or len(set(ys)) == 1:
        assert got.spearman is None and got.p_value is None
        return
    rho, p = stats.spearmanr(xs, ys)
    assert got.spearman == pytest.approx(rho, abs=1e-9)
    assert got.p_value == pytest.approx(p, rel=1e-6, abs=1e-12)
    assert got.n == len(pairs)


def test_average_ranks() -> None:
    assert average_ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]


def test_adjusted_wald_interval() -> None:
    # The contract's example: 380 promoters, 180 detractors of 800.
    lo, hi = nps_ci95(380, 180, 800)  # type: ignore[misc]
    n = 803
    p, d = 380.75 / n, 180.75 / n
    half = 1.96 * math.sqrt((p + d - (p - d) ** 2) / n)
    assert (lo, hi) == pytest.approx((100 * (p - d - half), 100 * (p - d + half)))
    assert nps_ci95(0, 0, 0) is None
    assert nps_ci95(5, 0, 5)[1] == 100.0  # type: ignore[index]
    assert nps_ci95(0, 5, 5)[0] == -100.0  # type: ignore[index]


def test_spearman_and_pearson_edges() -> None:
    # Fewer than 3 pairs, or a constant side: null figures, but the count of pairs kept.
    assert spearman([1.0, 2.0], [3.0, 4.0]) == Correlation(None, None, 2)
    assert spearman([], []) == Correlation(None, None, 0)
    assert pearson_correlation([1.0, 2.0], [1.0, 2.0]) == Correlation(None, None, 2)
    assert pearson_correlation([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) == Correlation(None, None, 3)
    assert pearson_correlation([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]) == Correlation(None, None, 3)
    with pytest.raises(ValueError, match=r"^xs and ys differ in length$"):
        spearman([1.0, 2.0, 3.0], [1.0, 2.0])
    # Ill-matched inputs are an error, not a silently shortened sum.
    for w, x, y in (([1.0] * 3, [1.0, 2.0], [1.0, 2.0, 3.0]),
                    ([1.0] * 3, [1.0, 2.0, 3.0], [1.0, 2.0])):
        with pytest.raises(ValueError):
            pearson_correlation(x, y, w)
    # Small spreads are spreads: variances far below 1 still give r (here 1 and -1).
    xs = [0.0, 0.01, 0.03, 0.02]
    assert pearson_correlation(xs, [1.0, 2.0, 4.0, 3.0]).spearman == pytest.approx(1.0)
    assert pearson_correlation([1.0, 2.0, 4.0, 3.0], [-x for x in xs]).spearman == pytest.approx(-1.0)
    r = pearson_correlation([1.0, 2.0, 4.0, 3.0, 7.0], [0.1, 0.11, 0.13, 0.1, 0.12])
    exact = stats.pearsonr([1.0, 2.0, 4.0, 3.0, 7.0], [0.1, 0.11, 0.13, 0.1, 0.12])
    assert r.spearman == pytest.approx(exact.statistic) and r.p_value == pytest.approx(exact.pvalue)


def test_perfect_correlation_stays_within_one() -> None:
    # Rounding can put sxy / sqrt(sxx * syy) a hair past ±1 (seed 0 finds such cases); r is
    # clamped to [-1, 1].
    rng = random.Random(0)
    for i in range(300):
        xs = [rng.random() for _ in range(rng.randint(3, 6))]
        ys = [(1.1 if i % 2 else -3.0) * x for x in xs]
        got = pearson_correlation(xs, ys)
        assert got.spearman is not None and -1.0 <= got.spearman <= 1.0
        assert abs(got.spearman) == pytest.approx(1.0)
        assert got.p_value is not None and got.p_value < 1e-6


def test_regularized_beta_at_the_ends() -> None:
    assert regularized_beta(0.0, 2.0, 0.5) == 0.0
    assert regularized_beta(-0.1, 2.0, 0.5) == 0.0
    assert regularized_beta(1.0, 2.0, 0.5) == 1.0
    assert regularized_beta(1e-300, 2.0, 0.5) == pytest.approx(special.betainc(2.0, 0.5, 1e-300), abs=1e-300)
@settings(max_examples=200)
@given(st.floats(0, 60), st.integers(1, 300_000))
def test_t_two_sided_p_matches_scipy(t: float, df: int) -> None:
    # /v1/impact's p-values: 2 * t.sf(|t|, G - 1), G the boxes.
    assert t_two_sided_p(t, df) == pytest.approx(2 * stats.t.sf(t, df), rel=1e-7, abs=1e-300)
    assert t_two_sided_p(-t, df) == t_two_sided_p(t, df)


@pytest.mark.parametrize("df", [1, 2, 3, 7, 19, 20, 74, 1000, 200_000])
def test_t_quantile_matches_scipy(df: int) -> None:
    # /v1/impact's intervals: t(0.975, G - 1). The incomplete beta loses digits at very
    # large df (5e-11 at 200,000), far inside the contract's 1e-6. Computed, not read from
    # the cache an earlier test (or mutation testing's first run) filled.
    t_quantile_two_sided.cache_clear()
    assert t_quantile_two_sided(0.95, df) == pytest.approx(stats.t.ppf(0.975, df), rel=1e-9)
    assert t_quantile_two_sided(0.5, df) == pytest.approx(stats.t.ppf(0.75, df), rel=1e-9)
    with pytest.raises(ValueError, match="level"):
        t_quantile_two_sided(1.0, df)


def test_t_quantile_edges_and_last_bit() -> None:
    t_quantile_two_sided.cache_clear()
    for level, df in ((0.0, 5), (1.0, 5), (-0.5, 5), (0.95, 0), (0.95, -1)):
        with pytest.raises(ValueError) as info:
            t_quantile_two_sided(level, df)
        assert str(info.value) == f"level must be in (0, 1) and df > 0, not {level}, {df}"
    # Levels below and above the first bracket [0, 1], and far out in the tail (t of 636).
    for level, df in ((0.2, 3), (0.95, 19), (0.999999, 1), (1e-9, 40)):
        q = t_quantile_two_sided(level, df)
        assert q == pytest.approx(stats.t.ppf(0.5 + level / 2, df), rel=1e-8)
        # The bisection's claim: the smallest double whose tail is at most 1 - level.
        assert t_two_sided_p(q, df) <= 1 - level < t_two_sided_p(math.nextafter(q, 0.0), df)
    assert t_quantile_two_sided(0.95, 19) is t_quantile_two_sided(0.95, 19)


def test_t_two_sided_p_at_the_ends() -> None:
    for df in (1, 19, 1e6):
        assert t_two_sided_p(math.inf, df) == 0.0
        assert t_two_sided_p(-math.inf, df) == 0.0
        assert t_two_sided_p(0.0, df) == 1.0
        # Either side of the switch to the complement at |t| = 0.5: scipy's figures.
        for t in (0.4999999, 0.5, 0.5000001):
            assert t_two_sided_p(t, df) == pytest.approx(2 * stats.t.sf(t, df), rel=1e-9)
