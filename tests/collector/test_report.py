"""GET /v1/report against a reference computed here, independently, from the raw records."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from scipy import stats as sps

from tests import reference as contract
from tests.collector.conftest import Api, batch, session_record, survey_record

T0 = datetime(2026, 10, 1, tzinfo=UTC)
REGIONS = ["NL-NH", "NL-ZH", "NL-UT"]
CHANNELS = ["NPO1", "RTL4", "SBS6", "Ziggo Sport"]


def generate(seed: int, n_sessions: int) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(box region, session, survey or {}) with a planted effect: more rebuffering, lower scores."""
    rng = random.Random(seed)
    out = []
    for _i in range(n_sessions):
        watch = rng.uniform(600, 7200)
        stalled = rng.random() < 0.4
        ratio = rng.choice([0.001, 0.004, 0.008, 0.015, 0.03, 0.08, 0.2]) * rng.random() if stalled else 0.0
        bitrate = rng.choice([None, rng.uniform(500, 12000)])
        startup = rng.choice([None, rng.randint(200, 9000)])
        started = T0 + timedelta(seconds=rng.randint(0, 30 * 86400))
        s = session_record(started=started, watch_s=watch, rebuffer_s=watch * ratio,
                           rebuffer_count=rng.randint(1, 9) if stalled else 0, startup_ms=startup,
                           bitrate=bitrate, failed=rng.random() < 0.05,
                           channel=rng.choice(CHANNELS), content_type=rng.choice(["live", "vod", "catchup", None]))
        # Optional: absent (older boxes), null, or a common height (edges included).
        height = rng.choice(["absent", None, 0, 360, 576, 577, 720, 1080, 1440, 2160])
        if height != "absent":
            s["qos"]["video_height"] = height
        v: dict[str, Any] = {}
        if rng.random() < 0.3:
            r = rng.random()
            outcome = "answered" if r < 0.7 else "dismissed" if r < 0.9 else "timeout"
            score = max(0, min(10, round(rng.gauss(8.5 - 60 * ratio, 1.5)))) if outcome == "answered" else None
            v = survey_record(session_id=s["id"], shown=started + timedelta(seconds=watch + 1),
                              outcome=outcome, score=score,
                              reason=rng.choice([None, "buffering", "picture", "price"]) if score is not None else None)
        out.append((rng.choice(REGIONS), s, v))
    return out


def metric(s: dict[str, Any], name: str) -> float | None:
    """A session's QoS metric as §3 defines it, from the record as sent."""
    q = s["qos"]
    if name == "rebuffer_ratio":
        return q["rebuffer_s"] / q["watch_s"] if q["watch_s"] else 0.0
    value: float | None = q.get(name)  # optional fields may be absent: null
    return value


def reference(data: list[tuple[str, dict[str, Any], dict[str, Any]]], *, region: str | None = None,
              channel: str | None = None, lo: datetime | None = None, hi: datetime | None = None) -> dict[str, Any]:
    def in_range(t: str) -> bool:
        when = datetime.fromisoformat(t)
        return (lo is None or when >= lo) and (hi is None or when < hi)

    sessions = [(r, s, v) for r, s, v in data if (region is None or r == region)
                and (channel is None or s["channel"] == channel) and in_range(s["started_at"])]
    surveys = [(r, s, v) for r, s, v in data if v and (region is None or r == region)
               and (channel is None or s["channel"] == channel) and in_range(v["shown_at"])]
    answered = [(s, v) for _, s, v in surveys if v["outcome"] == "answered"]
    scores = [v["score"] for _, v in answered]
    p = sum(x >= 9 for x in scores)
    d = sum(x <= 6 for x in scores)
    n = len(scores)
    ref: dict[str, Any] = {
        "sessions": contract.session_figures(
            (s["qos"]["startup_ms"], s["qos"]["failed"], bool(v)) for _, s, v in sessions),
        "shown": len(surveys), "answered": n, "promoters": p, "detractors": d,
        "nps": 100 * (p - d) / n if n else None,
    }
    n2 = n + 3
    pp, dd = (p + 0.75) / n2, (d + 0.75) / n2
    half = 1.96 * math.sqrt((pp + dd - (pp - dd) ** 2) / n2)
    ref["ci"] = [max(-100, 100 * (pp - dd - half)), min(100, 100 * (pp - dd + half))]
    ratios = [s["qos"]["rebuffer_s"] / s["qos"]["watch_s"] for s, _ in answered]
    rho, pval = sps.spearmanr(scores, ratios)
    ref["spearman"], ref["p_value"] = rho, pval
    br = [(v["score"], s["qos"]["avg_bitrate_kbps"]) for s, v in answered if s["qos"]["avg_bitrate_kbps"] is not None]
    ref["br_spearman"] = sps.spearmanr([a for a, _ in br], [b for _, b in br])[0]
    ref["br_n"] = len(br)
    su = [(v["score"], s["qos"]["startup_ms"]) for s, v in answered if s["qos"]["startup_ms"] is not None]
    ref["su_spearman"] = sps.spearmanr([a for a, _ in su], [b for _, b in su])[0]
    ref["su_n"] = len(su)
    vh = [(v["score"], s["qos"]["video_height"]) for s, v in answered
          if s["qos"].get("video_height") is not None]
    ref["vh_spearman"] = sps.spearmanr([a for a, _ in vh], [b for _, b in vh])[0]
    ref["vh_n"] = len(vh)
    ref["figures"] = contract.answer_figures(scores, [v.get("reason") for _, v in answered])
    ref["by_qos"] = {m: contract.by_qos(m, [metric(s, m) for _, s, _ in sessions],
                                        [(metric(s, m), v["score"]) for s, v in answered])
                     for m in contract.BUCKET_EDGES}
    return ref


