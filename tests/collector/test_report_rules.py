"""The NPS, interval and bucket rules, and the report built from facts, against the
contract's words in tests/reference.py: fast (no server, no database), so that mutation
testing (scripts/mutation) can run them for every mutant of stats.py, metrics.py and
report.py."""

from __future__ import annotations

import math
import random

import pytest
from scipy import stats as sps

from collector.metrics import BY_NAME, METRICS, Bucket, Metric, bucket_index
from collector.model import SessionGroup, SurveyFact
from collector.stats import adjusted_wald, nps, nps_ci95
from tests import reference as contract
from tests.report_from_rows import compute_report


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 50, 333])
def test_nps_and_interval_for_every_split_of_n(n: int) -> None:
    step = max(1, n // 12)
    for p in range(0, n + 1, step):
        for d in range(0, n - p + 1, step):
            scores = [10] * p + [0] * d + [7] * (n - p - d)
            assert nps(p, d, n) == pytest.approx(contract.nps(scores), abs=1e-12)
            assert nps_ci95(p, d, n) == pytest.approx(contract.nps_ci95(scores), abs=1e-9)
            assert adjusted_wald(p, d, n) == pytest.approx(contract.adjusted_wald(p, d, n), abs=1e-15)


def test_interval_is_clamped_and_null_without_answers() -> None:
    assert nps(0, 0, 0) is None and nps_ci95(0, 0, 0) is None
    # All promoters: the upper end would pass 100 without the clamp; all detractors: -100.
    hi = nps_ci95(5, 0, 5)
    assert hi is not None and hi[1] == 100.0 and hi[0] == pytest.approx(contract.nps_ci95([10] * 5)[0])  # type: ignore[index]
    lo = nps_ci95(0, 5, 5)
    assert lo is not None and lo[0] == -100.0
    # Rocks' worked figures, by hand: P=1, D=0, n=1 -> n'=4, p=0.4375, d=0.1875.
    est, var = 0.25, (0.4375 + 0.1875 - 0.25**2) / 4
    got = nps_ci95(1, 0, 1)
    assert got == pytest.approx([100 * (est - 1.96 * math.sqrt(var)), 100 * (est + 1.96 * math.sqrt(var))])


def test_buckets_are_the_contracts() -> None:
    assert [m.name for m in METRICS] == list(contract.BUCKET_EDGES)
    for m in METRICS:
        assert [(b.lo, b.hi) for b in m.buckets] == contract.BUCKET_EDGES[m.name], m


@pytest.mark.parametrize("metric", list(contract.BUCKET_EDGES))
def test_bucket_index_at_every_edge_and_between(metric: str) -> None:
    edges = contract.BUCKET_EDGES[metric]
    values: list[float] = [edges[0][0]]
    for _, hi in edges:
        if hi is not None:
            values += [hi, math.nextafter(hi, math.inf), math.nextafter(hi, -math.inf)]
    rng = random.Random(metric)
    values += [rng.uniform(0, 2 * (edges[-1][0] or 1)) for _ in range(500)]
    values += [edges[-1][0] * 1000, 1e15]
    for x in values:
        if x < 0:
            continue
        assert bucket_index(metric, x) == contract.bucket_of(metric, x), (metric, x)
    assert bucket_index(metric, None) is None
    assert bucket_index(metric, math.nan) is None


def _facts(seed: int, n: int) -> list[SurveyFact]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        r = rng.random()
        outcome = "answered" if r < 0.7 else "dismissed" if r < 0.85 else "timeout"
        score = rng.randint(0, 10) if outcome == "answered" else None
        has_session = rng.random() < 0.9
        # Edge values often: a wrong side of an edge shows.
        ratio = rng.choice([0.0, 0.005, 0.01, 0.02, 0.05, rng.random() * 0.1])
        bitrate = rng.choice([None, 0.0, 1000.0, 2500.0, 5000.0, 8000.0, rng.uniform(0, 12000)])
        startup = rng.choice([None, 0, 1000, 1001, 2000, 5000, 5001, rng.randint(0, 9000)])
        height = rng.choice([None, 0, 576, 577, 720, 721, 1080, 1081, rng.randint(0, 4320)])
        reason = rng.choice([None, *contract.REASONS]) if score is not None else None
        values = {"rebuffer_ratio": ratio, "avg_bitrate_kbps": bitrate, "startup_ms": startup,
                  "video_height": height}
        out.append(SurveyFact.of(outcome, score, reason, has_session,
                                 values if has_session else {}))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_report_from_facts_is_the_contracts(seed: int) -> None:
    facts = _facts(seed, 400)
    # Sessions: groups of counts with the contract's bucket of each metric.
    rng = random.Random(seed + 100)
    groups, values, flags = [], [], []
    for _ in range(60):
        ratio = rng.choice([0.0, 0.005, 0.0051, 0.03, 0.2])
        bitrate = rng.choice([None, 1000.0, 4000.0, 9000.0])
        startup = rng.choice([None, 0, 1000, 3000, 7000])
        height = rng.choice([None, 480, 576, 720, 1080, 2160])
        count = rng.randint(1, 5)
        value = {"rebuffer_ratio": ratio, "avg_bitrate_kbps": bitrate, "startup_ms": startup,
                 "video_height": height}
        failed, surveyed = rng.random() < 0.1, rng.random() < 0.3
        groups.append(SessionGroup.of({m: contract.bucket_of(m, x) for m, x in value.items()},
                                      failed, surveyed, count))
        values += [value] * count
        flags += [(startup, failed, surveyed)] * count
    rep = compute_report(groups, facts)
    answered = [f for f in facts if f.outcome == "answered"]
    shown = len(facts)
    scores = [f.score for f in answered if f.score is not None]
    want = {
        # Every field of the block, the start funnel too.
        "sessions": contract.session_figures(flags),
        "surveys": {"shown": shown, "answered": len(answered),
                    "dismissed": sum(1 for f in facts if f.outcome == "dismissed"),
                    "timeout": sum(1 for f in facts if f.outcome == "timeout"),
                    "response_rate": len(answered) / shown},
        **contract.answer_figures(scores, [f.reason for f in answered]),
        "by_qos": {m: contract.by_qos(m, [v.get(m) for v in values],
                                      [(f.value(m), f.score) for f in answered
                                       if f.has_session and f.score is not None])
                   for m in contract.BUCKET_EDGES},
    }
    contract.assert_close(rep, want)
    assert rep["sessions"].keys() == want["sessions"].keys()
    assert rep["sessions"]["exited_before_start"] > 0 and rep["sessions"]["start_failures"] > 0
    assert 0 < rep["passives"] < len(answered)


def test_empty_report() -> None:
    rep = compute_report([], [])
    assert rep["nps"] is None and rep["nps_ci95"] is None and rep["surveys"]["response_rate"] is None
    assert rep["score_histogram"] == [0] * 11 and rep["reasons"] == {}
    for m in contract.BUCKET_EDGES:
        assert rep["by_qos"][m] == [{"lo": lo, "hi": hi, "sessions": 0, "n": 0, "nps": None,
                                     "nps_ci95": None, "mean_score": None}
                                    for lo, hi in contract.BUCKET_EDGES[m]]
        assert rep["correlation"][m] == {"spearman": None, "p_value": None, "n": 0}


def test_bucket_table_builder() -> None:
    # The buckets are built from the edges; the builder is checked on its own too
    # (mutation testing only reaches code that runs after import).
    for m, edges in contract.BUCKET_EDGES.items():
        flat = (edges[0][0], *(hi for _, hi in edges))
        table = Metric(m, "u", "T", m, flat, (1.0, 2.0), "xx")
        assert table.buckets == tuple(Bucket(lo, hi) for lo, hi in edges), m
        assert table.count_columns == tuple(f"xx{i}" for i in range(len(edges))), m
        assert BY_NAME[m].buckets == table.buckets, m


def _fact(score: int, ratio: float, bitrate: float, startup: int, height: int) -> SurveyFact:
    return SurveyFact.of("answered", score, None, True, {
        "rebuffer_ratio": ratio, "avg_bitrate_kbps": bitrate, "startup_ms": startup,
        "video_height": height})


def test_small_samples_are_exact_and_constant_sides_null() -> None:
    # Few values, each in a fine bin of its own: the binned ranks are the exact ranks, so
    # the report's rho and p-value are scipy's, to rounding (any offset in the ranks shows).
    startups = [90, 700, 1500, 2600, 4000, 6000, 9000, 15000, 30000, 60000]
    scores = [10, 9, 9, 8, 10, 6, 7, 3, 5, 0]
    rates = [0.0, 0.001, 0.003, 0.007, 0.012, 0.03, 0.06, 0.1, 0.2, 0.4]
    heights = [144, 240, 360, 480, 576, 720, 1080, 1440, 2160, 4320]
    rates_n = [800.0, 1500.0, 2400.0, 3100.0, 4500.0, 5200.0, 7000.0, 8600.0, 11000.0, 20000.0]
    for n in (3, 4, 10):
        facts = [_fact(scores[i], rates[i], rates_n[i], startups[i], heights[i]) for i in range(n)]
        rep = compute_report([], facts)
        for m, xs in (("startup_ms", startups), ("rebuffer_ratio", rates),
                      ("avg_bitrate_kbps", rates_n), ("video_height", heights)):
            exact = sps.spearmanr(scores[:n], xs[:n])
            got = rep["correlation"][m]
            assert got["n"] == n
            assert got["spearman"] == pytest.approx(exact.statistic, abs=1e-9), (m, n)
            assert got["p_value"] == pytest.approx(exact.pvalue, rel=1e-6, abs=1e-12), (m, n)
    # One side constant: null figures, the count kept.
    same = [_fact(7, rates[i], rates_n[i], startups[i], heights[i]) for i in range(10)]
    for m in contract.BUCKET_EDGES:
        assert compute_report([], same)["correlation"][m] == {"spearman": None, "p_value": None, "n": 10}
    flat = [_fact(scores[i], 0.0, 5000.0, 800, 1080) for i in range(10)]
    for m in contract.BUCKET_EDGES:
        assert compute_report([], flat)["correlation"][m] == {"spearman": None, "p_value": None, "n": 10}


def test_ingest_columns_are_the_contract_bucket_and_the_fine_bin() -> None:
    # Ingest finds a value's bucket through its fine bin: checked against the contract's
    # words (tests/reference.py) at every edge, just past it, and at random.
    from collector.fine_bins import FINE_EDGES, fine_bin_pos, metric_columns

    rng = random.Random(5)
    for m in METRICS:
        edges = [hi for _, hi in contract.BUCKET_EDGES[m.name] if hi is not None]
        values: list[float | None] = [None, math.nan, 0, 0.0, 1e15]
        # The bucket edges and every fine edge (where a position is 0 or 1000), ±1 ulp.
        values += [y for x in (*edges, *FINE_EDGES[m.name])
                   for y in (x, math.nextafter(x, math.inf), math.nextafter(x, -math.inf))]
        values += [rng.uniform(0, 2 * max(edges)) for _ in range(3000)]
        for x in values:
            if x is not None and x < 0:
                continue
            got = metric_columns({m.name: x})
            want_bucket = None if x is None or x != x else contract.bucket_of(m.name, x)
            assert got[m.bucket_column] == want_bucket, (m.name, x)
            assert (got[m.fine_column], got[m.pos_column]) == fine_bin_pos(m.name, x), (m.name, x)
