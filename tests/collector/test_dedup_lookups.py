"""How SQLite's write path looks ids up (collector/storage/sqlite.py): a fresh group asks
only for its ids held as the other kind of record (no key catches those), in chunks of
900 bound ids; a group holding a resend is rolled back to its savepoint and asks for
every id in both tables. The answers are the same either way (test_scale's dedup tests),
so only the statements show the difference: the trace of the writer's connection."""

from __future__ import annotations

import random
import re
import sqlite3
from collections import Counter
from pathlib import Path

from collector.model import Row, SessionRow
from collector.storage.sqlite import SQLiteStorage

from .test_scale import T0, session_row, survey_row

_LOOKUP = re.compile(r"SELECT id FROM (sessions|surveys) WHERE id IN \((.*)\)\s*$", re.S | re.I)


def _lookups(statements: list[str]) -> list[tuple[str, int]]:
    """Each id look-up run: its table and how many ids it bound."""
    out = []
    for sql in statements:
        m = _LOOKUP.match(sql.strip())
        if m:
            # Table names and keywords compared without case, as SQL reads them.
            out.append((m[1].lower(), len(m[2].split(","))))
    return out


async def test_a_fresh_group_asks_for_the_other_kind_only_and_a_resend_for_both(tmp_path: Path) -> None:
    rng = random.Random(7)
    rows: list[Row] = []
    for i in range(1000):
        s = session_row(rng, started_us=T0 + i * 10**6)
        rows.append(s)
        if i < 950:
            rows.append(survey_row(rng, s, shown_us=s.ended_us + 1))
    n_sessions = sum(isinstance(r, SessionRow) for r in rows)
    n_surveys = len(rows) - n_sessions
    store = SQLiteStorage(tmp_path / "c.db")
    await store.open()
    try:
        statements: list[str] = []

        def trace(db: sqlite3.Connection) -> None:
            db.set_trace_callback(statements.append)

        await store._writer.run(trace)
        assert await store.ingest(rows) == [True] * len(rows)
        fresh = _lookups(statements)
        # The sessions' 1,000 ids among the surveys, the surveys' 950 among the sessions,
        # each in two chunks (900 + the rest), and nothing else.
        assert sorted(fresh) == [("sessions", 50), ("sessions", 900), ("surveys", 100), ("surveys", 900)]
        assert sum(n for t, n in fresh if t == "surveys") == n_sessions
        assert sum(n for t, n in fresh if t == "sessions") == n_surveys

        statements.clear()
        assert await store.ingest(rows) == [False] * len(rows)
        resent = Counter(_lookups(statements))
        # The fresh path's look-ups, then, after the key conflict, all 1,950 ids in both
        # tables (900 + 900 + 150 each).
        assert resent == Counter(fresh) + Counter({("sessions", 900): 2, ("sessions", 150): 1,
                                                   ("surveys", 900): 2, ("surveys", 150): 1})
    finally:
        await store.close()
