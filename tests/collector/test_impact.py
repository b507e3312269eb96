"""GET /v1/impact (contract section 6) against references written here from the contract's
words: the rows, y and the regressors built again from the raw records, the rank rule by
least-squares projection (not the Gram-Schmidt of the code), the models fitted by
statsmodels' ``OLS(y, X).fit(cov_type="cluster", cov_kwds={"groups": box}, use_t=True)`` on
the kept columns, and the recoverable points and response-adjusted NPS by their formulas.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
import statsmodels.api as sm

from collector import impact
from collector.dashboard.openapi import openapi_document
from collector.impact import impact_from_arrays
from collector.settings import Settings
from collector.storage.impact_sql import Coded, StratumCounts
from tests.collector.conftest import ADMIN, Api, batch, iso, serve, session_record, survey_record

NAMES = ("rebuffer_pct", "startup_s", "bitrate_mbps", "failed", "no_start")
TARGETS = {"rebuffer_pct": 0.0, "startup_s": 2.0, "bitrate_mbps": 5.0, "failed": 0.0, "no_start": 0.0}
FACTORS = ("region", "model", "firmware", "content_type")


def close(a: float | None, b: float | None, what: str) -> None:
    """The contract's tolerance: 1e-6 * max(1, |figure|); null only against null."""
    assert (a is None) == (b is None), f"{what}: {a} against {b}"
    if a is not None and b is not None:
        assert abs(a - b) <= 1e-6 * max(1.0, abs(b)), f"{what}: {a} against {b}"


# -- the reference ---------------------------------------------------------------------------

def make_rows(seed: int, n: int, boxes: int, *, no_frame: float = 0.08, **fixed: Any) -> list[dict[str, Any]]:
    """Raw rows as the contract defines them (one per answered survey with a known session),
    with an effect of each metric planted. ``fixed`` overrides a field for every row."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        frame = rng.random() >= no_frame
        watch = rng.uniform(0, 3600) if rng.random() > 0.02 else 0.0
        ratio = rng.choice([0.0, 0.0, 0.0, rng.uniform(0, 0.01), rng.uniform(0, 0.1)])
        row = {
            "box": f"box-{rng.randrange(boxes)}",
            "region": rng.choice(["NL-NH", "NL-ZH", "BE-A", None]),
            "model": rng.choice(["X-200", "X-300", None]),
            "firmware": rng.choice(["4.2.1", "4.3.0"]),
            "content_type": rng.choice(["live", "vod", "catchup", None]),
            "watch_s": watch, "rebuffer_s": watch * ratio,
            "startup_ms": rng.randint(150, 9000) if frame else None,
            "bitrate": rng.uniform(400, 12000) if frame else None,
            "failed": rng.random() < (0.08 if frame else 0.6),
        }
        q = 8.0 - 40 * ratio - (row["startup_ms"] or 9000) / 4000 + (row["bitrate"] or 0) / 6000
        q -= 2.5 * row["failed"] + (0.7 if row["region"] == "BE-A" else 0.0)
        row["score"] = max(0, min(10, round(q + rng.gauss(0, 2))))
        row.update(fixed)
        rows.append(row)
    return rows


def arrays(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The pure function's arguments from raw rows."""
    return {
        "box_id": [r["box"] for r in rows], "score": [r["score"] for r in rows],
        **{f: [r[f] for r in rows] for f in FACTORS},
        "rebuffer_ratio": [r["rebuffer_s"] / r["watch_s"] if r["watch_s"] else 0.0 for r in rows],
        "startup_ms": [math.nan if r["startup_ms"] is None else r["startup_ms"] for r in rows],
        "avg_bitrate_kbps": [math.nan if r["bitrate"] is None else r["bitrate"] for r in rows],
        "failed": [r["failed"] for r in rows],
    }


