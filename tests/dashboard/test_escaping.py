"""Stored strings are escaped: HTML and script in channel names, box attributes and
filters show as text and never run (the CSP forbids inline script besides)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp

from tests.collector.conftest import batch, session_record, survey_record

from .conftest import Collector, enrol, login, upload

EVIL = ("</script><script>window.__xss=1</script><img src=x onerror=\"window.__xss=2\">"
        "<b id=injected>bold</b>'\"&amp;")


async def test_html_and_script_in_stored_strings_do_not_run(
        collector: Collector, http: aiohttp.ClientSession, page: Any) -> None:
    token = await enrol(http, collector, "stb-xss")
    started = datetime.now(UTC) - timedelta(hours=3)
    s = session_record(started=started, channel=EVIL, rebuffer_s=300.0, rebuffer_count=9,
                       watch_s=1200.0)
    v = survey_record(session_id=s["id"], shown=started + timedelta(minutes=21), score=1,
                      reason="buffering")
    box = {"region": EVIL + "r", "model": EVIL + "m", "firmware": EVIL + "f"}
    answer = await upload(http, collector, token, batch("stb-xss", [s, v], box=box))
    assert answer["accepted"] == 2

    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    await login(page, collector)
    # The call-back list shows the strings as text.
    cells = await page.locator("#detractors tbody tr").first.locator("td").all_inner_texts()
    assert cells[4] == EVIL
    assert cells[10] == f"{EVIL}r / {EVIL}m / {EVIL}f"
    # The same strings, reflected from the filter form into the page and its JSON.
    query = urlencode({"channel": EVIL, "region": EVIL + "r"})
    await page.goto(f"{collector.url}/dashboard?{query}")
    await page.wait_for_selector("body[data-charts=ready]")
    assert await page.input_value("#f-channel") == EVIL
    assert await page.input_value("#f-region") == EVIL + "r"
    data = await page.evaluate("() => JSON.parse(document.getElementById('dash-data').textContent)")
    assert data["filters"]["channel"] == EVIL
    assert data["report"]["surveys"]["answered"] == 1
    rows = await page.locator("#detractors tbody tr").count()
    assert rows == 1

    assert await page.evaluate("() => window.__xss") is None
    assert await page.locator("#injected").count() == 0
    assert await page.locator("img").count() == 0
    # Only the page's own script elements: Chart.js, dashboard.js, the JSON data of the page
    # and of "What quality costs".
    assert await page.locator("script").count() == 4
    # The at-risk window's form carries the filters back as text.
    assert await page.input_value('#risk-form input[name="region"]') == EVIL + "r"
    assert await page.input_value('#risk-form input[name="channel"]') == EVIL
    assert dialogs == []
    assert page.problems == []

    # The CSV of the call-back list keeps the text, and defuses spreadsheet formulas.
    href = await page.get_attribute("#detractors-csv", "href")
    resp = await page.request.get(collector.url + href)
    assert EVIL.replace('"', '""') in await resp.text()


async def test_pages_carry_a_strict_csp(collector: Collector, http: aiohttp.ClientSession) -> None:
    for path in ("/dashboard/login", "/dashboard"):
        async with http.get(collector.url + path, allow_redirects=False) as r:
            csp = r.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp
            assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
            assert r.headers["X-Content-Type-Options"] == "nosniff"
    async with http.get(collector.url + "/dashboard/static/chart.umd.min.js") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/javascript")
        assert b"Chart.js v4.6.1" in await r.read()
    for bad in ("../app.py", "..%2Fapp.py", "nope.js"):
        async with http.get(collector.url + "/dashboard/static/" + bad) as r:
            assert r.status == 404
