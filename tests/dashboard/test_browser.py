"""The dashboard in a real headless Chromium against a real collector process."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from collector.metrics import NAMES as METRICS
from tests.collector.conftest import batch, session_record, survey_record

from .conftest import (
    CHANNELS,
    REGIONS,
    SCREENSHOTS,
    Collector,
    enrol,
    load_fleet,
    login,
    report,
    upload,
)


def fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f}"


async def page_range(page: Any) -> dict[str, str]:
    """The exact report query the page shows figures for (embedded in the page)."""
    data: dict[str, Any] = await page.evaluate(
        "() => JSON.parse(document.getElementById('dash-data').textContent)")
    filters: dict[str, str] = data["filters"]
    return filters


async def check_against_report(page: Any, http: aiohttp.ClientSession, c: Collector) -> dict[str, Any]:
    """Every figure the page prints equals /v1/report's for the same query."""
    query = await page_range(page)
    rep = await report(http, c, **query)
    assert await page.inner_text("#kpi-nps") == fmt(rep["nps"])
    lo, hi = rep["nps_ci95"]
    assert await page.inner_text("#kpi-ci") == f"{lo:.1f} to {hi:.1f}"
    assert int(await page.inner_text("#kpi-answered")) == rep["surveys"]["answered"]
    assert int(await page.inner_text("#kpi-shown")) == rep["surveys"]["shown"]
    assert int(await page.inner_text("#kpi-sessions")) == rep["sessions"]["count"]
    assert int(await page.inner_text("#kpi-promoters")) == rep["promoters"]
    assert int(await page.inner_text("#kpi-detractors")) == rep["detractors"]
    assert int(await page.inner_text("#kpi-failed")) == rep["sessions"]["failed"]
    assert int(await page.inner_text("#kpi-exited")) == rep["sessions"]["exited_before_start"]
    assert int(await page.inner_text("#kpi-start-failures")) == rep["sessions"]["start_failures"]
    rr = rep["surveys"]["response_rate"]
    assert await page.inner_text("#kpi-response-rate") == f"{100 * rr:.1f} %"
    for m in METRICS:
        for i, bucket in enumerate(rep["by_qos"][m]):
            row = f'tr[data-metric="{m}"][data-bucket="{i}"]'
            assert await page.inner_text(f"{row} td.nps") == fmt(bucket["nps"]), (m, i)
            assert int(await page.inner_text(f"{row} td.n")) == bucket["n"], (m, i)
    for reason, n in rep["reasons"].items():
        assert int(await page.inner_text(f'tr[data-reason="{reason}"] td')) == n
    return rep


async def test_login_filter_and_figures_match_the_report(
        collector: Collector, http: aiohttp.ClientSession, page: Any) -> None:
    await load_fleet(http, collector)
    await page.goto(collector.url + "/dashboard")
    assert page.url.endswith("/dashboard/login")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "dashboard-login.png"))
    await login(page, collector)
    whole = await check_against_report(page, http, collector)
    # The filter fields suggest the values seen so far.
    options = page.locator("#dl-region option")
    assert [await options.nth(i).get_attribute("value") for i in range(await options.count())] \
        == sorted(REGIONS)
    assert await page.locator("#dl-channel option").count() == len(CHANNELS)
    assert await page.locator("#dl-firmware option").count() == 3
    assert whole["surveys"]["answered"] > 100
    # The page's charts are Chart.js canvases, all drawn; nothing broke the CSP.
    # 9, and the forest plot and the recoverable points of "What quality costs".
    # Two per QoS metric (rebuffer ratio, bitrate, startup, video height): 8 of the 13.
    assert await page.locator("canvas").count() == 13
    assert page.problems == []
    # Bad streams answer less and score lower: the response-rate table shows it.
    rr_rows = await page.locator(
        'tr[data-metric="rebuffer_ratio"]:not([data-bucket="unknown"]) td.rr').all_inner_texts()
    assert rr_rows[0] != "—" and rr_rows[-1] != "—"
    await page.screenshot(path=str(SCREENSHOTS / "dashboard-overview.png"), full_page=True)
    await page.screenshot(path=str(SCREENSHOTS / "dashboard-top.png"))
    await page.locator("#qos-rebuffer_ratio").screenshot(path=str(SCREENSHOTS / "dashboard-qos.png"))
    await page.locator("#close-the-loop").screenshot(path=str(SCREENSHOTS / "dashboard-call-back.png"))

    # Filter by region and content type through the form.
    await page.fill("#f-region", "NL-ZH")
    await page.select_option("#f-content_type", "live")
    await page.select_option("#f-granularity", "week")
    await page.click("#apply")
    await page.wait_for_selector("body[data-charts=ready]")
    query = await page_range(page)
    assert query["region"] == "NL-ZH" and query["content_type"] == "live"
    filtered = await check_against_report(page, http, collector)
    assert 0 < filtered["surveys"]["answered"] < whole["surveys"]["answered"]
    assert await page.input_value("#f-region") == "NL-ZH"
    await page.screenshot(path=str(SCREENSHOTS / "dashboard-filtered.png"), full_page=True)

    # A narrower period and a model: still the report's figures.
    today = datetime.now(UTC).date()
    await page.fill("#f-region", "")
    await page.select_option("#f-content_type", "")
    await page.fill("#f-from_day", (today - timedelta(days=6)).isoformat())
    await page.fill("#f-to_day", today.isoformat())
    await page.fill("#f-model", "X-300")
    await page.click("#apply")
    await page.wait_for_selector("body[data-charts=ready]")
    query = await page_range(page)
    assert query["from"] == f"{today - timedelta(days=6)}T00:00:00Z"
    assert query["to"] == f"{today + timedelta(days=1)}T00:00:00Z"
    assert query["model"] == "X-300"
    await check_against_report(page, http, collector)
    assert page.problems == []
    # Works with no internet: every script, style and font came from the collector.
    assert page.requests and all(u.startswith((collector.url + "/", "data:")) for u in page.requests)