async def load(api: Api, data: list[tuple[str, dict[str, Any], dict[str, Any]]], *, surveys_first: bool) -> None:
    tokens = {r: await api.enrol(f"box-{r}") for r in REGIONS}
    by_region: dict[str, list[dict[str, Any]]] = {r: [] for r in REGIONS}
    for r, s, v in data:
        by_region[r].append(s)
        if v:
            by_region[r].insert(0, v) if surveys_first else by_region[r].append(v)
    for r, recs in by_region.items():
        for i in range(0, len(recs), 500):
            status, body = await api.upload(tokens[r], batch(f"box-{r}", recs[i:i + 500], box={"region": r, "model": "X-200"}))
            assert status == 200 and not body["rejected"], body


def check(rep: dict[str, Any], ref: dict[str, Any]) -> None:
    assert rep["sessions"] == ref["sessions"]
    assert rep["surveys"]["shown"] == ref["shown"] and rep["surveys"]["answered"] == ref["answered"]
    assert rep["surveys"]["response_rate"] == pytest.approx(ref["answered"] / ref["shown"])
    assert (rep["promoters"], rep["detractors"]) == (ref["promoters"], ref["detractors"])
    assert rep["nps"] == pytest.approx(ref["nps"])
    assert rep["nps_ci95"] == pytest.approx(ref["ci"])
    c = rep["correlation"]["rebuffer_ratio"]
    assert c["n"] == ref["answered"]
    assert c["spearman"] == pytest.approx(ref["spearman"], abs=0.01)
    assert c["p_value"] == pytest.approx(ref["p_value"], rel=0.05, abs=1e-12)
    assert rep["correlation"]["avg_bitrate_kbps"]["n"] == ref["br_n"]
    assert rep["correlation"]["avg_bitrate_kbps"]["spearman"] == pytest.approx(ref["br_spearman"], abs=0.01)
    assert rep["correlation"]["startup_ms"]["n"] == ref["su_n"]
    assert rep["correlation"]["startup_ms"]["spearman"] == pytest.approx(ref["su_spearman"], abs=0.01)
    assert rep["correlation"]["video_height"]["n"] == ref["vh_n"] > 0
    assert rep["correlation"]["video_height"]["spearman"] == pytest.approx(ref["vh_spearman"], abs=0.01)
    # Every figure of every bucket of every metric, the histogram, passives and reasons.
    contract.assert_close(rep["by_qos"], ref["by_qos"], "by_qos")
    contract.assert_close(rep, ref["figures"])