def reference_columns(rows: list[dict[str, Any]], adjusted: bool) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Column names, X (every candidate column), y, and the frame mask, from the words."""
    y = np.array([100.0 if r["score"] >= 9 else -100.0 if r["score"] <= 6 else 0.0 for r in rows])
    frame = np.array([r["startup_ms"] is not None for r in rows])
    with_frame = [r for r in rows if r["startup_ms"] is not None]
    mean_su = sum(r["startup_ms"] / 1000 for r in with_frame) / len(with_frame) if with_frame else 0.0
    mean_br = sum(r["bitrate"] / 1000 for r in with_frame) / len(with_frame) if with_frame else 0.0
    names = ["const"]
    cols = [[1.0] * len(rows)]
    if adjusted:
        for f in FACTORS:
            values = {r[f] for r in rows}
            levels = ([None] if None in values else []) + sorted(v for v in values if v is not None)
            for level in levels[1:]:
                names.append(f"{f}={level}")
                cols.append([1.0 if r[f] == level else 0.0 for r in rows])
    names += list(NAMES)
    cols.append([100 * (r["rebuffer_s"] / r["watch_s"] if r["watch_s"] else 0.0) for r in rows])
    cols.append([r["startup_ms"] / 1000 if r["startup_ms"] is not None else mean_su for r in rows])
    cols.append([r["bitrate"] / 1000 if r["startup_ms"] is not None else mean_br for r in rows])
    cols.append([1.0 if r["failed"] else 0.0 for r in rows])
    cols.append([0.0 if r["startup_ms"] is not None else 1.0 for r in rows])
    return names, np.array(cols).T, y, frame


def reference_kept(names: list[str], x: np.ndarray, frame: np.ndarray) -> list[bool]:
    """The rank rule, by least squares: residual norm <= 1e-9 of the column's own."""
    kept: list[bool] = []
    for j, name in enumerate(names):
        rows = frame if name in ("startup_s", "bitrate_mbps") else np.ones(len(x), bool)
        c = x[rows, j]
        a = x[rows][:, [i for i in range(j) if kept[i]]]
        r = c - a @ np.linalg.lstsq(a, c, rcond=None)[0] if a.shape[1] else c
        kept.append(bool(np.linalg.norm(r) > 1e-9 * np.linalg.norm(c)))
    return kept


def reference_model(rows: list[dict[str, Any]], adjusted: bool) -> dict[str, Any]:
    """name -> (coef, [lo, hi], p) or None, by statsmodels on the kept columns."""
    boxes = sorted({r["box"] for r in rows})
    if len(rows) < 50 or len(boxes) < 20:
        return dict.fromkeys(NAMES)
    names, x, y, frame = reference_columns(rows, adjusted)
    kept = reference_kept(names, x, frame)
    if len(rows) <= sum(kept):
        return dict.fromkeys(NAMES)
    groups = np.array([boxes.index(r["box"]) for r in rows])
    fit = sm.OLS(y, x[:, kept]).fit(cov_type="cluster", cov_kwds={"groups": groups}, use_t=True)
    ci = fit.conf_int(0.05)
    kept_names = [n for n, k in zip(names, kept, strict=True) if k]
    out: dict[str, Any] = {}
    for name in NAMES:
        if name not in kept_names:
            out[name] = None
            continue
        i = kept_names.index(name)
        if fit.bse[i] < 1e-9:
            out[name] = (fit.params[i], [fit.params[i], fit.params[i]], None)
        else:
            out[name] = (fit.params[i], list(ci[i]), fit.pvalues[i])
    return out


def reference_recoverable(rows: list[dict[str, Any]], adjusted: dict[str, Any]) -> dict[str, Any]:
    """-coef * mean(max(0, x - target)) (bitrate: coef * mean(max(0, target - x))), rows
    without a frame adding 0 for startup and bitrate; the interval through the same."""
    n = len(rows)
    out = {}
    for name in NAMES:
        fit = adjusted[name]
        if fit is None:
            out[name] = None
            continue
        gaps = []
        for r in rows:
            frame = r["startup_ms"] is not None
            x = {"rebuffer_pct": 100 * (r["rebuffer_s"] / r["watch_s"] if r["watch_s"] else 0.0),
                 "startup_s": r["startup_ms"] / 1000 if frame else None,
                 "bitrate_mbps": r["bitrate"] / 1000 if frame else None,
                 "failed": 1.0 if r["failed"] else 0.0, "no_start": 0.0 if frame else 1.0}[name]
            if x is None:
                gaps.append(0.0)
            elif name == "bitrate_mbps":
                gaps.append(max(0.0, TARGETS[name] - x))
            else:
                gaps.append(max(0.0, x - TARGETS[name]))
        mean = sum(gaps) / n
        sign = 1.0 if name == "bitrate_mbps" else -1.0
        ends = sorted([sign * fit[1][0] * mean, sign * fit[1][1] * mean])
        out[name] = (sign * fit[0] * mean, ends)
    return out


