"""Fixtures shared by every test package: a PostgreSQL database for the test run.

PostgreSQL tests need a server on 127.0.0.1:5432 that lets the user ``postgres`` in
without a password (trust), as CI provides. Each test run makes its own database
(``nps_test_<random>``, dropped at the end) and each test its own schema in it, so tests
never see each other's rows. Where no server answers, the tests skip with a message
saying how to run them, except under CI (the ``CI`` environment variable set), where
they fail: a CI run must never pass by skipping them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

PG_HOST = os.environ.get("NPS_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("NPS_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("NPS_TEST_PG_USER", "postgres")
HOW_TO = (
    f"PostgreSQL tests need a server on {PG_HOST}:{PG_PORT} with user {PG_USER} and trust "
    "authentication (e.g. `pg_ctlcluster 15 main start` with `host all all 127.0.0.1/32 trust` "
    "in pg_hba.conf, or `docker run -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres`)"
)


def _run(coro: Any) -> Any:
    # A private loop: the tests' own loops are pytest-asyncio's business.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


async def _admin(database: str, *sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database=database,
                                 timeout=5)
    try:
        for stmt in sql:
            await conn.execute(stmt)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh database for this test run, dropped at its end."""
    name = f"nps_test_{secrets.token_hex(6)}"
    try:
        _run(_admin("postgres", f"CREATE DATABASE {name}"))
    except Exception as exc:
        message = f"no PostgreSQL server answers ({type(exc).__name__}: {exc}). {HOW_TO}"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so PostgreSQL tests must run: {message}")
        pytest.skip(message)
    try:
        yield name
    finally:
        _run(_admin("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """A ``--db`` URL of an empty schema of its own in the run's database."""
    schema = f"t_{secrets.token_hex(6)}"
    _run(_admin(postgres_database, f"CREATE SCHEMA {schema}"))
    # Unknown URL parameters reach the server as settings: every connection of the
    # pool works in this test's schema.
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{postgres_database}?search_path={schema}"