@pytest.mark.parametrize("surveys_first", [False, True])
async def test_report_matches_an_independent_reference(api: Api, surveys_first: bool) -> None:
    data = generate(seed=7, n_sessions=3000)
    await load(api, data, surveys_first=surveys_first)
    ref = reference(data)
    rep = await api.report()
    check(rep, ref)
    # The planted effect is there: more rebuffering, lower scores.
    assert rep["correlation"]["rebuffer_ratio"]["spearman"] < -0.2
    assert rep["correlation"]["rebuffer_ratio"]["p_value"] < 1e-6
    nps_by_bucket = [b["nps"] for b in rep["by_qos"]["rebuffer_ratio"] if b["n"] >= 30]
    assert nps_by_bucket[0] > nps_by_bucket[-1] + 30
    # Filters: region, channel, a half-open time range.
    lo, hi = T0 + timedelta(days=5), T0 + timedelta(days=20)
    check(await api.report(region="NL-ZH"), reference(data, region="NL-ZH"))
    check(await api.report(channel="RTL4"), reference(data, channel="RTL4"))
    check(await api.report(**{"from": lo.isoformat(), "to": hi.isoformat()}), reference(data, lo=lo, hi=hi))


async def test_empty_report_has_nulls_and_every_bucket(api: Api) -> None:
    rep = await api.report()
    assert rep["nps"] is None and rep["nps_ci95"] is None
    assert rep["surveys"]["response_rate"] is None
    assert rep["score_histogram"] == [0] * 11 and rep["reasons"] == {}
    assert [b["hi"] for b in rep["by_qos"]["rebuffer_ratio"]] == [0, 0.005, 0.01, 0.02, 0.05, None]
    assert [b["lo"] for b in rep["by_qos"]["avg_bitrate_kbps"]] == [0, 1000, 2500, 5000, 8000]
    assert [b["hi"] for b in rep["by_qos"]["startup_ms"]] == [1000, 2000, 5000, None]
    assert [b["hi"] for b in rep["by_qos"]["video_height"]] == [576, 720, 1080, None]
    for m in ("rebuffer_ratio", "avg_bitrate_kbps", "startup_ms", "video_height"):
        assert rep["correlation"][m] == {"spearman": None, "p_value": None, "n": 0}


async def test_bucket_edges_and_dismissals(api: Api) -> None:
    token = await api.enrol("stb-1")
    recs = []
    for ratio, bitrate, startup, score in [(0.0, 1000.0, 1000, 10), (0.005, 1000.1, 0, 3), (0.0051, 8000.0, 5001, 7)]:
        s = session_record(watch_s=1000.0, rebuffer_s=1000.0 * ratio, bitrate=bitrate, startup_ms=startup)
        recs += [s, survey_record(session_id=s["id"], score=score, reason="buffering")]
    recs.append(survey_record(outcome="dismissed", score=None))
    recs.append(survey_record(outcome="timeout", score=None))
    await api.upload(token, batch("stb-1", recs))
    rep = await api.report()
    assert [b["n"] for b in rep["by_qos"]["rebuffer_ratio"]] == [1, 1, 1, 0, 0, 0]
    assert [b["n"] for b in rep["by_qos"]["avg_bitrate_kbps"]] == [1, 1, 0, 1, 0]
    assert [b["n"] for b in rep["by_qos"]["startup_ms"]] == [2, 0, 0, 1]
    assert rep["surveys"] == {"shown": 5, "answered": 3, "dismissed": 1, "timeout": 1, "response_rate": 0.6}
    assert (rep["promoters"], rep["passives"], rep["detractors"]) == (1, 1, 1)
    assert rep["nps"] == 0.0 and rep["reasons"] == {"buffering": 3}
    hist = [0] * 11
    hist[10] = hist[3] = hist[7] = 1
    assert rep["score_histogram"] == hist
    c = rep["correlation"]["rebuffer_ratio"]
    assert c["n"] == 3 and c["spearman"] == pytest.approx(sps.spearmanr([10, 3, 7], [0, 0.005, 0.0051])[0])


def edge_values(metric: str) -> list[tuple[float, int]]:
    """(value, the bucket §4 puts it in) at and just past every edge of ``metric``: x = lo
    of the first bucket, then each closed upper edge (its own bucket: lo < x <= hi) and the
    smallest step above it (the next bucket). Start-up (whole milliseconds) and video height
    (whole pixels) step by 1."""
    edges = contract.BUCKET_EDGES[metric]
    out: list[tuple[float, int]] = [(edges[0][0], 0)]
    for i, (_, hi) in enumerate(edges):
        if hi is None:
            continue
        above = hi + 1 if metric in ("startup_ms", "video_height") else hi * (1 + 1e-9) if hi else 1e-9
        out += [(hi, i), (above, i + 1)]
    return out


