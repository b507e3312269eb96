"""The aggregate tables, row by row, against a reference computed here from the stored
raw rows: the write path (``collector/storage/aggregate_sql.py`` driven by
``store_logic.store_new``), the rebuilds and the deletions, on both backends.

``test_scale`` compares incremental aggregates with rebuilt ones (the same module's SQL
twice) and the report with the contract; here every row of ``agg_sessions``,
``agg_surveys`` and ``agg_bins`` is compared with what the aggregates module's docstring
says it holds, counted in Python, naively, from the records the store holds (buckets from
``tests/reference.py``; the fine bin and position of a session are its stored columns,
inputs here like its score). Fast enough for mutation testing (``scripts/mutation``).

The stores build their write statements once, at import; mutation testing forks its
mutants after the import, so a mutant of those builders would never be live in a store.
The ``live_store`` fixture builds them again when the test runs (the same text, unless a
mutant changes it).
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pytest

from collector.fine_bins import FINE_EDGES, metric_columns
from collector.metrics import METRICS
from collector.model import Row, SessionRow, SurveyRow
from collector.storage import Storage
from collector.storage import postgres as pg_store
from collector.storage import sqlite as sqlite_store
from collector.storage import store_logic as logic
from collector.storage.aggregate_sql import day_ranges, fold_statements, rebuild_params
from collector.storage.aggregates import BIN_VEC, DELTA, SESSION_VEC, SURVEY_VEC
from collector.storage.sqlite_writer import transaction
from protocol import REASONS
from protocol.units import DAY_US, HOUR_US
from tests import reference as contract
from tests.collector.test_scale import T0, session_row, survey_row

SEGMENT = ("region", "model", "firmware", "channel", "content_type")
#: The levels as the aggregates module's docstring gives them: (lvl, by hour, kept
#: segment columns). 0 the whole segment by day; 1 the rollup; 2 to 6 one column each;
#: 11 to 16 levels 1 to 6 by hour (no detail by hour).
LEVELS = [(0, False, SEGMENT), (1, False, ())] + \
    [(2 + i, False, (c,)) for i, c in enumerate(SEGMENT)] + \
    [(11, True, ())] + [(12 + i, True, (c,)) for i, c in enumerate(SEGMENT)]

Key = tuple[Any, ...]
Tables = dict[str, dict[Key, dict[str, int]]]


@pytest.fixture
def live_statements(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stores' write statements built now, not at import (see above)."""
    for module, dialect in ((sqlite_store, "sqlite"), (pg_store, "postgresql")):
        monkeypatch.setattr(module, "_GROUP_STATEMENTS", module.DIALECT.group_statements())
        monkeypatch.setattr(module, "_FOLD", tuple(fold_statements(dialect)))


@pytest.fixture
def live_store(live_statements: None, store: Storage) -> Storage:
    """The suite's open store (``conftest.store``) writing with :func:`live_statements`."""
    return store


# -- the reference ------------------------------------------------------------------------------