async def test_comparison_and_call_back_list(
        collector: Collector, http: aiohttp.ClientSession, page: Any) -> None:
    """A period with far worse answers than the one before is a significant fall; a
    period like the one before is shown as not significant. The call-back list holds
    the detractors after bad sessions, newest first, and its CSV matches."""
    now = datetime.now(UTC)
    token = await enrol(http, collector, "stb-cmp")
    records: list[dict[str, Any]] = []
    bad_detractors: list[tuple[datetime, str]] = []
    for i in range(60):
        # previous 28 days: mostly promoters; this period: mostly detractors
        for days_back, score in ((40, 10 if i % 6 else 3), (10, 2 if i % 3 else 9)):
            started = now - timedelta(days=days_back, minutes=i * 7)
            bad = days_back == 10 and i % 2 == 0
            s = session_record(started=started, rebuffer_s=120.0 if bad else 0.0,
                               rebuffer_count=4 if bad else 0, watch_s=1200.0)
            v = survey_record(session_id=s["id"], shown=started + timedelta(minutes=21),
                              score=score, reason="buffering" if bad else "content")
            records += [s, v]
            if bad and score <= 6:
                bad_detractors.append((started + timedelta(minutes=21), v["id"]))
    await upload(http, collector, token, batch("stb-cmp", records, box={"region": "NL-FR"}))
    await login(page, collector)
    verdict = await page.inner_text("#cmp-verdict")
    assert "significant fall" in verdict, verdict
    rows = page.locator("#detractors tbody tr")
    assert await rows.count() == min(50, len(bad_detractors))
    first = await rows.nth(0).locator("td").all_inner_texts()
    assert first[1] == "stb-cmp" and first[3] == "Buffering"
    await page.locator(".kpis").screenshot(path=str(SCREENSHOTS / "dashboard-comparison.png"))

    # The CSV through the page's own link (the browser's session cookie).
    href = await page.get_attribute("#detractors-csv", "href")
    resp = await page.request.get(collector.url + href)
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(await resp.text())))
    expected = [sid for _, sid in sorted(bad_detractors, reverse=True)]
    assert [r["survey_id"] for r in table] == expected
    assert all(int(r["score"]) <= 6 and float(r["rebuffer_ratio"]) > 0.02 for r in table)

    # Last 7 days against the 7 before: both alike, so not significant.
    today = now.date()
    await page.fill("#f-from_day", (today - timedelta(days=6)).isoformat())
    await page.fill("#f-to_day", today.isoformat())
    await page.click("#apply")
    await page.wait_for_selector("body[data-charts=ready]")
    verdict = await page.inner_text("#cmp-verdict")
    assert "not enough answers" in verdict or "no significant change" in verdict
    assert page.problems == []


async def test_logout_csrf_and_cookie(collector: Collector, http: aiohttp.ClientSession,
                                      page: Any) -> None:
    await login(page, collector)
    cookies = await page.context.cookies()
    (cookie,) = [k for k in cookies if k["name"] == "nps_dash"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/dashboard"
    assert cookie["secure"] is False  # plain HTTP here; Secure behind TLS (unit-tested)
    # The page's script cannot read the cookie.
    assert "nps_dash" not in await page.evaluate("() => document.cookie")
    value = cookie["value"]

    # A forged cross-site logout (right cookie, no CSRF token, foreign Origin) is refused.
    jar = {"nps_dash": value}
    async with aiohttp.ClientSession(cookies=jar) as s:
        async with s.post(collector.url + "/dashboard/logout", data={"csrf": "x"},
                          headers={"Origin": "https://evil.example"}, allow_redirects=False) as r:
            assert r.status == 403
        # The data API answers with the cookie, 401 without.
        async with s.get(collector.url + "/dashboard/api/data") as r:
            assert r.status == 200
            assert "report" in await r.json()
    async with http.get(collector.url + "/dashboard/api/data") as r:
        assert r.status == 401
        assert (await r.json())["error"] == "unauthorized"
    # A login from another origin is refused even with the right token.
    async with http.get(collector.url + "/dashboard/login") as r:
        html = await r.text()
    csrf = html.split('name="csrf" value="')[1].split('"')[0]
    async with http.post(collector.url + "/dashboard/login", data={"csrf": csrf, "token": "x"},
                         headers={"Origin": "https://evil.example"}, allow_redirects=False) as r:
        assert r.status == 403

    await page.click("#logout")
    await page.wait_for_url(collector.url + "/dashboard/login")
    assert not [k for k in await page.context.cookies() if k["name"] == "nps_dash"]
    await page.goto(collector.url + "/dashboard")
    assert page.url.endswith("/dashboard/login")
    # The old cookie stays dead after logout (kept in the store, for every instance).
    async with aiohttp.ClientSession(cookies=jar) as s, \
            s.get(collector.url + "/dashboard/api/data") as r:
        assert r.status == 401

    # A wrong token shows the form again.
    await page.fill("#token", "not-the-token")
    await page.click("button[type=submit]")
    assert "not the admin token" in await page.inner_text("p.error")