def check(got: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Every figure of ``got`` but response_adjusted against the reference; answers the
    reference models."""
    assert got["answers"] == len(rows)
    assert got["boxes"] == len({r["box"] for r in rows})
    ys = [100 if r["score"] >= 9 else -100 if r["score"] <= 6 else 0 for r in rows]
    close(got["nps"], sum(ys) / len(ys) if ys else None, "nps")
    ref = {m: reference_model(rows, m == "adjusted") for m in ("unadjusted", "adjusted")}
    for model, fits in ref.items():
        for name in NAMES:
            fig = got["effects"][model][name]
            what = f"{model}.{name}"
            if fits[name] is None:
                assert fig == {"nps_points": None, "ci95": None, "p_value": None}, what
                continue
            coef, ci, p = fits[name]
            close(fig["nps_points"], coef, what)
            close(fig["ci95"][0], ci[0], what + ".lo")
            close(fig["ci95"][1], ci[1], what + ".hi")
            close(fig["p_value"], p, what + ".p")
    rec = reference_recoverable(rows, ref["adjusted"]) if rows else dict.fromkeys(NAMES)
    for name in NAMES:
        fig = got["recoverable"][name]
        assert fig["target"] == TARGETS[name]
        if rec[name] is None:
            assert fig["nps_points"] is None and fig["ci95"] is None, name
        else:
            close(fig["nps_points"], rec[name][0], f"recoverable.{name}")
            close(fig["ci95"][0], rec[name][1][0], f"recoverable.{name}.lo")
            close(fig["ci95"][1], rec[name][1][1], f"recoverable.{name}.hi")
            assert fig["ci95"][0] <= fig["ci95"][1]
    return ref


# -- the estimator over arrays --------------------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2, 3])
def test_equal_to_statsmodels(seed: int) -> None:
    rows = make_rows(seed, 400 + 150 * seed, 30 + 20 * seed)
    ref = check(impact_from_arrays(**arrays(rows)), rows)
    # Every slope is estimated here (nothing planted to drop), and the two models differ.
    assert all(ref[m][n] is not None for m in ref for n in NAMES)
    assert ref["adjusted"]["rebuffer_pct"][0] != ref["unadjusted"]["rebuffer_pct"][0]


@pytest.mark.parametrize("block", [64, 100])
def test_equal_to_statsmodels_when_r_is_made_by_blocks(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """R made from blocks of rows (as for large stores: collector.impact.r_factor), the
    last block padded, some columns dropped: the same figures."""
    monkeypatch.setattr(impact, "QR_BLOCK", block)
    rows = make_rows(5, 1_111, 80)
    ref = check(impact_from_arrays(**arrays(rows)), rows)
    assert all(ref[m][n] is not None for m in ref for n in NAMES)
    rows = make_rows(6, 901, 60, firmware="4.2.1", failed=False)
    ref = check(impact_from_arrays(**arrays(rows)), rows)
    assert ref["adjusted"]["failed"] is None and ref["adjusted"]["rebuffer_pct"] is not None


def test_no_variation_drops_the_regressor() -> None:
    rows = make_rows(4, 300, 40, failed=False)
    got = impact_from_arrays(**arrays(rows))
    ref = check(got, rows)
    for model in ("unadjusted", "adjusted"):
        assert got["effects"][model]["failed"]["nps_points"] is None
        assert ref[model]["rebuffer_pct"] is not None
    assert got["recoverable"]["failed"] == {"target": 0.0, "nps_points": None, "ci95": None}


def test_regressor_fixed_by_the_segments_is_dropped_when_adjusted_only() -> None:
    rows = make_rows(5, 400, 50)
    for r in rows:
        r["failed"] = r["content_type"] == "vod"
    got = impact_from_arrays(**arrays(rows))
    check(got, rows)
    assert got["effects"]["unadjusted"]["failed"]["nps_points"] is not None
    assert got["effects"]["adjusted"]["failed"]["nps_points"] is None


def test_startup_and_bitrate_are_judged_on_the_rows_with_a_frame() -> None:
    # Where there is a frame, bitrate is an affine function of rebuffering and startup is
    # fixed by the region; the imputed means of the rows without a frame break both
    # relations over all rows, so judging on all rows would keep them.
    rows = make_rows(6, 300, 40, no_frame=0.2)
    for r in rows:
        if r["startup_ms"] is not None:
            ratio = r["rebuffer_s"] / r["watch_s"] if r["watch_s"] else 0.0
            r["bitrate"] = 3000 + 50_000 * ratio
            r["startup_ms"] = {"NL-NH": 700, "NL-ZH": 1500, "BE-A": 2500, None: 4000}[r["region"]]
    names, x, _, _ = reference_columns(rows, True)
    everywhere = reference_kept(names, x, np.ones(len(rows), bool))
    assert everywhere[names.index("startup_s")] and everywhere[names.index("bitrate_mbps")]
    got = impact_from_arrays(**arrays(rows))
    check(got, rows)
    assert got["effects"]["unadjusted"]["startup_s"]["nps_points"] is not None
    assert got["effects"]["adjusted"]["startup_s"]["nps_points"] is None
    for model in ("unadjusted", "adjusted"):
        assert got["effects"][model]["bitrate_mbps"]["nps_points"] is None
    # Startup the same on every row with a frame: dropped in both models.
    rows = make_rows(7, 300, 40)
    for r in rows:
        if r["startup_ms"] is not None:
            r["startup_ms"] = 1200
    got = impact_from_arrays(**arrays(rows))
    check(got, rows)
    assert got["effects"]["unadjusted"]["startup_s"]["nps_points"] is None
    assert got["effects"]["unadjusted"]["bitrate_mbps"]["nps_points"] is not None


def test_no_row_with_a_frame() -> None:
    rows = make_rows(8, 200, 30, no_frame=1.0)
    got = impact_from_arrays(**arrays(rows))
    check(got, rows)
    for name in ("startup_s", "bitrate_mbps", "no_start"):
        assert got["effects"]["adjusted"][name]["nps_points"] is None


def test_aliased_fixed_effects_are_dropped() -> None:
    # The model is fixed by the region: its indicators add no rank to the region's.
    rows = make_rows(9, 400, 60)
    for r in rows:
        r["model"] = {"NL-NH": "X-200", "NL-ZH": "X-300", "BE-A": "X-300", None: None}[r["region"]]
    names, x, _, frame = reference_columns(rows, True)
    assert not all(reference_kept(names, x, frame))
    ref = check(impact_from_arrays(**arrays(rows)), rows)
    assert all(ref["adjusted"][n] is not None for n in NAMES)


def test_perfect_fit_has_a_degenerate_interval() -> None:
    # y is a function of failed alone: every residual is 0.
    rows = make_rows(10, 200, 30)
    for r in rows:
        r["score"] = 0 if r["failed"] else 10
    got = impact_from_arrays(**arrays(rows))
    check(got, rows)
    fig = got["effects"]["adjusted"]["failed"]
    assert abs(fig["nps_points"] + 200) < 1e-6
    assert fig["ci95"] == [fig["nps_points"]] * 2 and fig["p_value"] is None


@pytest.mark.parametrize(("n", "boxes", "null"), [(49, 40, True), (50, 40, False), (200, 19, True), (200, 20, False)])
def test_thresholds_on_answers_and_boxes(n: int, boxes: int, null: bool) -> None:
    rows = make_rows(11, n, boxes)
    for i, r in enumerate(rows):  # every box present, so G is exactly ``boxes``
        r["box"] = f"box-{i % boxes}"
    got = impact_from_arrays(**arrays(rows))
    check(got, rows)
    for model in ("unadjusted", "adjusted"):
        assert (got["effects"][model]["rebuffer_pct"]["nps_points"] is None) == null


def test_threshold_on_columns() -> None:
    # 60 rows and 60 regions: K = 1 + 59 + ... >= N, so the adjusted model is null.
    rows = make_rows(12, 60, 30)
    for i, r in enumerate(rows):
        r["region"] = f"R{i:02d}"
    got = impact_from_arrays(**arrays(rows))
    check(got, rows)
    assert all(got["effects"]["adjusted"][n]["nps_points"] is None for n in NAMES)
    assert got["effects"]["unadjusted"]["rebuffer_pct"]["nps_points"] is not None
    assert all(got["recoverable"][n]["nps_points"] is None for n in NAMES)


def test_no_rows() -> None:
    got = impact_from_arrays(**arrays([]))
    assert (got["answers"], got["boxes"], got["nps"]) == (0, 0, None)
    check(got, [])
    assert got["response_adjusted"] == {"nps": None, "ci95": None, "unrepresented_shown": 0}


def test_response_adjusted_from_the_formula() -> None:
    strata = [StratumCounts(0, 500, 300, 180, 40), StratumCounts(3, 80, 20, 2, 15),
              StratumCounts(5, 40, 0, 0, 0), StratumCounts(None, 30, 10, 5, 5)]
    got = impact_from_arrays(**arrays([]), strata=strata)["response_adjusted"]
    shown = 500 + 80 + 30  # the stratum without an answer is left out
    est = var = 0.0
    for n_shown, n, p, d in ((500, 300, 180, 40), (80, 20, 2, 15), (30, 10, 5, 5)):
        w, ps, ds = n_shown / shown, p / n, d / n
        est += w * (ps - ds)
        var += w * w * (ps + ds - (ps - ds) ** 2) / n
    close(got["nps"], 100 * est, "nps")
    close(got["ci95"][0], max(-100, 100 * est - 1.96 * 100 * math.sqrt(var)), "lo")
    close(got["ci95"][1], min(100, 100 * est + 1.96 * 100 * math.sqrt(var)), "hi")
    assert got["unrepresented_shown"] == 40
    # Every answer a detractor: the interval is clamped at -100.
    got = impact_from_arrays(**arrays([]), strata=[StratumCounts(1, 10, 3, 0, 3),
                                                   StratumCounts(2, 5, 2, 0, 1)])["response_adjusted"]
    assert got["ci95"][0] == -100.0 and got["nps"] < -60


# -- the endpoint, on both databases --------------------------------------------------------------

T0 = datetime(2026, 10, 5, tzinfo=UTC)
BUCKET_EDGES = (0.0, 0.005, 0.01, 0.02, 0.05)


def rb_stratum(ratio: float) -> int:
    """The rebuffer bucket of section 4: 0, then (0, .005], (.005, .01], ... (.05, inf)."""
    if ratio == 0:
        return 0
    return 1 + sum(1 for edge in BUCKET_EDGES[1:] if ratio > edge)


async def test_endpoint_equal_to_the_reference(api: Api) -> None:
    rng = random.Random(77)
    rows = make_rows(13, 240, 30)
    boxes: dict[str, list[dict[str, Any]]] = {}
    attrs: dict[str, dict[str, Any]] = {}
    shown_all: list[tuple[str, dict[str, Any], dict[str, Any] | None, datetime]] = []
    for i, r in enumerate(rows):
        started = T0 + timedelta(hours=i)
        s = session_record(started=started, watch_s=r["watch_s"], rebuffer_s=r["rebuffer_s"],
                           startup_ms=r["startup_ms"], bitrate=r["bitrate"], failed=r["failed"],
                           content_type=r["content_type"])
        shown = started + timedelta(seconds=r["watch_s"] + 2)
        kind = rng.random()
        outcome = "answered" if kind < 0.8 else "dismissed" if kind < 0.9 else "timeout"
        v = survey_record(session_id=s["id"], shown=shown, outcome=outcome,
                          score=r["score"] if outcome == "answered" else None)
        # A box's batches carry its attributes: one batch per record here, so that the
        # attributes can differ record by record, as the rows' do.
        key = r["box"]
        recs = [v] if i % 7 == 0 else [s, v]  # every 7th session never arrives
        boxes.setdefault(key, []).append({"records": recs, "box": {
            k: r[f] for k, f in (("region", "region"), ("model", "model"), ("firmware", "firmware"))
            if r[f] is not None}})
        attrs[v["id"]] = r
        shown_all.append((key, v, s if i % 7 else None, shown))
    # Sessions that showed a frame without a bitrate are no rows; surveys without a session.
    for j in range(6):
        s = session_record(started=T0 + timedelta(days=20, hours=j), bitrate=None, startup_ms=900)
        v = survey_record(session_id=s["id"], shown=T0 + timedelta(days=20, hours=j, minutes=30), score=2)
        boxes.setdefault("box-0", []).append({"records": [s, v], "box": {"region": "NL-NH"}})
        shown_all.append(("box-0", v, s, T0 + timedelta(days=20, hours=j, minutes=30)))
        v2 = survey_record(session_id=None, shown=T0 + timedelta(days=21, hours=j), score=10)
        boxes.setdefault("box-1", []).append({"records": [v2], "box": {}})
        shown_all.append(("box-1", v2, None, T0 + timedelta(days=21, hours=j)))
    for box_id, batches in boxes.items():
        token = await api.enrol(box_id)
        for b in batches:
            status, body = await api.upload(token, batch(box_id, b["records"], box=b["box"] or None))
            assert status == 200 and not body["rejected"], body

    async def impact(**params: str) -> dict[str, Any]:
        resp = await api.client.get("/v1/impact", params=params, headers=api.admin)
        assert resp.status == 200, await resp.text()
        data: dict[str, Any] = await resp.json()
        return data

    def expect_rows(lo: datetime | None = None, region: str | None = None,
                    content_type: str | None = None) -> list[dict[str, Any]]:
        out = []
        for i, r in enumerate(rows):
            _, v, s, shown = shown_all[i]
            if s is None or v["outcome"] != "answered" or (lo is not None and shown < lo):
                continue
            if region is not None and r["region"] != region:
                continue
            if content_type is not None and s["content_type"] != content_type:
                continue
            out.append(r)
        return out

    def expect_strata(lo: datetime | None = None, region: str | None = None,
                      content_type: str | None = None) -> dict[str, Any]:
        strata: dict[Any, list[int]] = {}
        for i, (_, v, s, shown) in enumerate(shown_all):
            if lo is not None and shown < lo:
                continue
            reg = rows[i]["region"] if i < len(rows) else ("NL-NH" if v["session_id"] else None)
            if region is not None and reg != region:
                continue
            # The content-type filter reaches a survey through its session: without one,
            # the survey is left out.
            if content_type is not None and (s is None or s["content_type"] != content_type):
                continue
            key = None if s is None else rb_stratum(s["qos"]["rebuffer_s"] / s["qos"]["watch_s"]
                                                     if s["qos"]["watch_s"] else 0.0)
            c = strata.setdefault(key, [0, 0, 0, 0])
            c[0] += 1
            if v["outcome"] == "answered":
                c[1] += 1
                c[2] += v["score"] >= 9
                c[3] += v["score"] <= 6
        answered = {k: c for k, c in strata.items() if c[1]}
        total = sum(c[0] for c in answered.values())
        est = sum(c[0] / total * (c[2] - c[3]) / c[1] for c in answered.values())
        var = sum((c[0] / total) ** 2 * (c[2] / c[1] + c[3] / c[1] - ((c[2] - c[3]) / c[1]) ** 2) / c[1]
                  for c in answered.values())
        half = 1.96 * 100 * math.sqrt(var)
        return {"nps": 100 * est, "ci95": [max(-100, 100 * est - half), min(100, 100 * est + half)],
                "unrepresented": sum(c[0] for k, c in strata.items() if not c[1])}

    for params, lo, region, content_type in (
            ({}, None, None, None),
            ({"from": iso(T0 + timedelta(hours=40))}, T0 + timedelta(hours=40), None, None),
            ({"region": "NL-ZH"}, None, "NL-ZH", None),
            ({"content_type": "live"}, None, None, "live")):
        got = await impact(**params)
        want = expect_rows(lo, region, content_type)
        check(got, want)
        ra = expect_strata(lo, region, content_type)
        close(got["response_adjusted"]["nps"], ra["nps"], "response_adjusted.nps")
        close(got["response_adjusted"]["ci95"][0], ra["ci95"][0], "response_adjusted.lo")
        close(got["response_adjusted"]["ci95"][1], ra["ci95"][1], "response_adjusted.hi")
        assert got["response_adjusted"]["unrepresented_shown"] == ra["unrepresented"]
    full = await impact()
    doc = openapi_document()
    jsonschema.Draft202012Validator({"$ref": "#/components/schemas/Impact",
                                     "components": doc["components"]}).validate(full)
    assert full["effects"]["adjusted"]["rebuffer_pct"]["nps_points"] is not None
    late = T0 + timedelta(hours=200)
    small = await impact(**{"from": iso(late)})
    check(small, expect_rows(late))
    assert 0 < small["answers"] < 50 and small["effects"]["adjusted"]["failed"]["nps_points"] is None
    empty = await impact(**{"from": iso(T0 + timedelta(days=400))})
    assert (empty["answers"], empty["boxes"], empty["nps"]) == (0, 0, None)
    assert empty["response_adjusted"] == {"nps": None, "ci95": None, "unrepresented_shown": 0}


async def test_endpoint_access_and_bad_query(api: Api) -> None:
    resp = await api.client.get("/v1/impact")
    assert resp.status == 401
    token = await api.enrol("stb-1")
    resp = await api.client.get("/v1/impact", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 403
    for params, field in (({"from": "yesterday"}, "from"), ({"content_type": "radio"}, "content_type"),
                          ({"colour": "red"}, "colour")):
        resp = await api.client.get("/v1/impact", params=params, headers=api.admin)
        assert resp.status == 400
        body = await resp.json()
        assert body["error"] == "bad_query" and body["detail"].startswith(field), body
    resp = await api.client.get("/healthz")
    assert resp.status == 200


@pytest.mark.parametrize(("scale", "kept"), [(1e-7, True), (1e-11, False)])
def test_rank_tolerance_is_1e_9_of_the_column_norm(scale: float, kept: bool) -> None:
    # Bitrate is nearly twice the startup: the relative residual is about ``scale``,
    # measured here by least squares, on either side of the contract's 1e-9.
    rows = make_rows(14, 300, 40, no_frame=0.0)
    noise = random.Random(1)
    for r in rows:
        r["bitrate"] = 2 * r["startup_ms"] + scale * 4000 * noise.gauss(0, 1)
    names, x, _, frame = reference_columns(rows, False)
    j = names.index("bitrate_mbps")
    a = x[:, :j]
    ratio = np.linalg.norm(x[:, j] - a @ np.linalg.lstsq(a, x[:, j], rcond=None)[0]) / np.linalg.norm(x[:, j])
    assert scale / 10 < ratio < scale * 10
    got = impact_from_arrays(**arrays(rows))
    assert (got["effects"]["unadjusted"]["bitrate_mbps"]["nps_points"] is not None) == kept
    assert reference_kept(names, x, frame)[j] == kept


def _same(a: Any, b: Any, path: str = "") -> None:
    """Equal structures, numbers within 1e-9 * max(1, |x|)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for k in a:
            _same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert abs(a - b) <= 1e-9 * max(1.0, abs(b)), f"{path}: {a} against {b}"
    else:
        assert a == b, f"{path}: {a} against {b}"


@pytest.mark.postgres
async def test_the_same_figures_on_both_databases(tmp_path: Path, postgres_url: str) -> None:
    rows = make_rows(15, 150, 25)
    answers = []
    for url in (f"sqlite:///{tmp_path / 'c.db'}", postgres_url):
        async with serve(Settings(db=url, admin_token=ADMIN)) as client:
            api = Api(client)
            tokens: dict[str, str] = {}
            for i, r in enumerate(rows):
                if r["box"] not in tokens:
                    tokens[r["box"]] = await api.enrol(r["box"])
                s = session_record(started=T0 + timedelta(hours=i), watch_s=r["watch_s"],
                                   rebuffer_s=r["rebuffer_s"], startup_ms=r["startup_ms"],
                                   bitrate=r["bitrate"], failed=r["failed"],
                                   content_type=r["content_type"])
                v = survey_record(session_id=s["id"], shown=T0 + timedelta(hours=i, minutes=59),
                                  score=r["score"], outcome="answered" if i % 9 else "timeout")
                box = {k: r[k] for k in ("region", "model", "firmware") if r[k] is not None}
                status, body = await api.upload(tokens[r["box"]], batch(r["box"], [s, v], box=box or None))
                assert status == 200 and not body["rejected"], body
            resp = await client.get("/v1/impact", headers=api.admin)
            assert resp.status == 200
            answers.append(await resp.json())
    assert answers[0]["answers"] > 100 and answers[0]["effects"]["adjusted"]["rebuffer_pct"]["nps_points"] is not None
    _same(answers[0], answers[1])


# -- the steps one at a time (each against its own words) ------------------------------------

def test_regressors_are_computed_in_double_whatever_the_input_precision() -> None:
    # Columns held as float32 (as a caller may hold them): the regressors are the contract's
    # divisions done in double on the same values, not in float32 (off by ~1e-8).
    rng = np.random.default_rng(3)
    ratio = rng.uniform(0, 0.1, 40).astype(np.float32)
    startup = rng.uniform(150, 9000, 40).astype(np.float32)
    bitrate = rng.uniform(400, 12000, 40).astype(np.float32)
    startup[::7] = np.nan
    bitrate[::7] = np.nan
    score = rng.integers(0, 11, 40).astype(np.float32)
    failed = (rng.random(40) < 0.2).astype(np.float32)
    got = impact.build_design(score, ratio, startup, bitrate, failed)
    frame = ~np.isnan(startup)
    su = startup.astype(np.float64) / 1000
    br = bitrate.astype(np.float64) / 1000
    want = np.column_stack([100 * ratio.astype(np.float64),
                            np.where(frame, su, su[frame].mean()),
                            np.where(frame, br, br[frame].mean()),
                            failed.astype(np.float64), (~frame).astype(np.float64)])
    np.testing.assert_allclose(got.x, want, rtol=1e-14, atol=0)
    assert got.x.dtype == np.float64
    np.testing.assert_array_equal(got.y, np.where(score >= 9, 100.0, np.where(score <= 6, -100.0, 0.0)))


def test_fixed_effects_leave_out_the_first_value_in_sort_order() -> None:
    # Levels numbered in order of first appearance (NL-NH, null, "", BE-A); in sort order
    # null comes first (left out), then "", "BE-A", "NL-NH": one indicator each, in order.
    values = ["NL-NH", None, "", "BE-A", "NL-NH", "BE-A", None, "", "BE-A"]
    got = impact.factor_indicators(Coded.of(values))
    want = np.array([[1.0 if v == level else 0.0 for level in ("", "BE-A", "NL-NH")] for v in values])
    np.testing.assert_array_equal(got, want)
    # No null: the least value is left out.
    values = ["z", "x", "y", "x"]
    np.testing.assert_array_equal(impact.factor_indicators(Coded.of(values)),
                                  np.array([[v == "y", v == "z"] for v in values], dtype=float))


def test_rank_rule_on_nearly_collinear_columns_without_frame_only_columns() -> None:
    # B is 2A plus noise, about 5e-9 of its norm (kept), C = A + B lies in the span (dropped),
    # D is new (kept): the rank rule by least squares decides the same, with no column
    # judged on the rows with a frame.
    rng = np.random.default_rng(7)
    n = 300
    a = rng.normal(size=n)
    b = 2 * a + 1e-8 * np.linalg.norm(a) / math.sqrt(n) * rng.normal(size=n)
    x = np.column_stack([np.ones(n), a, b, a + b, rng.normal(size=n)])
    names = ["const", "a", "b", "c", "d"]
    want = reference_kept(names, x, np.ones(n, bool))
    assert want == [True, True, True, False, True]
    assert impact.keep_columns(x, x[:0], [False] * 5) == want
    assert impact.keep_columns(x, x, [False] * 5) == want


def test_failed_on_exactly_the_sessions_without_a_frame_drops_no_start() -> None:
    # A session that failed never showed a frame, and every other one did: no_start is
    # failed again, so it adds no rank (judged after bitrate_mbps, the last regressor
    # judged on the rows with a frame).
    rows = make_rows(16, 400, 50, no_frame=0.15)
    for r in rows:
        r["failed"] = r["startup_ms"] is None
    got = impact_from_arrays(**arrays(rows))
    ref = check(got, rows)
    for model in ("unadjusted", "adjusted"):
        assert ref[model]["failed"] is not None and ref[model]["no_start"] is None
        assert ref[model]["bitrate_mbps"] is not None


def test_fit_model_thresholds_on_its_own() -> None:
    # fit_model applies the N < 50 and G < 20 thresholds itself (not only through its caller).
    rows = make_rows(17, 200, 40)
    names, x, y, frame = reference_columns(rows, False)
    xy = np.column_stack([x, y])
    index = np.arange(len(rows), dtype=np.int64)
    frame_only = [n in ("startup_s", "bitrate_mbps") for n in names]
    cols = list(range(len(names)))
    geom = impact.geometry(xy, frame)
    assert impact.fit_model(xy, geom, cols, frame_only, index % 19, 19) == dict.fromkeys(NAMES)
    ok = impact.fit_model(xy, geom, cols, frame_only, index % 20, 20)
    assert all(ok[n] is not None for n in NAMES)
    small = xy[:49]
    geom = impact.geometry(small, frame[:49])
    assert impact.fit_model(small, geom, cols, frame_only, index[:49] % 40, 40) == dict.fromkeys(NAMES)


def test_recoverable_from_the_formula_on_one_row_and_on_none() -> None:
    # -b * mean(max(0, x - target)) (bitrate: b * mean(max(0, target - x))) over a design of
    # one row, for given slopes; over no rows every figure is null.
    design = impact.build_design([3], [0.04], [3500.0], [2000.0], [1.0])
    slopes = {name: impact.Slope(-2.0 - i, (-3.0 - i, -1.0 - i), 0.01) for i, name in enumerate(NAMES)}
    got = impact.recoverable(design, slopes)
    gaps = {"rebuffer_pct": 4.0, "startup_s": 1.5, "bitrate_mbps": 3.0, "failed": 1.0, "no_start": 0.0}
    for i, name in enumerate(NAMES):
        sign = 1.0 if name == "bitrate_mbps" else -1.0
        ends = sorted([sign * (-3.0 - i) * gaps[name], sign * (-1.0 - i) * gaps[name]])
        assert got[name]["target"] == TARGETS[name]
        close(got[name]["nps_points"], sign * (-2.0 - i) * gaps[name], name)
        close(got[name]["ci95"][0], ends[0], name + ".lo")
        close(got[name]["ci95"][1], ends[1], name + ".hi")
    empty = impact.build_design([], [], [], [], [])
    assert impact.recoverable(empty, slopes) == {
        name: {"target": TARGETS[name], "nps_points": None, "ci95": None} for name in NAMES}


def test_response_adjusted_with_a_single_answer_and_the_upper_clamp() -> None:
    def formula(strata: list[tuple[int, int, int, int]]) -> tuple[float, float]:
        """nps and the half-width, from the contract's words."""
        answered = [s for s in strata if s[1] > 0]
        shown = sum(s[0] for s in answered)
        est = var = 0.0
        for n_shown, n, p, d in answered:
            w, ps, ds = n_shown / shown, p / n, d / n
            est += w * (ps - ds)
            var += w * w * (ps + ds - (ps - ds) ** 2) / n
        return 100 * est, 1.96 * 100 * math.sqrt(var)

    # A stratum with one answer (a detractor) is answered: in the estimate, not unrepresented.
    # Nearly all promoters: the interval passes 100 and is clamped there.
    for counts, unrepresented in (([(40, 1, 0, 1), (200, 30, 20, 4), (9, 0, 0, 0)], 9),
                                  ([(100, 10, 10, 0), (5, 2, 1, 0)], 0)):
        got = impact.response_adjusted([StratumCounts(i, *c) for i, c in enumerate(counts)])
        nps, half = formula(counts)
        close(got["nps"], nps, "nps")
        close(got["ci95"][0], max(-100.0, nps - half), "lo")
        close(got["ci95"][1], min(100.0, nps + half), "hi")
        assert got["unrepresented_shown"] == unrepresented
    assert nps + half > 100 and got["ci95"][1] == 100.0
