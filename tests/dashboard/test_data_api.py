"""The dashboard's data API: response rate by QoS bucket counted by hand, the time line
adding up to the report, and sessions shared by collector instances on one database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema

from collector.appkeys import STORE
from collector.dashboard.analysis import qos_responses, unanswered_counts
from collector.dashboard.openapi import openapi_document
from collector.dashboard.views import report_query
from collector.model import Filters, SurveyFact
from tests import reference as contract
from tests.collector.conftest import ADMIN, Api, batch, session_record, survey_record
from tests.report_from_rows import response_counts

from .conftest import ADMIN as DASH_ADMIN
from .conftest import start_collector, stop_collector


def count_responses(facts: list[SurveyFact]) -> dict[str, list[tuple[int, int]]]:
    """Per metric and contract bucket: (shown, answered) among ``facts`` whose session is
    known and has the metric, counted with tests/reference.py's buckets."""
    out: dict[str, list[tuple[int, int]]] = {}
    for m, edges in contract.BUCKET_EDGES.items():
        counts = [[0, 0] for _ in edges]
        for f in facts:
            idx = contract.bucket_of(m, f.value(m)) if f.has_session else None
            if idx is not None:
                counts[idx][0] += 1
                counts[idx][1] += f.outcome == "answered"
        out[m] = [(shown, answered) for shown, answered in counts]
    return out


async def login_client(base: str, s: aiohttp.ClientSession, token: str = ADMIN) -> None:
    async with s.get(base + "/dashboard/login") as r:
        html = await r.text()
    csrf = html.split('name="csrf" value="')[1].split('"')[0]
    async with s.post(base + "/dashboard/login", data={"csrf": csrf, "token": token},
                      allow_redirects=False) as r:
        assert r.status == 303, await r.text()


async def test_response_rate_by_bucket_and_time_line(api: Api) -> None:
    now = datetime.now(UTC).replace(hour=12)
    token = await api.enrol("stb-rr")
    records: list[dict[str, Any]] = []
    expected = {i: [0, 0] for i in range(len(contract.BUCKET_EDGES["rebuffer_ratio"]))}  # shown, answered
    plan = [(0.0, "answered"), (0.0, "answered"), (0.0, "dismissed"), (6.0, "answered"),
            (6.0, "timeout"), (90.0, "dismissed"), (90.0, "timeout"), (90.0, "answered")]
    for day in range(3):
        for rebuffer_s, outcome in plan:
            started = now - timedelta(days=day, minutes=len(records))
            s = session_record(started=started, watch_s=1000.0, rebuffer_s=rebuffer_s,
                               rebuffer_count=1 if rebuffer_s else 0)
            v = survey_record(session_id=s["id"], shown=started + timedelta(minutes=17),
                              outcome=outcome, score=3 if rebuffer_s > 50 else 9)
            records += [s, v]
            idx = contract.bucket_of("rebuffer_ratio", rebuffer_s / 1000.0)
            assert idx is not None
            expected[idx][0] += 1
            expected[idx][1] += outcome == "answered"
    status, answer = await api.upload(token, batch("stb-rr", records))
    assert status == 200 and answer["accepted"] == len(records)

    # unsafe: the jar must keep cookies of an IP-address host (127.0.0.1).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        base = str(api.client.make_url("")).rstrip("/")
        await login_client(base, s)
        async with s.get(base + "/dashboard/api/data", params={"granularity": "day"}) as r:
            assert r.status == 200
            data = await r.json()
        async with s.get(base + "/dashboard/api/data", params={"granularity": "fortnight"}) as r:
            assert r.status == 400 and (await r.json())["error"] == "bad_query"
    # Scripts may use the admin token instead of a session; a box token may not.
    resp = await api.client.get("/dashboard/api/data", params={"granularity": "day"},
                                headers=api.admin)
    assert resp.status == 200 and (await resp.json())["report"] == data["report"]
    resp = await api.client.get("/dashboard/detractors.csv", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 403
    resp = await api.client.get("/dashboard/detractors.csv", headers={"Authorization": "Bearer nope"})
    assert resp.status == 401
    schema = {"$ref": "#/components/schemas/DashboardData", "components": openapi_document()["components"]}
    jsonschema.Draft202012Validator(schema).validate(data)
    rr = data["response_by_qos"]["rebuffer_ratio"]
    for i, (shown, answered) in expected.items():
        assert (rr[i]["shown"], rr[i]["answered"]) == (shown, answered), i
        assert rr[i]["response_rate"] == (answered / shown if shown else None)
    # The grouped query and the count over survey facts agree, with and without filters.
    store = api.client.server.app[STORE]
    for f in (Filters(), Filters(channel="NPO1", region="none-such"), Filters(content_type="live")):
        assert await response_counts(store, f) == count_responses(await store.survey_facts(f))
        # The page's way: answered from the report's aggregates, the rest joined.
        report_f = await api.report(**report_query(f))
        assert qos_responses(report_f, await unanswered_counts(store, f)) == await response_counts(store, f)
    # Bad streams answer less here: 1 in 3 against 2 in 3.
    assert rr[5]["response_rate"] < rr[0]["response_rate"]
    report = data["report"]
    assert report == await api.report(**data["filters"])
    line = data["timeline"]
    assert len(line) == 28
    assert sum(p["answered"] for p in line) == report["surveys"]["answered"] == 12
    assert sum(p["shown"] for p in line) == report["surveys"]["shown"] == 24
    assert [p["answered"] for p in line[-3:]] == [4, 4, 4]
    assert line[-1]["nps"] == 100.0 * (3 - 1) / 4
    # Each point, and the previous period compared against, is what /v1/report answers
    # for its period (the time line reads the survey counts alone, not whole reports).
    keys = ("shown", "answered", "promoters", "detractors", "nps", "nps_ci95", "response_rate")
    previous = data["comparison"]["previous_period"]
    for point, (lo, hi) in [*((p, (p["from"], p["to"])) for p in line[-4:]),
                            (data["comparison"]["previous"], (previous["from"], previous["to"]))]:
        r = await api.report(**{**data["filters"], "from": lo, "to": hi})
        want = {"shown": r["surveys"]["shown"], "answered": r["surveys"]["answered"],
                "promoters": r["promoters"], "detractors": r["detractors"], "nps": r["nps"],
                "nps_ci95": r["nps_ci95"], "response_rate": r["surveys"]["response_rate"]}
        assert {k: point[k] for k in keys} == want, (lo, hi)
    assert data["comparison"]["current"]["answered"] == 12


async def test_sessions_hold_across_instances(tmp_path: Path) -> None:
    """Two collectors on one database: a login on one is valid on the other, and a logout
    on either ends it on both."""
    one = start_collector(tmp_path)
    two = start_collector(tmp_path)
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            await login_client(one.url, s, DASH_ADMIN)
            (cookie,) = [c for c in s.cookie_jar if c.key == "nps_dash"]
            jar = {"nps_dash": cookie.value}
        async with aiohttp.ClientSession(cookies=jar) as s2:
            async with s2.get(two.url + "/dashboard/api/data") as r:
                assert r.status == 200
            async with s2.get(two.url + "/dashboard") as r:
                page = await r.text()
            csrf = page.split('name="csrf" value="')[1].split('"')[0]
            async with s2.post(two.url + "/dashboard/logout", data={"csrf": csrf},
                               allow_redirects=False) as r:
                assert r.status == 303
        async with aiohttp.ClientSession(cookies=jar) as s3:
            for c in (one, two):
                async with s3.get(c.url + "/dashboard/api/data") as r:
                    assert r.status == 401
    finally:
        stop_collector(one)
        stop_collector(two)
