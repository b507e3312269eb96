"""The report's statistics against scipy."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

from collector.stats import (
    Z95,
    nps_ci95,
    regularized_beta,
    t_quantile_two_sided,
    t_test_p_value,
    t_two_sided_p,
    z_two_sided,
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


@pytest.mark.parametrize("r", [1.0, -1.0, 1.0000000000000002, -1.0000000000000002])
@pytest.mark.parametrize("n", [3, 10, 5000])
def test_p_value_of_a_perfect_correlation_is_zero(r: float, n: int) -> None:
    # t is infinite at |r| = 1 (scipy: 2 * t.sf(inf, df) == 0); rounding can put r a
    # last bit past 1 (a correlation of identical ranks), which is the same case.
    assert 2 * stats.t.sf(math.inf, n - 2) == 0.0
    assert t_test_p_value(r, n) == 0.0


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


@pytest.mark.parametrize("level", [0.5, 0.8, 0.9, 0.95, 0.99, 0.999])
def test_z_two_sided_is_scipys_normal_quantile(level: float) -> None:
    assert z_two_sided(level) == pytest.approx(stats.norm.ppf(0.5 + level / 2), rel=1e-12)


def test_z95_is_the_exact_quantile_not_the_rounded_one() -> None:
    assert pytest.approx(stats.norm.ppf(0.975), rel=1e-12) == Z95
    assert abs(Z95 - 1.96) > 1e-5


@pytest.mark.parametrize("level", [0.0, 1.0, -0.5, 1.5])
def test_z_two_sided_refuses_a_level_outside_0_1(level: float) -> None:
    with pytest.raises(ValueError, match="level: must be between 0 and 1"):
        z_two_sided(level)
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
