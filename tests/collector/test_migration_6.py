"""Migration 6: a store of schema 5 (survey rows keeping their session's values but not
its video height) gains ``surveys.video_height``, copied from each survey's session: the
survey rows then hold what the join gives, heights included, on both backends."""

from __future__ import annotations

from typing import Any

from collector.settings import Settings
from collector.storage import make_storage
from collector.storage.migrations import LATEST, migrate_url

from .conftest import ADMIN, run_behind_the_collector
from .test_scale import dataset, store_shuffled
from .test_survey_session import JOINED, KEPT, _norm


async def _select(db_url: str, sql: str) -> list[tuple[Any, ...]]:
    st = make_storage(Settings(db=db_url, admin_token=ADMIN))
    await st.open()
    try:
        return [_norm(r) for r in await st._fetch(sql, [])]  # type: ignore[attr-defined]
    finally:
        await st.close()


async def test_schema_5_store_gains_the_video_height_on_its_survey_rows(db_url: str) -> None:
    await store_shuffled(db_url, dataset(81, 500), 82)
    await run_behind_the_collector(db_url, ["ALTER TABLE surveys DROP COLUMN video_height",
                                  "UPDATE nps_meta SET value = '5' WHERE key = 'schema_version'"])
    done = await migrate_url(db_url)
    assert (done.found, done.now, done.applied) == (5, LATEST, tuple(range(6, LATEST + 1)))
    kept = sorted(await _select(db_url, KEPT), key=repr)
    assert kept == sorted(await _select(db_url, JOINED), key=repr)
    heights = [r[-1] for r in kept]
    assert any(h is not None for h in heights) and any(h is None for h in heights)