def _keys(t_us: int, seg: Sequence[str]) -> Iterable[Key]:
    """Every (lvl, day or hour, segment) a record at ``t_us`` with segment ``seg`` counts
    under."""
    for lvl, hourly, kept in LEVELS:
        unit = HOUR_US if hourly else DAY_US
        yield (lvl, t_us // unit, *(v if c in kept else "" for c, v in zip(SEGMENT, seg, strict=True)))


def reference_tables(rows: Sequence[Row]) -> Tables:
    """The three aggregate tables, without all-zero rows, from the records held."""
    sessions = {r.id: r for r in rows if isinstance(r, SessionRow)}
    surveys = [r for r in rows if isinstance(r, SurveyRow)]
    with_survey = {v.session_id for v in surveys}
    out: Tables = {t: defaultdict(lambda: defaultdict(int)) for t in ("agg_sessions", "agg_surveys", "agg_bins")}
    for s in sessions.values():
        add = {"n": 1, "surveyed": int(s.id in with_survey), "failed": int(s.failed),
               "exited_before_start": int(s.startup_ms is None and not s.failed),
               "start_failures": int(s.startup_ms is None and s.failed)}
        for m in METRICS:
            b = contract.bucket_of(m.name, getattr(s, m.name))
            if b is not None:
                add[m.count_columns[b]] = 1
        seg = [getattr(s, c) or "" for c in SEGMENT]
        for key in _keys(s.started_us, seg):
            for c, n in add.items():
                out["agg_sessions"][key][c] += n
    for v in surveys:
        s_of = sessions.get(v.session_id or "")
        seg = [v.region or "", v.model or "", v.firmware or "",
               (s_of.channel or "") if s_of else "", (s_of.content_type or "") if s_of else ""]
        scored = v.outcome == "answered" and v.score is not None
        add = {"shown": 1, v.outcome: 1}
        if scored:
            add[f"h{v.score}"] = 1
            if v.reason is not None:
                add[f"r_{v.reason}"] = 1
        for key in _keys(v.shown_us, seg):
            for c, n in add.items():
                out["agg_surveys"][key][c] += n
        if not (scored and s_of):
            continue
        for metric_id, m in enumerate(METRICS):
            fine = getattr(s_of, m.fine_column)
            if fine is None:
                continue
            pos = getattr(s_of, m.pos_column) or 0
            for key in _keys(v.shown_us, seg):
                vec = out["agg_bins"][(*key, metric_id, fine)]
                vec[f"s{v.score}"] += 1
                vec[f"t{v.score}"] += pos
                vec["q"] += pos * pos
                vec["pmin"] = min(vec.get("pmin", 10**9), pos)
                vec["pmax"] = max(vec.get("pmax", -1), pos)
    return {t: {k: _nonzero(t, vec) for k, vec in rows_.items() if any(vec.values())}
            for t, rows_ in out.items()}


def _nonzero(table: str, vec: dict[str, int]) -> dict[str, int]:
    """A row's columns that are not zero (and a bin's least and greatest position)."""
    return {c: x for c, x in vec.items() if x or (table == "agg_bins" and c in ("pmin", "pmax"))}


async def stored_tables(st: Storage) -> Tables:
    """The store's aggregate tables, without all-zero rows, each row's non-zero columns,
    once the write groups' deltas are folded in (and the delta tables left empty)."""
    fetch: Callable[..., Any] = st._fetch  # type: ignore[attr-defined]
    await st.fold_aggregates()
    for delta in DELTA.values():
        assert (await fetch(f"SELECT count(*) FROM {delta}", []))[0][0] == 0, delta
    out: Tables = {}
    for table, n_key, vec in (("agg_sessions", 7, SESSION_VEC), ("agg_surveys", 7, SURVEY_VEC),
                              ("agg_bins", 9, BIN_VEC)):
        key = ["lvl", "day", *SEGMENT, *(("metric", "bin") if table == "agg_bins" else ())]
        rows = await fetch(f"SELECT {', '.join([*key, *vec])} FROM {table}", [])
        got: dict[Key, dict[str, int]] = {}
        for r in rows:
            k = tuple(r[:n_key])
            assert k not in got, (table, k)
            counts = {c: int(x) for c, x in zip(vec, r[n_key:], strict=True)}
            if table == "agg_bins" or any(counts.values()):
                got[k] = _nonzero(table, counts)
        out[table] = got
    return out


def _diff(got: Tables, want: Tables) -> list[Any]:
    out: list[Any] = []
    for t in want:
        for k in sorted(set(got[t]) | set(want[t]), key=repr):
            if got[t].get(k) != want[t].get(k):
                out.append((t, k, got[t].get(k), want[t].get(k)))
    return out[:5]


async def check(st: Storage, rows: Sequence[Row]) -> None:
    """The store holds these records' aggregates and surveyed flags, and nothing else."""
    unique = list({r.id: r for r in rows}.values())
    want = reference_tables(unique)
    got = await stored_tables(st)
    assert got == want, _diff(got, want)
    fetch: Callable[..., Any] = st._fetch  # type: ignore[attr-defined]
    flags = {str(r[0]): bool(r[1]) for r in await fetch("SELECT id, surveyed FROM sessions", [])}
    with_survey = {r.session_id for r in unique if isinstance(r, SurveyRow)}
    assert flags == {r.id: r.id in with_survey for r in unique if isinstance(r, SessionRow)}


# -- the data -------------------------------------------------------------------------------------

def records(seed: int, n: int) -> list[Row]:
    """Sessions over five days and every segment column (nulls too), a third surveyed,
    some twice, every outcome and reason; surveys whose session never comes; a few records
    before 1970 and a survey alone on a day no session has."""
    rng = random.Random(seed)
    out: list[Row] = []
    for i in range(n):
        start = T0 + rng.randrange(5 * DAY_US) if i % 40 else -3 * DAY_US - rng.randrange(DAY_US)
        s = session_row(rng, started_us=start, box=rng.choice(["stb-1", "stb-2"]))
        s = s._replace(firmware=rng.choice(["4.2.1", "4.3", None]))
        out.append(s)
        for _ in range(rng.choice([0, 0, 0, 1, 1, 2])):
            v = survey_row(rng, s, shown_us=s.ended_us + rng.randrange(3 * 3600 * 10**6))
            reason = rng.choice([None, *REASONS]) if v.score is not None else None
            out.append(v._replace(reason=reason, box_id=rng.choice([s.box_id, s.box_id, "stb-2", "stb-3"]),
                                  firmware=rng.choice(["4.2.1", None])))
        if rng.random() < 0.05:
            out.append(survey_row(rng, None, shown_us=T0 + rng.randrange(5 * DAY_US)))
    out.append(survey_row(rng, None, shown_us=T0 - 20 * DAY_US + 7))
    return out


async def ingest_groups(st: Storage, rows: Sequence[Row], seed: int, held: set[str]) -> None:
    """In random order, in batches sent concurrently (so several share a write group), a
    quarter of them twice at once and again once answered; ``held``: the ids stored
    before, updated."""
    rng = random.Random(seed)
    rows = list(rows)
    rng.shuffle(rows)
    batches = [rows[i:i + 29] for i in range(0, len(rows), 29)]
    again = rng.sample(batches, len(batches) // 4)
    answers = await asyncio.gather(*(st.ingest(b) for b in batches + again))
    new = {r.id for r in rows} - held
    assert sum(sum(a) for a in answers) == len(new)
    for b, a in zip(batches + again, answers, strict=True):
        assert all(r.id in new for r, fresh in zip(b, a, strict=True) if fresh)
    held |= new
    assert not any(any(a) for a in await asyncio.gather(*(st.ingest(b) for b in again)))


# -- the tests ------------------------------------------------------------------------------------

async def test_ingest_in_any_order_keeps_the_aggregates_of_the_rows(live_store: Storage) -> None:
    """Surveys before their sessions (moved when the session comes), sessions before their
    surveys (flagged surveyed when the first comes, once), both in one group, resends."""
    rows = records(21, 240)
    surveys = [r for r in rows if isinstance(r, SurveyRow)]
    early = surveys[: len(surveys) // 3]
    # A group of surveys alone: their sessions are not there yet.
    assert await live_store.ingest(early) == [True] * len(early)
    await check(live_store, early)
    # Half of the sessions alone, then everything, shuffled and concurrently, with resends.
    sessions = [r for r in rows if isinstance(r, SessionRow)][::2]
    assert await live_store.ingest(sessions) == [True] * len(sessions)
    await check(live_store, early + sessions)
    await ingest_groups(live_store, rows, 22, {r.id for r in early + sessions})
    await check(live_store, rows)
    # One more survey of a session already surveyed, and one of a session not surveyed.
    rng = random.Random(23)
    held = {r.id: r for r in rows if isinstance(r, SessionRow)}
    surveyed = next(s for s in held.values() if any(
        isinstance(v, SurveyRow) and v.session_id == s.id for v in rows))
    lone = next(s for s in held.values() if not any(
        isinstance(v, SurveyRow) and v.session_id == s.id for v in rows))
    more = [survey_row(rng, s, shown_us=s.ended_us + 1)._replace(outcome="answered", score=k, reason="price")
            for s, k in ((surveyed, 0), (lone, 10))]
    assert await live_store.ingest(more) == [True, True]
    await check(live_store, rows + more)


async def test_rebuild_answers_the_rows_whatever_the_tables_held(live_store: Storage) -> None:
    rows = records(31, 160)
    await ingest_groups(live_store, rows, 32, set())
    # Stale rows, on a day with records and on one without: a rebuild recomputes from the
    # records alone.
    write: Callable[..., Any] = (live_store._writer.run if isinstance(live_store, sqlite_store.SQLiteStorage)  # type: ignore[attr-defined]
                                 else None)
    stale = [f"INSERT INTO agg_sessions (lvl, day, region, model, firmware, channel, content_type, n) "
             f"VALUES (1, {d}, '', '', '', '', '', 5)" for d in (-400, T0 // DAY_US + 100)] + \
            [f"UPDATE agg_surveys SET shown = shown + 3 WHERE lvl = 1 AND day = {T0 // DAY_US + 1}",
             f"UPDATE agg_bins SET s7 = s7 + 2 WHERE lvl = 0 AND day = {T0 // DAY_US + 2}"]
    if write is not None:
        def spoil(db: Any) -> None:
            for sql in stale:
                db.execute(sql)
        await write(lambda db: transaction(db, spoil))
    else:
        pool = live_store._pool  # type: ignore[attr-defined]
        for sql in stale:
            await pool.execute(sql)
    with pytest.raises(AssertionError):
        await check(live_store, rows)
    await live_store.rebuild_aggregates()
    await check(live_store, rows)


async def test_deleting_a_box_and_purging_keep_the_aggregates_of_what_remains(live_store: Storage) -> None:
    """A box's records go (its sessions' surveys from other boxes stay, moved to channel
    ''; sessions of other boxes whose last survey goes are no longer surveyed); then a
    purge in the middle of a day and hour."""
    rng = random.Random(43)
    cutoff = T0 + 2 * DAY_US + 5 * HOUR_US + 12345

    def pair(box: str, started: int, shown: Sequence[tuple[str, int]]) -> list[Row]:
        s = session_row(rng, started_us=started, box=box)
        return [s, *(survey_row(rng, s, shown_us=t)._replace(box_id=b, outcome="answered", score=4)
                     for b, t in shown)]

    planted = [
        # A session of another box whose only survey goes with the box: no longer
        # surveyed; one with a survey of its own box left: still surveyed.
        *pair("stb-1", T0 + 7, [("stb-2", T0 + 10**9)]),
        *pair("stb-1", T0 + 8, [("stb-2", T0 + 10**9), ("stb-1", T0 + 2 * 10**9)]),
        # The box's session goes, another box's survey of it stays (channel '').
        *pair("stb-2", T0 + 9, [("stb-1", T0 + DAY_US + 11)]),
        # Around the purge's cutoff: a survey shown (box clock) before its session
        # started, and a session before the cutoff whose survey is after it.
        *pair("stb-1", cutoff + 10, [("stb-1", cutoff - 10)]),
        *pair("stb-1", cutoff - 10, [("stb-1", cutoff + 10)]),
    ]
    rows = records(41, 200) + planted
    await ingest_groups(live_store, rows, 42, set())
    gone = [r for r in rows if r.box_id == "stb-2"]
    assert gone and any(isinstance(r, SurveyRow) and r.box_id == "stb-3" for r in rows)
    assert await live_store.delete_box("stb-2") == len({r.id for r in gone})
    kept = [r for r in rows if r.box_id != "stb-2"]
    await check(live_store, kept)
    # The store forgets them: sent again, they are new (PostgreSQL keeps ids apart).
    assert await live_store.ingest(gone) == [True] * len(gone)
    await check(live_store, rows)
    assert await live_store.delete_box("stb-2") == len({r.id for r in gone})
    assert await live_store.delete_box("stb-9") == 0
    await check(live_store, kept)
    old = {r.id for r in kept if (r.started_us if isinstance(r, SessionRow) else r.shown_us) < cutoff}
    assert await live_store.purge_before(cutoff) == len(old)
    await check(live_store, [r for r in kept if r.id not in old])


async def test_a_large_group_and_its_resend(live_store: Storage) -> None:
    """2,200 answered sessions in one hour, segment and fine bin, each at the top of the bin
    (position 1,000), stored in one group: the bin's sum of squared positions is
    2.2e9 > 2**31 - 1 (the other sums of a group stay far below). Sent again, 4,400 ids
    are looked up in SQLite's chunks of 900 bound ids: each one held."""
    rng = random.Random(51)
    edge = FINE_EDGES["rebuffer_ratio"][40]
    rows: list[Row] = []
    for i in range(2200):
        s = session_row(rng, started_us=T0 + i)._replace(
            channel="NPO1", content_type="live", model="X-200", region="NL-NH",
            **metric_columns({"rebuffer_ratio": edge, "startup_ms": 1500}))
        rows += [s, survey_row(rng, s, shown_us=T0 + 10**6 + i)._replace(outcome="answered", score=9)]
    assert {r.rb_pos for r in rows if isinstance(r, SessionRow)} == {1000}
    assert await live_store.ingest(rows) == [True] * len(rows)
    await check(live_store, rows)
    assert await live_store.ingest(rows[::-1]) == [False] * len(rows)
    await check(live_store, rows)


async def test_a_group_of_resends_alone_folds_when_a_fold_is_due(
        live_store: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write group holding nothing new (every record a resend) still folds when a fold
    is due: the deltas earlier groups left are folded, none stay."""
    clock = logic.FoldClock(every=10**9)
    monkeypatch.setattr(live_store, "_fold", clock)
    fetch: Callable[..., Any] = live_store._fetch  # type: ignore[attr-defined]

    async def deltas() -> int:
        return sum([int((await fetch(f"SELECT count(*) FROM {t}", []))[0][0]) for t in DELTA.values()])

    rows = records(33, 60)
    clock.since = 0  # not due: the group's counts stay as deltas
    assert await live_store.ingest(rows) == [True] * len(rows)
    assert await deltas() > 0 and not clock.due
    clock.since = clock.every  # due
    assert await live_store.ingest(rows[:10]) == [False] * 10
    assert await deltas() == 0 and not clock.due
    await check(live_store, rows)


async def test_a_fold_takes_the_least_and_greatest_position_over_the_groups(
        live_store: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two write groups' deltas on the same bin key (hour, segment, metric, fine bin) with
    different positions, folded at once: the bin's least and greatest positions are the
    least and greatest over both groups, not their sums."""
    clock = logic.FoldClock(every=10**9)
    clock.since = 0  # neither group folds: the check folds both deltas in one go
    monkeypatch.setattr(live_store, "_fold", clock)
    lo, hi = FINE_EDGES["rebuffer_ratio"][39], FINE_EDGES["rebuffer_ratio"][40]
    rng = random.Random(52)
    rows: list[Row] = []
    for i, frac in enumerate((0.25, 0.75)):
        group: list[Row] = []
        for j in range(3):
            s = session_row(rng, started_us=T0 + 10 * i + j)._replace(
                channel="NPO1", content_type="live", model="X-200", region="NL-NH",
                **metric_columns({"rebuffer_ratio": lo + (hi - lo) * frac, "startup_ms": 1500}))
            group += [s, survey_row(rng, s, shown_us=T0 + 10**6 + 10 * i + j)._replace(
                outcome="answered", score=9)]
        assert await live_store.ingest(group) == [True] * len(group)
        rows += group
    positions = {r.rb_pos for r in rows if isinstance(r, SessionRow)}
    assert len(positions) == 2 and min(positions) > 0
    await check(live_store, rows)


def test_the_fold_clock_counts_records_since_the_last_fold() -> None:
    """Due at first (deltas an earlier run left), then once ``every`` records were stored
    since the last fold, counted from zero again after each fold."""
    clock = logic.FoldClock(every=100)
    assert clock.due
    clock.stored(5, True)
    assert not clock.due
    clock.stored(99, False)
    assert not clock.due
    clock.stored(1, False)
    assert clock.due
    clock.stored(7, True)
    assert not clock.due and clock.since == 0
    clock.stored(99, False)
    assert not clock.due


def test_day_ranges_and_rebuild_parameters() -> None:
    assert day_ranges([]) == []
    assert day_ranges([5]) == [(5, 6)]
    assert day_ranges([7, 5, 6, 6, 9, -2, -1, 11, 10]) == [(-2, 0), (5, 8), (9, 12)]
    assert rebuild_params("day", -2, 3) == (-2, 3)
    assert rebuild_params("hour", -2, 3) == (-48, 72)
    assert rebuild_params("us", -2, 3) == (-2 * 86_400_000_000, 3 * 86_400_000_000)


def test_both_drivers_pass_each_answer_and_return_the_result() -> None:
    """What PostgreSQL's driver (``drive_async``) must do, here without a database."""
    def steps() -> logic.Steps[list[Any]]:
        got = []
        for i in range(3):
            got.append((yield logic.Run(f"q{i}", (i,), fetch=True)))
        got.append((yield logic.Forget(["x"])))
        return got

    seen: list[logic.Op] = []

    def do(op: logic.Op) -> Any:
        seen.append(op)
        return op.params[0] * 10 if isinstance(op, logic.Run) else "forgot"

    async def ado(op: logic.Op) -> Any:
        return do(op)

    want = [0, 10, 20, "forgot"]
    assert logic.drive_sync(steps(), do) == want
    assert asyncio.run(logic.drive_async(steps(), ado)) == want
    assert seen == 2 * [logic.Run("q0", (0,), True), logic.Run("q1", (1,), True),
                        logic.Run("q2", (2,), True), logic.Forget(["x"])]


def test_a_rebuild_takes_each_day_once_without_the_command_timeout() -> None:
    """Days 5 and 7 hold records: each is recomputed once (by day, by hour, in µs), every
    statement without PostgreSQL's command timeout (a rebuild of a large store is long),
    and so are the two that recompute the survey rows' session values."""
    ops: list[logic.Op] = []

    def do(op: logic.Op) -> Any:
        ops.append(op)
        return [(7,), (5,)] if isinstance(op, logic.Run) and op.fetch else None

    logic.drive_sync(logic.rebuild_all(sqlite_store.DIALECT), do)
    runs = [op for op in ops if isinstance(op, logic.Run)]
    rebuilt = [op for op in runs if op.params]
    assert rebuilt and all(op.long for op in rebuilt)
    # The survey rows' session values are recomputed first, over every survey: long too.
    refills = [op for op in runs if op.sql.startswith("UPDATE surveys")]
    assert len(refills) == 2 and all(op.long for op in refills)
    assert {op.params for op in rebuilt} == {
        (5, 6), (7, 8), (120, 144), (168, 192),
        (5 * 86_400_000_000, 6 * 86_400_000_000), (7 * 86_400_000_000, 8 * 86_400_000_000)}
