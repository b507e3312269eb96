"""Fixtures: a real collector on loopback HTTP over a fresh store, and record builders."""

from __future__ import annotations

import contextlib
import gzip
import io
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient, TestServer

from collector.app import SERVER_KWARGS, create_app
from collector.settings import Settings
from collector.storage import Storage, make_storage

ADMIN = "test-admin-token-0123456789"


def new_id() -> str:
    return str(uuid.uuid4())


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def session_record(
    *, id: str | None = None, started: datetime | None = None, watch_s: float = 1200.0,
    rebuffer_s: float = 0.0, rebuffer_count: int = 0, startup_ms: int | None = 800,
    bitrate: float | None = 5400.0, failed: bool = False, channel: str | None = "NPO1",
    content_type: str | None = "live", **extra: Any,
) -> dict[str, Any]:
    started = started or datetime.now(UTC) - timedelta(hours=1)
    rec = {
        "id": id or new_id(), "kind": "session",
        "started_at": iso(started), "ended_at": iso(started + timedelta(seconds=watch_s)),
        "channel": channel, "content_type": content_type,
        "qos": {"startup_ms": startup_ms, "watch_s": watch_s, "rebuffer_count": rebuffer_count,
                "rebuffer_s": rebuffer_s, "avg_bitrate_kbps": bitrate, "bitrate_switches": 1,
                "failed": failed},
    }
    rec.update(extra)
    return rec


def survey_record(
    *, id: str | None = None, session_id: str | None = None, shown: datetime | None = None,
    outcome: str = "answered", score: int | None = 9, reason: str | None = None, **extra: Any,
) -> dict[str, Any]:
    shown = shown or datetime.now(UTC) - timedelta(minutes=30)
    rec: dict[str, Any] = {
        "id": id or new_id(), "kind": "survey", "session_id": session_id,
        "shown_at": iso(shown), "outcome": outcome, "locale": "nl",
    }
    if outcome == "answered":
        rec["answered_at"] = iso(shown + timedelta(seconds=5))
        rec["score"] = score
        rec["reason"] = reason
    rec.update(extra)
    return rec


def batch(box_id: str, records: list[dict[str, Any]], *, sent_at: datetime | None = None,
          box: dict[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"protocol": 1, "box_id": box_id,
                           "sent_at": iso(sent_at or datetime.now(UTC)), "records": records}
    if box is not None:
        doc["box"] = box
    return doc


class Api:
    """A thin client for the collector under test."""

    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.client = client
        self.admin = {"Authorization": f"Bearer {ADMIN}"}

    async def enrol(self, box_id: str) -> str:
        resp = await self.client.post("/v1/boxes", json={"box_id": box_id}, headers=self.admin)
        assert resp.status == 201, await resp.text()
        token: str = (await resp.json())["token"]
        return token

    async def upload(self, token: str, doc: Any, *, gz: bool = False, raw: bytes | None = None,
                     headers: dict[str, str] | None = None) -> tuple[int, Any]:
        body = raw if raw is not None else orjson.dumps(doc)
        h = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        if gz:
            body = gzip.compress(body)
            h["Content-Encoding"] = "gzip"
        h.update(headers or {})
        resp = await self.client.post("/v1/batches", data=io.BytesIO(body), headers=h)
        return resp.status, await resp.json()

    async def report(self, **params: str) -> dict[str, Any]:
        resp = await self.client.get("/v1/report", params=params, headers=self.admin)
        assert resp.status == 200, await resp.text()
        data: dict[str, Any] = await resp.json()
        return data


def db_urls() -> list[Any]:
    """Every backend the collector suite runs against (PostgreSQL: see tests/conftest.py)."""
    urls: list[Any] = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
    return urls


@pytest.fixture(params=db_urls())
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'collector.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


async def run_behind_the_collector(db_url: str, stmts: list[str]) -> None:
    """Run ``stmts`` on the test's store with a plain connection, in one transaction (to
    turn it into what an older schema kept, for the migration tests)."""
    if db_url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(db_url.removeprefix("sqlite:///"))
        try:
            for stmt in stmts:
                conn.execute(stmt)
            conn.commit()
        finally:
            conn.close()
        return
    import asyncpg

    base, _, query = db_url.partition("?")
    pg = await asyncpg.connect(base, server_settings=dict([query.split("=")]))
    try:
        async with pg.transaction():
            for stmt in stmts:
                await pg.execute(stmt)
    finally:
        await pg.close()


@pytest.fixture
def settings_factory(db_url: str) -> Callable[..., Settings]:
    def make(**kw: Any) -> Settings:
        return Settings(db=db_url, admin_token=kw.pop("admin_token", ADMIN), **kw)

    return make


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Storage]:
    """An open store on the test's backend, without HTTP in front."""
    st = make_storage(Settings(db=db_url, admin_token=ADMIN))
    await st.open()
    try:
        yield st
    finally:
        await st.close()


@pytest.fixture
async def api(settings_factory: Callable[..., Settings]) -> AsyncIterator[Api]:
    async with serve(settings_factory()) as client:
        yield Api(client)


@contextlib.asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """The collector on a real loopback port, with the same server settings as in production."""
    server = TestServer(create_app(settings))
    await server.start_server(**SERVER_KWARGS)
    async with TestClient(server) as client:
        yield client


@pytest.fixture
async def http() -> AsyncIterator[ClientSession]:
    async with ClientSession() as s:
        yield s

