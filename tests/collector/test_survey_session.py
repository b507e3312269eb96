"""Schema 4: each survey row keeps its session's values (collector/storage/survey_session.py).

What is kept is checked against the join it replaces, done at read time over the rows the
store holds (``surveys LEFT JOIN sessions``), and against the rows sent: in either
arrival order, concurrently, after a deletion, a purge and a rebuild, on both backends.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from collector.model import Filters, Row, SessionRow, SurveyRow
from collector.numeric import np
from collector.storage import Storage
from collector.storage.impact_sql import read_impact_data
from collector.storage.survey_session import SESSION_VALUES
from protocol.units import DAY_US

from .test_scale import T0, dataset, ingest_shuffled, session_row, survey_row

#: Each survey's values as kept, and as the join gives them, by survey id.
KEPT = f"SELECT CAST(id AS TEXT), {', '.join(SESSION_VALUES)} FROM surveys"
JOINED = (f"SELECT CAST(v.id AS TEXT), {', '.join(f's.{c}' for c in SESSION_VALUES)} "
          "FROM surveys v LEFT JOIN sessions s ON s.id = v.session_id")


def _norm(r: Any) -> tuple[Any, ...]:
    # SQLite keeps failed as 0/1, PostgreSQL as a boolean.
    return tuple(int(x) if isinstance(x, bool) else x for x in r)


async def kept_and_joined(st: Storage) -> tuple[dict[str, tuple[Any, ...]], dict[str, tuple[Any, ...]]]:
    fetch: Callable[..., Any] = st._fetch  # type: ignore[attr-defined]
    kept = {r[0]: _norm(r[1:]) for r in await fetch(KEPT, [])}
    joined = {r[0]: _norm(r[1:]) for r in await fetch(JOINED, [])}
    return kept, joined


def expected(rows: list[Row], gone_sessions: set[str] = frozenset()) -> dict[str, tuple[Any, ...]]:  # type: ignore[assignment]
    """From the rows sent: each survey's session's values, or nulls where the session was
    not sent (or was deleted)."""
    sessions = {r.id: r for r in rows if isinstance(r, SessionRow) and r.id not in gone_sessions}
    out = {}
    for v in rows:
        if isinstance(v, SurveyRow):
            s = sessions.get(v.session_id) if v.session_id else None
            out[v.id] = _norm(getattr(s, c) if s else None for c in SESSION_VALUES)
    return out


async def check(st: Storage, want: dict[str, tuple[Any, ...]] | None = None) -> dict[str, tuple[Any, ...]]:
    kept, joined = await kept_and_joined(st)
    assert kept == joined
    if want is not None:
        assert kept == want
    return kept


async def test_kept_in_either_arrival_order(store: Storage) -> None:
    rows = dataset(21, 400)
    await ingest_shuffled(store, rows, 22)
    kept = await check(store, expected(rows))
    # The data set holds both: surveys whose session is known and ones whose is not.
    assert any(v[2] is not None for v in kept.values()) and any(v[2] is None for v in kept.values())


async def test_survey_first_then_session_and_session_first_then_survey(store: Storage) -> None:
    rng = random.Random(31)
    s1, s2, s3 = (session_row(rng, started_us=T0 + i * 10**9) for i in range(3))
    v1 = survey_row(rng, s1, shown_us=T0 + DAY_US)
    v1b = survey_row(rng, s1, shown_us=T0 + DAY_US + 1)  # a second survey of one session
    v2 = survey_row(rng, s2, shown_us=T0 + DAY_US + 2)
    v3 = survey_row(rng, s3, shown_us=T0 + DAY_US + 3)
    # Survey first, session in a later group; session first, survey later; both in one group.
    assert await store.ingest([v1]) == [True]
    await check(store, expected([v1]))
    assert await store.ingest([s2]) == [True]
    assert await store.ingest([s1, v1b]) == [True, True]
    assert await store.ingest([v2]) == [True]
    assert await store.ingest([v3, s3]) == [True, True]
    rows: list[Row] = [s1, s2, s3, v1, v1b, v2, v3]
    kept = await check(store, expected(rows))
    assert kept[v1.id][SESSION_VALUES.index("rebuffer_ratio")] == s1.rebuffer_ratio
    assert kept[v1.id][SESSION_VALUES.index("channel")] == s1.channel


async def test_cleared_by_deletion_and_purge_recomputed_by_rebuild(store: Storage) -> None:
    rows = dataset(41, 300)
    # Surveys of box stb-1 whose session belongs to stb-2: deleting stb-2 keeps them, but
    # their session goes.
    other = [r._replace(box_id="stb-2") if isinstance(r, SessionRow) and i % 3 == 0 else r
             for i, r in enumerate(dataset(42, 200))]
    await ingest_shuffled(store, rows + other, 43)
    await check(store, expected(rows + other))
    await store.delete_box("stb-2")
    left = [r for r in rows + other if r.box_id != "stb-2"]
    gone = {r.id for r in rows + other if isinstance(r, SessionRow) and r.box_id == "stb-2"}
    kept = await check(store, expected(left, gone))
    assert any(v[2] is None for i, v in kept.items()
               if any(isinstance(r, SurveyRow) and r.id == i and r.session_id in gone for r in left))
    cutoff = T0 + 2 * DAY_US + 12345
    await store.purge_before(cutoff)
    left = [r for r in left if (r.started_us if isinstance(r, SessionRow) else r.shown_us) >= cutoff]
    gone |= {r.id for r in rows + other if isinstance(r, SessionRow) and r.started_us < cutoff}
    want = expected(left, gone)
    await check(store, want)
    # Surveys kept whose session was purged: the purge must have cleared them.
    assert any(isinstance(r, SurveyRow) and r.session_id in gone for r in left)
    # A rebuild recomputes them from the sessions, whatever they held.
    if store.__class__.__name__ == "SQLiteStorage":
        write: Callable[..., Any] = store._write  # type: ignore[attr-defined]
        await write("UPDATE surveys SET rebuffer_ratio = 0.5, channel = 'x', failed = 1", ())
    else:
        async with store._pool.acquire() as conn:  # type: ignore[attr-defined]
            await conn.execute("UPDATE surveys SET rebuffer_ratio = 0.5, channel = 'x', failed = true")
    kept, _ = await kept_and_joined(store)
    assert kept != want
    await store.rebuild_aggregates()
    await check(store, want)


async def test_impact_read_gives_back_every_segment_value(store: Storage) -> None:
    """The read brings each segment column as a JSON array: any text, the empty one and
    null among them, comes back as stored, row by row."""
    rng = random.Random(51)
    odd = [None, "", "-", "3:x", "1:", "NL-NH", "a-b:c", "ü 12", "-1:-"]
    rows: list[Row] = []
    want = []
    for i in range(60):
        region, firmware = odd[i % len(odd)], odd[(i * 5 + 2) % len(odd)]
        s = session_row(rng, started_us=T0 + i * 10**9, box=f"box-{i % 7}")._replace(
            content_type=odd[(i * 7 + 1) % len(odd)])
        v = survey_row(rng, s, shown_us=T0 + DAY_US + i)._replace(
            outcome="answered", score=i % 11, answered_us=T0 + DAY_US + i + 1,
            region=region, model=odd[(i * 3) % len(odd)], firmware=firmware)
        if s.startup_ms is not None and s.avg_bitrate_kbps is None:
            continue  # not a row of the estimator (contract section 6)
        rows += [s, v]
        want.append((v.box_id, v.region, v.model, v.firmware, s.content_type, float(v.score),
                     s.rebuffer_ratio))
    assert await store.ingest(rows) == [True] * len(rows)
    data = (await store.impact_data(Filters())).rows
    got = [(data.box.levels[data.box.codes[i]],
            *(f.levels[f.codes[i]] for f in data.segments),
            float(data.score[i]), float(data.rebuffer_ratio[i])) for i in range(len(data))]
    assert sorted(got, key=repr) == sorted(want, key=repr)


async def test_impact_read_in_parts_is_the_read_at_once(store: Storage) -> None:
    """The read is cut into parts by the time a survey was shown, read at once and joined:
    whatever the number of parts (more parts than surveys among them), the rows, their
    order, the numbering and the strata are those of one read of the whole range, and
    each survey shown is counted once (checked against the rows sent)."""
    rows = dataset(53, 900)
    assert await store.ingest(rows) == [True] * len(rows)
    fetch, style = store.sql_reader()  # type: ignore[attr-defined]
    sessions = {r.id: r for r in rows if isinstance(r, SessionRow)}
    shown = sorted(v.shown_us for v in rows if isinstance(v, SurveyRow))
    cases = [Filters(), Filters(from_us=shown[40], to_us=shown[250]),
             Filters(from_us=shown[7], to_us=shown[7] + 1), Filters(region="NL-ZH"),
             Filters(from_us=shown[-1] + 1)]
    for f in cases:
        whole = await read_impact_data(fetch, f, style, parts=1)
        # An independent count of what the read must hold, from the rows sent.
        in_range = [v for v in rows if isinstance(v, SurveyRow)
                    and (f.from_us is None or v.shown_us >= f.from_us)
                    and (f.to_us is None or v.shown_us < f.to_us)
                    and (f.region is None or v.region == f.region)]
        assert sum(s.shown for s in whole.strata) == len(in_range), f
        answered = [v for v in in_range if v.outcome == "answered" and v.score is not None
                    and v.session_id in sessions]
        assert len(whole.rows) == len([v for v in answered if sessions[v.session_id].startup_ms is None
                                       or sessions[v.session_id].avg_bitrate_kbps is not None]), f
        for parts in (2, 3, 7, 1000):
            got = await read_impact_data(fetch, f, style, parts=parts)
            assert got.strata == whole.strata, (f, parts)
            for a, b in ((got.rows.box, whole.rows.box), *zip(got.rows.segments, whole.rows.segments, strict=True)):
                assert list(a.levels) == list(b.levels) and a.codes.tolist() == b.codes.tolist(), (f, parts)
            for name in ("score", "rebuffer_ratio", "startup_ms", "avg_bitrate_kbps", "failed"):
                assert np.array_equal(getattr(got.rows, name), getattr(whole.rows, name), equal_nan=True), (f, parts, name)
