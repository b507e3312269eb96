"""The "What quality costs" section's server side: the what-if's points against a reference
written here from contract §6's words, the bucket tables' "unknown" rows and small-n
buckets against counts made by hand, the case of segment filters, and the help texts."""

from __future__ import annotations

import math
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from collector.dashboard.quality import (
    WHATIF_GRID,
    is_small_n,
    reasons_ranked,
    whatif,
)
from collector.dashboard.views import match_known, page_filters
from collector.metrics import NAMES as METRICS
from collector.model import Filters, SurveyFact
from tests.collector.conftest import Api, batch, session_record, survey_record
from tests.report_from_rows import impact_rows

from .test_data_api import login_client


def fact(score: int | None, rr: float | None, su: float | None, br: float | None, *,
         outcome: str = "answered", has_session: bool = True) -> SurveyFact:
    return SurveyFact.of(outcome, score, None, has_session,
                         {"rebuffer_ratio": rr, "avg_bitrate_kbps": br, "startup_ms": su})


def reference_points(facts: list[SurveyFact], metric: str, target: float, coef: float,
                     ci: list[float]) -> tuple[float, list[float]]:
    """Contract §6, read literally: rows are answered surveys whose session is known, less
    sessions that showed a frame but have no bitrate; ``-coef · mean(max(0, x - target))``
    (bitrate: ``coef · mean(max(0, target - x))``) over all N rows, rows without a frame
    adding 0 for startup and bitrate; the interval is the slope's put through the same
    formula, ends ascending."""
    rows = [f for f in facts if f.outcome == "answered" and f.has_session
            and not (f.value("startup_ms") is not None and f.value("avg_bitrate_kbps") is None)]
    gaps = []
    for f in rows:
        framed = f.value("startup_ms") is not None
        if metric == "rebuffer_pct":
            gaps.append(max(0.0, 100 * (f.value("rebuffer_ratio") or 0.0) - target))
        elif metric == "startup_s":
            gaps.append(max(0.0, (f.value("startup_ms") or 0) / 1000 - target) if framed else 0.0)
        else:
            gaps.append(max(0.0, target - (f.value("avg_bitrate_kbps") or 0) / 1000) if framed else 0.0)
    mean = sum(gaps) / len(gaps)
    sign = 1.0 if metric == "bitrate_mbps" else -1.0
    return sign * coef * mean, sorted(sign * c * mean for c in ci)


def random_facts(rng: random.Random, n: int) -> list[SurveyFact]:
    out = []
    for _ in range(n):
        kind = rng.random()
        rr = rng.choice((0.0, 0.0, 0.004, 0.01, 0.02, rng.uniform(0, 0.08)))
        if kind < 0.1:  # never started: no startup, no bitrate
            out.append(fact(rng.randint(0, 10), rr, None, None))
        elif kind < 0.15:  # a frame but no bitrate: not a row
            out.append(fact(rng.randint(0, 10), rr, 900, None))
        elif kind < 0.2:  # dismissed, or its session unknown: not a row
            out.append(fact(None, rr, 900, 5000.0, outcome="dismissed"))
            out.append(fact(7, None, None, None, has_session=False))
        else:
            su = rng.choice((500, 1000, 2000, 2250, rng.randint(300, 12000)))
            br = rng.choice((1000.0, 2500.0, 5000.0, rng.uniform(300, 16000)))
            out.append(fact(rng.randint(0, 10), rr, su, br))
    return out


def impact_like(coefs: dict[str, float | None]) -> dict[str, Any]:
    targets = {"rebuffer_pct": 0.0, "startup_s": 2.0, "bitrate_mbps": 5.0}
    return {
        "effects": {"adjusted": {m: {"nps_points": c, "ci95": None if c is None else [c - 1.5, c + 0.75],
                                     "p_value": None} for m, c in coefs.items()}},
        "recoverable": {m: {"target": t} for m, t in targets.items()},
    }


