"""The at-risk ranking's two SQLite plans give the same list, and each is taken where it
should be.

SQLite averages the risks per box either walking ``sessions_box_window`` in box order
(a window covering at least ``BOX_ORDER_SHARE`` of the stored sessions' span, no batch
filter) or reading the window's sessions in time order and grouping them by sorting.
Both are exact: the lists must be equal, risks included, whatever the window and filter.
Migration 7 makes the index on a store of schema 6.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from collector import at_risk
from collector.model import Filters
from collector.settings import Settings
from collector.storage import at_risk as at_risk_sql
from collector.storage import make_storage
from collector.storage.migrations import LATEST, migrate_url
from protocol.timefmt import from_micros
from protocol.units import DAY_US

from .conftest import ADMIN, run_behind_the_collector
from .test_migrations import fresh_columns, indexes
from .test_scale import T0, session_row

DAYS = 10
#: Intercept, then rebuffer_pct, startup_s, bitrate_mbps, failed, no_start; the means put
#: in for a session without a frame or bitrate. Every term non-zero: all are in the SQL.
RANKING: at_risk_sql.Ranking = (-1.5, 0.6, 0.3, -0.2, 1.1, 0.7, 1.2, 4.5)


def sessions(seed: int, n: int = 1200, boxes: int = 60) -> list[Any]:
    rng = random.Random(seed)
    return [session_row(rng, started_us=T0 + rng.randrange(DAYS * DAY_US), box=f"stb-{rng.randrange(boxes):03d}")
            for _ in range(n)]


async def ranked_by_both_plans(url: str, window: Filters, monkeypatch: pytest.MonkeyPatch,
                               ) -> tuple[list[tuple[str, float]], list[tuple[str, float]], list[str]]:
    st = make_storage(Settings(db=url, admin_token=ADMIN))
    await st.open()
    try:
        fetch, style = st.sql_reader(large=True)
        seen: list[str] = []

        async def traced(sql: str, params: Sequence[Any]) -> list[Any]:
            seen.append(sql)
            return await fetch(sql, params)

        out = []
        for share in (0.0, 2.0):  # always box order where allowed; never
            monkeypatch.setattr(at_risk_sql, "BOX_ORDER_SHARE", share)
            out.append(await at_risk_sql.read_ranked_boxes(traced, style, window, RANKING, 1000))
        return out[0], out[1], seen
    finally:
        await st.close()


@pytest.fixture
async def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'plans.db'}"
    st = make_storage(Settings(db=url, admin_token=ADMIN))
    await st.open()
    try:
        rows = sessions(3)
        for i in range(0, len(rows), 100):
            assert sum(await st.ingest(rows[i:i + 100])) == len(rows[i:i + 100])
    finally:
        await st.close()
    return url


@pytest.mark.parametrize("window", [
    Filters(from_us=T0, to_us=T0 + DAYS * DAY_US),
    Filters(from_us=T0 + 3 * DAY_US + 12_345, to_us=T0 + 4 * DAY_US),
    Filters(from_us=T0 - DAY_US, to_us=T0 + DAY_US // 2),
    Filters(from_us=T0 + 2 * DAY_US, to_us=T0 + 9 * DAY_US, region="NL-ZH"),
    Filters(from_us=T0 + DAYS * DAY_US, to_us=T0 + (DAYS + 7) * DAY_US),  # no session
], ids=["all", "one day", "before the first", "region", "after the last"])
async def test_box_order_and_time_order_give_the_same_list(
        url: str, window: Filters, monkeypatch: pytest.MonkeyPatch) -> None:
    box_order, time_order, seen = await ranked_by_both_plans(url, window, monkeypatch)
    assert box_order == time_order
    ranked = [s for s in seen if s.startswith("WITH")]
    assert len(ranked) == 2
    assert "INDEXED BY sessions_box_window" not in ranked[1]
    # The box order only without a batch filter (the index carries no attributes) and
    # over stored sessions (a window past them finds nothing in time order at once).
    assert window.from_us is not None and window.to_us is not None
    over_sessions = window.from_us < T0 + DAYS * DAY_US and window.to_us > T0
    assert ("INDEXED BY sessions_box_window" in ranked[0]) == (window.region is None and over_sessions)
    if window.from_us == T0 and window.to_us == T0 + DAYS * DAY_US:
        assert len(box_order) == 60 and len({b for b, _ in box_order}) == 60


def test_the_plan_follows_the_windows_share_of_the_stored_span() -> None:
    span = (0, 999)  # 1,000 µs of sessions
    share = at_risk_sql.BOX_ORDER_SHARE
    wide = Filters(from_us=0, to_us=round(1000 * share))
    narrow = Filters(from_us=0, to_us=round(1000 * share) - 1)
    assert at_risk_sql._box_order(wide, span) and not at_risk_sql._box_order(narrow, span)
    # Only the part of the window over stored sessions counts.
    assert not at_risk_sql._box_order(Filters(from_us=-10**9, to_us=round(1000 * share) - 1), span)
    assert at_risk_sql._box_order(Filters(from_us=900, to_us=10**9), span)
    assert not at_risk_sql._box_order(Filters(from_us=0, to_us=10**9, model="X-200"), span)
    assert not at_risk_sql._box_order(Filters(from_us=0, to_us=10**9, firmware="4.2.1"), span)
    assert not at_risk_sql._box_order(Filters(from_us=0, to_us=10**9), (None, None))


async def test_migration_7_makes_the_box_index_and_the_list_is_unchanged(url: str, tmp_path: Path) -> None:
    async def answer() -> dict[str, Any]:
        st = make_storage(Settings(db=url, admin_token=ADMIN))
        await st.open()
        try:
            return await at_risk.compute_at_risk(st, to=from_micros(T0 + DAYS * DAY_US), window_days=7,
                                                 limit=1000, region=None, model=None, firmware=None)
        finally:
            await st.close()

    before = await answer()
    assert len(before["boxes"]) == 60
    # What schema 6 had: the plain box index.
    await run_behind_the_collector(url, [
        "DROP INDEX sessions_box_window", "CREATE INDEX sessions_box ON sessions (box_id)",
        "UPDATE nps_meta SET value = '6' WHERE key = 'schema_version'"])
    assert "sessions_box" in await indexes(url)
    done = await migrate_url(url)
    assert (done.found, done.now, done.applied) == (6, LATEST, (7,))
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    await fresh_columns(fresh)  # makes it
    assert await indexes(url) == await indexes(fresh)
    assert "sessions_box" not in await indexes(url)
    assert await answer() == before
