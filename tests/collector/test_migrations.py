"""Numbered migrations: a store made by the collector of commit 7759866 (the last one
before them) migrates with every figure of its report unchanged, on both backends.

The old stores and the old collector's reports are files made by running that old code
(tests/collector/fixtures/make_old_stores.py, which says how); these tests never ask the
new code what the old one answered. ``migrate`` runs as the operator runs it: the
``nps-collector`` command in a process of its own.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.errors import MigrationRequiredError, SchemaTooNewError
from collector.settings import Settings
from collector.storage import make_storage
from collector.storage.migrations import (
    LATEST,
    MIGRATIONS,
    VERSION_KEY,
    AddMetric,
    Backfill,
    BackfillSql,
    Migration,
    RebuildAggregates,
    RecreateIndex,
    RunSql,
    migrate_url,
    upgrade_sqlite,
)
from collector.storage.schema import TABLE, ddl
from tests.conftest import PG_HOST, PG_PORT, PG_USER, _admin, _run

from .conftest import ADMIN, Api, serve
from .test_survey_session import JOINED, KEPT

REPO = Path(__file__).resolve().parents[2]
OLD = Path(__file__).parent / "fixtures" / "old_7759866"
OLD_REPORTS = json.loads((OLD / "reports.json").read_text())
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


# -- the old stores ---------------------------------------------------------------------------

def old_sqlite(tmp_path: Path) -> str:
    """A ``--db`` URL of a copy of the old collector's SQLite store."""
    path = tmp_path / "collector.db"
    path.write_bytes(gzip.decompress((OLD / "collector.db.gz").read_bytes()))
    return f"sqlite:///{path}"


@pytest.fixture(params=BACKENDS)
def old_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A ``--db`` URL of a copy of the old collector's store, on each backend (PostgreSQL:
    a database of its own restored from the dump, dropped at the end)."""
    if request.param == "sqlite":
        yield old_sqlite(tmp_path)
        return
    request.getfixturevalue("postgres_database")  # fails or skips as tests/conftest.py says
    name = f"nps_mig_{secrets.token_hex(5)}"
    _run(_admin("postgres", f"CREATE DATABASE {name}"))
    try:
        subprocess.run(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", PG_HOST, "-p", str(PG_PORT),
             "-U", PG_USER, "-d", name, "-o", os.devnull],
            input=gzip.decompress((OLD / "postgres.sql.gz").read_bytes()), check=True)
        yield f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        _run(_admin("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
def fresh_url(old_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store on the same backend as ``old_url``."""
    if old_url.startswith("sqlite:///"):
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def backend_of(url: str) -> str:
    return "sqlite" if url.startswith("sqlite:///") else "postgresql"