@pytest.mark.parametrize("seed", range(5))
def test_whatif_points_at_every_step_match_the_contracts_formula(seed: int) -> None:
    rng = random.Random(seed)
    facts = random_facts(rng, 400)
    coefs: dict[str, float | None] = {"rebuffer_pct": -7.25, "startup_s": -1.5,
                                      "bitrate_mbps": 2.0 if seed % 2 else -0.5}
    answer = whatif(impact_rows(facts), impact_like(coefs))
    for metric, grid in WHATIF_GRID.items():
        assert [s["target"] for s in answer[metric]["steps"]] == list(grid)
        coef = coefs[metric]
        assert coef is not None
        for step in answer[metric]["steps"]:
            points, ci = reference_points(facts, metric, step["target"], coef, [coef - 1.5, coef + 0.75])
            assert math.isclose(step["nps_points"], points, rel_tol=1e-12, abs_tol=1e-12)
            assert step["ci95"] == pytest.approx(ci, rel=1e-12, abs=1e-12)
            assert step["ci95"][0] <= step["ci95"][1]
    # A looser target wins fewer points (the gap can only shrink).
    gaps = [s["mean_gap"] for s in answer["rebuffer_pct"]["steps"]]
    assert gaps == sorted(gaps, reverse=True) and gaps[0] > gaps[-1]


def test_whatif_with_a_null_slope_and_with_no_rows() -> None:
    facts = random_facts(random.Random(9), 50)
    answer = whatif(impact_rows(facts), impact_like({"rebuffer_pct": None, "startup_s": -1.0,
                                                     "bitrate_mbps": 1.0}))
    assert all(s["nps_points"] is None and s["ci95"] is None for s in answer["rebuffer_pct"]["steps"])
    assert answer["startup_s"]["steps"][0]["nps_points"] is not None
    empty = whatif(impact_rows([]), impact_like({"rebuffer_pct": -1.0, "startup_s": -1.0,
                                                 "bitrate_mbps": 1.0}))
    assert {s["mean_gap"] for m in WHATIF_GRID for s in empty[m]["steps"]} == {0.0}


def test_small_n_is_a_point_outside_its_interval_or_under_three_answers() -> None:
    from collector.stats import nps_ci95

    # One promoter: NPS 100, but the adjusted-Wald interval does not reach 100.
    ci = nps_ci95(1, 0, 1)
    assert ci is not None and ci[1] < 100.0
    assert is_small_n(1, 100.0, ci)
    assert is_small_n(2, 0.0, nps_ci95(1, 1, 2))
    assert not is_small_n(40, 10.0, nps_ci95(12, 8, 40))
    assert not is_small_n(0, None, None)


def test_reasons_most_given_first_ties_in_the_contracts_order() -> None:
    order = ("picture", "buffering", "content", "price", "interface", "support", "other")
    assert reasons_ranked({"other": 5, "buffering": 5, "price": 9, "picture": 1}, order) == \
        ["price", "buffering", "other", "picture"]


def test_segment_filters_match_the_stored_case_or_say_so() -> None:
    known = {"region": ["NL-NH", "NL-ZH"], "model": ["X-200", "x-200"], "firmware": ["4.0"],
             "channel": []}
    filters, values, _ = page_filters({"region": "nl-zh", "model": "X-2OO", "firmware": "4.0"})
    out, notes = match_known(filters, values, known)
    assert out.region == "NL-ZH" and values["region"] == "NL-ZH"
    assert out.model == "X-2OO" and out.firmware == "4.0"
    assert any("'nl-zh' matched the stored 'NL-ZH'" in n for n in notes)
    assert any("No model 'X-2OO' is known" in n and "X-200" in n for n in notes)
    filters, values, _ = page_filters({"model": "x-200"})
    out, notes = match_known(filters, values, known)
    assert out.model == "x-200" and notes == []  # typed exactly as one stored value
    _, notes = match_known(*page_filters({"model": "X-200"})[:2], {"model": ["x-200 "]})
    assert notes and notes[0].startswith("No model 'X-200' is known")
    _, notes = match_known(*page_filters({"region": "nl-nh"})[:2], {"region": ["NL-NH", "Nl-Nh"]})
    assert "but for case" in notes[0]


#: Enough boxes (and answers) for contract §6's thresholds (G >= 20, N >= 50), so that the
#: impact module's figures are not all null and the what-if is checked against them.
BOXES = 20