async def test_every_bucket_edge_goes_to_the_lower_bucket(api: Api) -> None:
    token = await api.enrol("stb-edges")
    recs: list[dict[str, Any]] = []
    sent: list[tuple[dict[str, Any], int]] = []
    rng = random.Random(17)
    for m in contract.BUCKET_EDGES:
        for x, _ in edge_values(m):
            # The other metrics null (bitrate, start-up) or exactly 0 (rebuffer ratio), so
            # that each session tells about one metric's edge.
            watch = 1000.0
            s = session_record(watch_s=watch, bitrate=x if m == "avg_bitrate_kbps" else None,
                               startup_ms=int(x) if m == "startup_ms" else None,
                               rebuffer_s=x * watch if m == "rebuffer_ratio" else 0.0,
                               rebuffer_count=1 if m == "rebuffer_ratio" and x else 0)
            if m == "video_height":
                s["qos"]["video_height"] = int(x)
            score = rng.randint(0, 10)
            recs += [s, survey_record(session_id=s["id"], score=score)]
            sent.append((s, score))
    status, body = await api.upload(token, batch("stb-edges", recs))
    assert status == 200 and body["accepted"] == len(recs), body
    rep = await api.report()
    for m in contract.BUCKET_EDGES:
        # The contract's words, checked on the reference itself before it judges the report.
        for x, bucket in edge_values(m):
            assert contract.bucket_of(m, x) == bucket, (m, x)
        want = contract.by_qos(m, [metric(s, m) for s, _ in sent],
                               [(metric(s, m), score) for s, score in sent])
        contract.assert_close(rep["by_qos"][m], want, f"by_qos.{m}")
    # Each edge value is where the hand-made list says, one session each.
    bitrate = [b["sessions"] for b in rep["by_qos"]["avg_bitrate_kbps"]]
    assert bitrate == [2, 2, 2, 2, 1]  # 0, 1000 | 1000+, 2500 | 2500+, 5000 | 5000+, 8000 | 8000+
    startup = [b["sessions"] for b in rep["by_qos"]["startup_ms"]]
    assert startup == [2, 2, 2, 1]  # 0, 1000 | 1001, 2000 | 2001, 5000 | 5001
    height = [b["sessions"] for b in rep["by_qos"]["video_height"]]
    assert height == [2, 2, 2, 1]  # 0, 576 | 577, 720 | 721, 1080 | 1081
    ratio = [b["sessions"] for b in rep["by_qos"]["rebuffer_ratio"]]
    # 0 (twice) | 1e-9, 0.005 | 0.005+, 0.01 | 0.01+, 0.02 | 0.02+, 0.05 | 0.05+; the 23
    # sessions of the other three metrics have ratio 0 and sit in the first bucket too.
    assert ratio == [2 + 23, 2, 2, 2, 2, 1]


async def test_channel_filter_waits_for_the_session(api: Api) -> None:
    token = await api.enrol("stb-1")
    s = session_record(channel="NPO1")
    v = survey_record(session_id=s["id"], score=2)
    await api.upload(token, batch("stb-1", [v]))
    assert (await api.report(channel="NPO1"))["surveys"]["shown"] == 0
    assert (await api.report())["surveys"]["shown"] == 1
    assert (await api.report())["by_qos"]["rebuffer_ratio"][0]["n"] == 0
    await api.upload(token, batch("stb-1", [s]))
    rep = await api.report(channel="NPO1")
    assert rep["surveys"]["shown"] == 1 and rep["sessions"]["surveyed"] == 1
    assert rep["by_qos"]["rebuffer_ratio"][0]["n"] == 1


@pytest.mark.parametrize("query", [{"from": "yesterday"}, {"to": "2026-01-01"}, {"content_type": "radio"},
                                   {"regoin": "NL"}, {"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}])
async def test_bad_query_names_the_parameter(api: Api, query: dict[str, str]) -> None:
    resp = await api.client.get("/v1/report", params=query, headers=api.admin)
    body = await resp.json()
    assert resp.status == 400 and body["error"] == "bad_query"
    assert list(query)[-1] in body["detail"] or next(iter(query)) in body["detail"]