def nps_collector(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The ``nps-collector`` command, as an operator runs it."""
    return subprocess.run([sys.executable, "-m", "collector.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "NPS_ADMIN_TOKEN": ADMIN})


async def reports_of(url: str) -> list[dict[str, Any]]:
    """The new collector's reports (over HTTP) for the old reports' filter sets."""
    async with serve(Settings(db=url, admin_token=ADMIN)) as client:
        api = Api(client)
        return [await api.report(**f) for f in OLD_REPORTS["filters"]]


def differences(old: Any, new: Any, path: str = "") -> list[str]:
    """Where ``new`` differs from ``old`` (keys ``old`` lacks may appear in ``new``)."""
    if isinstance(old, dict):
        if not isinstance(new, dict):
            return [f"{path}: {new!r} is not an object"]
        out = []
        for k, v in old.items():
            if k not in new:
                out.append(f"{path}.{k}: missing")
            else:
                out += differences(v, new[k], f"{path}.{k}")
        return out
    if isinstance(old, list):
        if not isinstance(new, list) or len(new) != len(old):
            return [f"{path}: {new!r} is not a list of {len(old)}"]
        return [d for i, (a, b) in enumerate(zip(old, new, strict=True))
                for d in differences(a, b, f"{path}[{i}]")]
    # Figures must be equal, floats too: the same counts, the same arithmetic.
    return [] if old == new and type(old) is type(new) else [f"{path}: {old!r} became {new!r}"]


def check_reports_unchanged(backend: str, new: list[dict[str, Any]]) -> None:
    old = OLD_REPORTS["reports"][backend]
    assert len(old) == len(new) == len(OLD_REPORTS["filters"])
    # The fixture itself: reports with something in them, and with every filter.
    assert old[0]["sessions"]["count"] > 300 and old[0]["surveys"]["answered"] > 100
    assert all(r["surveys"]["answered"] > 0 for r in old)
    diffs = [f"filters {OLD_REPORTS['filters'][i]}: {d}"
             for i, (a, b) in enumerate(zip(old, new, strict=True)) for d in differences(a, b)]
    assert not diffs, "\n".join(diffs[:20])


async def recorded_version(url: str) -> str | None:
    """``schema_version`` in ``nps_meta``, read without the code under test."""
    rows = await select(url, "SELECT value FROM nps_meta WHERE key = 'schema_version'")
    return str(rows[0][0]) if rows else None


async def select(url: str, sql: str) -> list[tuple[Any, ...]]:
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite:///"):])
        try:
            return [tuple(r) for r in conn.execute(sql).fetchall()]
        finally:
            conn.close()
    import asyncpg

    pg = await asyncpg.connect(url)
    try:
        return [tuple(r) for r in await pg.fetch(sql)]
    finally:
        await pg.close()


async def contents(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted: what a no-op must leave as it was."""
    if url.startswith("sqlite:///"):
        names = [r[0] for r in await select(url, "SELECT name FROM sqlite_master WHERE type = 'table'")]
    else:
        names = [r[0] for r in await select(
            url, "SELECT table_name FROM information_schema.tables WHERE table_schema = "
                 "current_schema() AND table_name NOT LIKE '%\\_p2%' AND table_name NOT LIKE '%\\_default'")]
    return {n: sorted(await select(url, f"SELECT * FROM {n}"), key=repr) for n in sorted(names)}


async def columns(url: str) -> dict[str, set[tuple[Any, ...]]]:
    """Per table of the schema, its columns: name only in SQLite (which declares types
    loosely), name, type, nullability and default in PostgreSQL."""
    out: dict[str, set[tuple[Any, ...]]] = {}
    for name in TABLE:
        if url.startswith("sqlite:///"):
            out[name] = {(r[1],) for r in await select(url, f"PRAGMA table_info({name})")}
        else:
            out[name] = set(await select(
                url, "SELECT column_name, data_type, is_nullable, column_default FROM "
                     "information_schema.columns WHERE table_schema = current_schema() "
                     f"AND table_name = '{name}'"))
    return out


async def indexes(url: str) -> dict[str, Any]:
    """Per index of the schema's tables, its columns (SQLite) or definition (PostgreSQL)."""
    if url.startswith("sqlite:///"):
        out: dict[str, Any] = {}
        for name in TABLE:
            for il in await select(url, f"PRAGMA index_list({name})"):
                if not il[1].startswith("sqlite_autoindex"):
                    out[il[1]] = [r[2] for r in await select(url, f"PRAGMA index_info({il[1]})")]
        return out
    rows = await select(url, "SELECT tablename, indexname, indexdef FROM pg_indexes "
                             "WHERE schemaname = current_schema()")
    return {r[1]: r[2].replace(" ON ONLY ", " ON ").split(" USING ")[1] for r in rows if r[0] in TABLE}


async def fresh_columns(url: str) -> dict[str, set[tuple[Any, ...]]]:
    """The columns of a database the new code makes from nothing at ``url``."""
    st = make_storage(Settings(db=url, admin_token=ADMIN))
    await st.open()
    await st.close()
    return await columns(url)


# -- the tests -----------------------------------------------------------------------------------

async def test_old_store_migrates_with_the_report_unchanged(old_url: str, fresh_url: str) -> None:
    url, backend = old_url, backend_of(old_url)
    # What the old code recorded: PostgreSQL "1", SQLite nothing.
    assert await recorded_version(url) == ("1" if backend == "postgresql" else None)
    done = await asyncio.to_thread(nps_collector, "migrate", "--db", url)
    assert done.returncode == 0, done.stderr
    assert f"from schema version 1 to {LATEST}\n" in done.stderr
    assert await recorded_version(url) == str(LATEST)
    check_reports_unchanged(backend, await reports_of(url))
    # Migration 4: each survey row keeps its session's values, as the join gives them.
    kept = sorted(await select(url, KEPT), key=repr)
    assert kept == sorted(await select(url, JOINED), key=repr)
    known = [r for r in kept if r[3] is not None]
    assert 0 < len(known) < len(kept)  # the fixture has surveys with and without a session
    # The migrated schema is the one the new code makes from nothing.
    assert await columns(url) == await fresh_columns(fresh_url)
    assert await indexes(url) == await indexes(fresh_url)


async def test_store_from_before_the_aggregates_migrates_at_start(tmp_path: Path) -> None:
    """Version 0: the old SQLite store less what the aggregates brought (fine-bin columns,
    aggregate tables), as the first stores were; ``serve`` migrates it when it starts."""
    url = old_sqlite(tmp_path)
    conn = sqlite3.connect(tmp_path / "collector.db")
    for table in ("agg_sessions", "agg_surveys", "agg_bins"):
        conn.execute(f"DROP TABLE {table}")
    for col in ("rb_fine", "br_fine", "su_fine", "rb_pos", "br_pos", "su_pos"):
        conn.execute(f"ALTER TABLE sessions DROP COLUMN {col}")
    conn.commit()
    conn.close()
    check_reports_unchanged("sqlite", await reports_of(url))
    assert await recorded_version(url) == str(LATEST)
    fine = await select(url, "SELECT count(*), count(rb_fine), count(su_fine) FROM sessions")
    assert fine[0][0] > 300 and fine[0][1] == fine[0][0] and 0 < fine[0][2] < fine[0][0]


async def test_migrate_twice_is_a_no_op(old_url: str) -> None:
    url = old_url
    first = await asyncio.to_thread(nps_collector, "migrate", "--db", url)
    assert first.returncode == 0, first.stderr
    before = await contents(url)
    again = await asyncio.to_thread(nps_collector, "migrate", "--db", url)
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stderr
    assert await contents(url) == before


async def test_a_newer_database_is_refused(old_url: str) -> None:
    url = old_url
    assert (await asyncio.to_thread(nps_collector, "migrate", "--db", url)).returncode == 0
    newer = LATEST + 1
    await _write_version(url, newer)
    before = await contents(url)
    expected = f"is at schema version {newer}, but this collector knows versions up to {LATEST}"
    for args in (("migrate", "--db", url), ("box-token", "stb-9", "--db", url),
                 ("serve", "--db", url, "--port", str(_free_port()))):
        out = await asyncio.to_thread(nps_collector, *args)
        assert out.returncode == 2, (args, out.stderr)
        assert expected in out.stderr, (args, out.stderr)
        assert "newer collector" in out.stderr
    st = make_storage(Settings(db=url, admin_token=ADMIN))
    with pytest.raises(SchemaTooNewError, match=expected):
        await st.open()
    await st.close()
    assert await contents(url) == before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _write_version(url: str, version: int) -> None:
    sql = f"UPDATE nps_meta SET value = '{version}' WHERE key = '{VERSION_KEY}'"
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite:///"):])
        conn.execute(sql)
        conn.commit()
        conn.close()
    else:
        import asyncpg

        pg = await asyncpg.connect(url)
        await pg.execute(sql)
        await pg.close()


# A migration after the latest, for the tests: a new column filled slowly from the rows.
def _slow_fill(values: tuple[Any, ...]) -> tuple[int]:
    import time

    time.sleep(0.02)
    return (int(values[0] * 1000),)


SLOW = (*MIGRATIONS, Migration(LATEST + 1, "test: a slow backfill", (
    RunSql(sqlite=("ALTER TABLE sessions ADD COLUMN watch_ms INTEGER",),
           postgresql=("ALTER TABLE sessions ADD COLUMN watch_ms bigint",)),
    Backfill("sessions", ("watch_s",), ("watch_ms",), _slow_fill),
)))

_RUN_SLOW = (
    "import asyncio, sys\n"
    "from collector.storage.migrations import migrate_url\n"
    "from tests.collector.test_migrations import SLOW\n"
    "asyncio.run(migrate_url(sys.argv[1], progress=lambda m: print(m, flush=True), migrations=SLOW))\n"
)


async def test_a_migration_killed_half_way_leaves_the_old_version(old_url: str) -> None:
    url = old_url
    assert (await asyncio.to_thread(nps_collector, "migrate", "--db", url)).returncode == 0
    before = await contents(url)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _RUN_SLOW, url, cwd=REPO, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    seen = []
    # Killed once it is filling the new column: inside the migration's transaction.
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line, f"the migration ended before it was killed: {seen}"
        seen.append(line)
        if "backfill sessions" in line:
            break
    proc.send_signal(signal.SIGKILL)
    assert await proc.wait() == -signal.SIGKILL
    # As it was: the old version, no new column, every row.
    assert await recorded_version(url) == str(LATEST)
    assert await contents(url) == before
    check_reports_unchanged(backend_of(url), await reports_of(url))


def test_a_migration_not_safe_at_start_is_left_to_migrate(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    for stmt in ddl("sqlite"):
        conn.execute(stmt)
    conn.execute(f"INSERT INTO nps_meta VALUES ('{VERSION_KEY}', '{LATEST}')")
    offline = (*MIGRATIONS, Migration(LATEST + 1, "test: big", (
        BackfillSql("sessions", {"watch_s": "watch_s"}), RebuildAggregates()), at_start=False))
    with pytest.raises(MigrationRequiredError, match="nps-collector migrate --db"):
        upgrade_sqlite(conn, "x.db", at_start=True, migrations=offline)
    assert upgrade_sqlite(conn, "x.db", at_start=False, migrations=offline).applied == (LATEST + 1,)
    assert conn.execute("SELECT value FROM nps_meta WHERE key = ?", (VERSION_KEY,)).fetchone() == (
        str(LATEST + 1),)


def _startup_from_raw(sources: tuple[Any, ...]) -> int | None:
    value: int | None = json.loads(sources[0])["qos"]["startup_ms"]
    return value


async def test_a_metric_is_added_by_one_step(old_url: str, fresh_url: str) -> None:
    """``AddMetric`` on a store that lacks a metric's columns: here ``startup_ms``, dropped
    from the old store, comes back from the records' raw JSON with every figure as before."""
    assert (await asyncio.to_thread(nps_collector, "migrate", "--db", old_url)).returncode == 0
    cols = ("startup_ms", "su_bucket", "su_fine", "su_pos")
    if old_url.startswith("sqlite:///"):
        conn = sqlite3.connect(old_url[len("sqlite:///"):])
        # SQLite drops no indexed column. The at-risk list's box index carries startup_ms
        # too (as no metric added later would be): made again by the step below.
        conn.execute("DROP INDEX sessions_started")
        conn.execute("DROP INDEX sessions_box_window")
        for col in cols:
            conn.execute(f"ALTER TABLE sessions DROP COLUMN {col}")
        conn.commit()
        conn.close()
    else:
        await select(old_url, "ALTER TABLE sessions " + ", ".join(f"DROP COLUMN {c}" for c in cols))
    steps = (*MIGRATIONS, Migration(LATEST + 1, "test: startup_ms again",
                                    (AddMetric("startup_ms", value=_startup_from_raw),
                                     RecreateIndex("sessions", "sessions_box_window"))))
    done = await migrate_url(old_url, migrations=steps)
    assert done.applied == (LATEST + 1,)
    # Back to the version this code knows, to open it.
    await _write_version(old_url, LATEST)
    check_reports_unchanged(backend_of(old_url), await reports_of(old_url))
    assert await columns(old_url) == await fresh_columns(fresh_url)
    assert await indexes(old_url) == await indexes(fresh_url)


def test_the_migration_benchmark_runs() -> None:
    """bench/migrate.py still runs (a tiny size; its figures live in bench/README.md)."""
    done = subprocess.run([sys.executable, str(REPO / "bench" / "migrate.py"), "--sessions", "1000",
                           "--runs", "1"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["sessions"] == 1000 and len(out["seconds"]) == 1