async def test_unknown_rows_and_impact_api_through_the_store(api: Api) -> None:
    """Sessions that never showed a frame have no startup time or bitrate: the tables' unknown
    row counts them, and the what-if served by the API is the contract's formula over the
    stored rows."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    rng = random.Random(4)
    facts: list[SurveyFact] = []
    unknown_expected = {m: {"sessions": 0, "shown": 0, "n": 0, "p": 0, "d": 0} for m in METRICS}
    for b in range(BOXES):
        box = f"stb-q{b}"
        token = await api.enrol(box)
        records: list[dict[str, Any]] = []
        for i in range(12):
            started = now - timedelta(hours=2 + i * 5, minutes=b)
            no_frame = i % 7 == 0
            no_bitrate = i % 11 == 3  # a frame, but no bitrate: in the tables' unknown row
            su = None if no_frame else rng.choice((600, 1500, 2500, 7000))
            br = None if no_frame or no_bitrate else rng.choice((900.0, 3000.0, 6000.0))
            watch = 600.0
            rb = rng.choice((0.0, 0.0, 3.0, 15.0))
            s = session_record(started=started, watch_s=watch, rebuffer_s=rb,
                               rebuffer_count=1 if rb else 0, startup_ms=su, bitrate=br,
                               failed=no_frame and i % 2 == 0)
            vh = None if i % 3 == 0 else rng.choice((576, 1080))  # optional: often absent
            if vh is not None:
                s["qos"]["video_height"] = vh
            records.append(s)
            outcome = rng.choice(("answered", "answered", "dismissed"))
            score = rng.randint(0, 10)
            records.append(survey_record(session_id=s["id"], shown=started + timedelta(minutes=11),
                                         outcome=outcome, score=score))
            facts.append(fact(score if outcome == "answered" else None, rb / watch, su, br,
                              outcome=outcome))
            for m, value in (("startup_ms", su), ("avg_bitrate_kbps", br), ("video_height", vh)):
                if value is None:
                    u = unknown_expected[m]
                    u["sessions"] += 1
                    u["shown"] += 1
                    if outcome == "answered":
                        u["n"] += 1
                        u["p"] += score >= 9
                        u["d"] += score <= 6
        status, answer = await api.upload(token, batch(box, records))
        assert status == 200 and answer["accepted"] == len(records)

    base = str(api.client.make_url("")).rstrip("/")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        await login_client(base, s)
        async with s.get(base + "/dashboard/api/data") as r:
            assert r.status == 200, await r.text()
            data = await r.json()
        for m in METRICS:
            got = data["unknown_by_qos"][m]
            want = unknown_expected[m]
            assert (got["sessions"], got["shown"], got["n"]) == (want["sessions"], want["shown"], want["n"]), m
            if want["n"]:
                assert got["nps"] == pytest.approx(100 * (want["p"] - want["d"]) / want["n"])
        assert data["unknown_by_qos"]["rebuffer_ratio"]["sessions"] == 0
        assert data["unknown_by_qos"]["startup_ms"]["n"] > 0

        async with s.get(base + "/dashboard/api/impact") as r:
            assert r.status == 200, await r.text()
            served = await r.json()
        # The section carries contract §6's answer as it is, and the what-if agrees with it
        # at the default targets and with the contract's formula everywhere.
        impact = served["impact"]
        assert impact["answers"] == len([f for f in facts if f.outcome == "answered" and not (
            f.value("startup_ms") is not None and f.value("avg_bitrate_kbps") is None)])
        assert impact["answers"] >= 50 and impact["effects"]["adjusted"]["rebuffer_pct"]["nps_points"] is not None
        for metric, spec in served["whatif"].items():
            slope = impact["effects"]["adjusted"][metric]
            assert spec["default"] == impact["recoverable"][metric]["target"]
            for step in spec["steps"]:
                if slope["nps_points"] is None:
                    assert step["nps_points"] is None
                    continue
                points, ci = reference_points(facts, metric, step["target"], slope["nps_points"],
                                              slope["ci95"])
                assert step["nps_points"] == pytest.approx(points, rel=1e-9, abs=1e-9)
                assert step["ci95"] == pytest.approx(ci, rel=1e-9, abs=1e-9)
                if step["target"] == spec["default"]:
                    assert step["nps_points"] == pytest.approx(
                        impact["recoverable"][metric]["nps_points"], rel=1e-6, abs=1e-6)

        # The at-risk API: contract §7's query, errors naming the parameter.
        async with s.get(base + "/dashboard/api/at-risk", params={"window_days": "3"}) as r:
            assert r.status == 200
            risk = await r.json()
            assert {b["box_id"] for b in risk["boxes"]} == {f"stb-q{b}" for b in range(BOXES)}
            assert [b["risk"] for b in risk["boxes"]] == sorted((b["risk"] for b in risk["boxes"]),
                                                                 reverse=True)
        async with s.get(base + "/dashboard/api/at-risk", params={"window_days": "3", "limit": "2"}) as r:
            assert [b["box_id"] for b in (await r.json())["boxes"]] == [b["box_id"] for b in risk["boxes"][:2]]
        for params, word in (({"window_days": "91"}, "window_days"), ({"limit": "x"}, "limit"),
                             ({"to": "yesterday"}, "to"), ({"channel": "NPO1"}, "channel"),
                             ({"region": ""}, "region")):
            async with s.get(base + "/dashboard/at-risk.csv", params=params) as r:
                assert r.status == 400, params
                body = await r.json()
                assert body["error"] == "bad_query" and body["detail"].startswith(word), body
        # Still serving after the bad queries.
        async with s.get(base + "/dashboard/at-risk.csv") as r:
            assert r.status == 200
            lines = (await r.text()).splitlines()
            assert lines[0].startswith("rank,box_id,risk,") and len(lines) == BOXES + 1
    # Without a session: 401, as the rest of the dashboard's data.
    async with aiohttp.ClientSession() as anon:
        for path in ("/dashboard/api/impact", "/dashboard/api/at-risk", "/dashboard/at-risk.csv"):
            async with anon.get(base + path) as r:
                assert r.status == 401, path
        async with anon.get(base + "/", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/dashboard"


def _help(*args: str) -> str:
    exe = Path(sys.executable).with_name(args[0])
    return subprocess.run([str(exe), *args[1:], "--help"], capture_output=True, text=True,
                          check=True).stdout


def test_help_texts_are_plain_and_serve_lists_the_environment() -> None:
    texts = [_help("nps-collector"), _help("nps-collector", "serve"), _help("stb-widget"),
             _help("box-sim")]
    for text in texts:
        assert "``" not in text
    serve = texts[1]
    for name in ("NPS_ADMIN_TOKEN", "NPS_WEBHOOK_SECRET", "NPS_WEBHOOK_URL", "NPS_LOG_LEVEL"):
        assert name in serve, name
    assert "nps-collector: serve, enrol and revoke boxes" in texts[0]
    assert "stb-widget: run (the agent)" in texts[2]


def test_filters_unknown_parameter_names_it() -> None:
    from collector.errors import BadQueryError

    with pytest.raises(BadQueryError, match="risk_days"):
        page_filters({"risk_days": "5"})
    assert page_filters({"risk_days": "28"})[1]["risk_days"] == "28"
    assert page_filters({})[1]["risk_days"] == "7"
    assert Filters().region is None


async def test_a_part_the_store_refuses_says_why_and_the_page_still_renders() -> None:
    from html import escape

    from collector.dashboard.quality import at_risk_section
    from collector.dashboard.views import _part
    from collector.errors import BadQueryError

    async def refuse() -> dict[str, Any]:
        raise BadQueryError("to: <too far> in the future")

    why = await _part(refuse())
    assert why == "Not for these filters: to: <too far> in the future"
    html = at_risk_section(why, 7, {"region": "NL"}, "window_days=7", "", escape)
    assert 'id="at-risk-unavailable"' in html and "&lt;too far&gt;" in html and "<too far>" not in html
    assert '<input type="hidden" name="region" value="NL">' in html


def test_the_at_risk_window_ends_at_the_period_end_or_now() -> None:
    from collector.dashboard.views import at_risk_link, risk_end_us
    from protocol import to_micros

    now = datetime(2026, 12, 7, 14, 30, 15, 123456, tzinfo=UTC)
    today = page_filters({"from_day": "2026-12-01", "to_day": "2026-12-07"})[0]
    past = page_filters({"from_day": "2026-11-01", "to_day": "2026-11-10", "region": "NL-ZH"})[0]
    assert risk_end_us(today, now) == to_micros(now.replace(microsecond=0))
    assert risk_end_us(past, now) == to_micros(datetime(2026, 11, 11, tzinfo=UTC))
    link = at_risk_link(past, 14, risk_end_us(past, now))
    assert link == "window_days=14&to=2026-11-11T00%3A00%3A00Z&region=NL-ZH"
