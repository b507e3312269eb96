"""The page does not wait on "What quality costs": ``/dashboard`` is served with a
placeholder, and ``/dashboard/part/costs`` (which the page's script fetches once the rest
is drawn; tests/dashboard/test_costs_browser.py checks what Chromium shows) gives the
sections and the figures ``/dashboard/api/impact`` gives."""

from __future__ import annotations

import asyncio
import html
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pytest

from collector.dashboard import views
from collector.dashboard.quality import metric_rows
from collector.model import Filters
from collector.storage import Storage
from tests.collector.conftest import Api, batch, session_record, survey_record
from tests.collector.test_scale import FILTERS, dataset, ingest_shuffled
from tests.report_from_rows import impact_rows

from .conftest import ADMIN as DASH_ADMIN
from .conftest import Collector
from .test_costs_browser import load_costs_fleet
from .test_data_api import login_client


async def _fleet(api: Api) -> None:
    now = datetime.now(UTC).replace(hour=12)
    for b in range(3):
        box = f"stb-part-{b}"
        token = await api.enrol(box)
        records: list[dict[str, Any]] = []
        for i in range(6):
            s = session_record(started=now - timedelta(days=i % 3, minutes=i), rebuffer_s=30.0 * b,
                               rebuffer_count=1 if b else 0)
            records += [s, survey_record(session_id=s["id"], shown=now - timedelta(days=i % 3),
                                         outcome="answered", score=9 - 3 * b)]
        status, _ = await api.upload(token, batch(box, records))
        assert status == 200


async def test_page_is_served_without_waiting_on_impact(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    await _fleet(api)
    base = str(api.client.make_url("")).rstrip("/")
    # unsafe: the jar must keep cookies of an IP-address host (127.0.0.1).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        await login_client(base, s)
        query = {"from_day": (datetime.now(UTC) - timedelta(days=6)).date().isoformat()}
        async with s.get(base + "/dashboard/part/costs", params=query) as r:
            assert r.status == 200
            part = await r.text()
        # The sections, with the figures the script draws.
        assert 'id="quality-costs"' in part and 'id="at-risk-table"' in part
        found = re.search(r'<script type="application/json" id="impact-data">(.*?)</script>', part, re.S)
        assert found is not None
        figures = orjson.loads(html.unescape(found.group(1)).replace("\\u003c", "<"))
        async with s.get(base + "/dashboard/api/impact", params=figures["filters"]) as r:
            assert r.status == 200
            assert figures == await r.json()
        assert figures["filters"]["from"].startswith(query["from_day"])

        # With the impact read never ending, the page is still served, with the placeholder
        # that names the part's query; the part itself waits.
        never = asyncio.Event()

        async def stuck(request: Any, filters: Filters) -> dict[str, Any]:
            await never.wait()
            raise AssertionError("unreachable")

        monkeypatch.setattr(views, "impact_data", stuck)
        async with s.get(base + "/dashboard", params=query, timeout=aiohttp.ClientTimeout(total=30)) as r:
            assert r.status == 200
            page = await r.text()
        assert 'id="costs-part"' in page and 'id="impact-data"' not in page
        assert 'id="quality-costs"' not in page and "chart-timeline" in page
        src = html.unescape(re.search(r'data-src="([^"]*)"', page).group(1))  # type: ignore[union-attr]
        assert src.startswith("/dashboard/part/costs?") and f"from_day={query['from_day']}" in src
        with pytest.raises(asyncio.TimeoutError):
            async with s.get(base + src, timeout=aiohttp.ClientTimeout(total=2)) as r:
                await r.text()


async def test_whatif_rows_from_the_estimators_read_are_the_joined_rows(store: Storage) -> None:
    """The what-if's values come from ``/v1/impact``'s own read of the survey rows: the
    same as from every survey joined to its session (:func:`impact_rows`), under filters."""
    rows = dataset(71, 600)
    await ingest_shuffled(store, rows, 72)
    for f in FILTERS:
        data = await store.impact_data(f)
        r = data.rows
        got = metric_rows(r.rebuffer_ratio.tolist(), r.startup_ms.tolist(), r.avg_bitrate_kbps.tolist())
        assert got == impact_rows(await store.survey_facts(f)), f
    assert len(got["startup_s"].values) > 0


async def test_chromium_draws_the_page_before_the_costs_part_arrives(
        collector: Collector, http: aiohttp.ClientSession, page: Any) -> None:
    """In Chromium: with the part's answer held back, the rest of the page is drawn and the
    placeholder shows; released, the sections replace it. A failing part is said so, and
    the rest of the page stays."""
    await load_costs_fleet(http, collector)
    held: list[Any] = []
    mode = {"fail": False}

    async def hold(route: Any) -> None:
        if mode["fail"]:
            await route.fulfill(status=500, body="boom")
        else:
            held.append(route)

    await page.route("**/dashboard/part/costs*", hold)
    await page.goto(collector.url + "/dashboard")
    await page.fill("#token", DASH_ADMIN)
    await page.click("button[type=submit]")
    await page.wait_for_url(collector.url + "/dashboard")
    await page.wait_for_selector("body[data-charts=main]")
    assert len(held) == 1
    assert await page.is_visible("#costs-loading") and await page.locator("#quality-costs").count() == 0
    # The rest is there meanwhile: the headline figures, the time line, the buckets.
    assert await page.locator("#chart-timeline").count() == 1
    assert await page.locator("#chart-nps-rebuffer_ratio").count() == 1
    await held[0].continue_()
    await page.wait_for_selector("body[data-charts=ready]")
    assert await page.locator("#costs-loading").count() == 0
    assert await page.is_visible("#quality-costs") and await page.is_visible("#at-risk-table")
    assert await page.locator("#chart-forest").count() == 1
    assert page.problems == []

    mode["fail"] = True
    await page.reload()
    await page.wait_for_selector("body[data-charts=ready]")
    assert "Could not load this part: the collector answered 500" in await page.inner_text("#impact-unavailable")
    assert await page.locator("#chart-timeline").count() == 1
