"""Fixtures: a real collector on loopback, and a helper to run a fleet against it."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from collector.settings import Settings
from simulators.fleet import Fleet, FleetOptions
from tests.collector.conftest import ADMIN, serve

ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}


class Collector:
    """A running collector and what tests ask of it."""

    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.client = client
        self.url = str(client.make_url("/"))

    async def report(self, **params: str) -> dict[str, Any]:
        resp = await self.client.get("/v1/report", params=params, headers=ADMIN_HEADERS)
        assert resp.status == 200, await resp.text()
        data: dict[str, Any] = await resp.json()
        return data

    async def export(self, kind: str) -> list[dict[str, Any]]:
        resp = await self.client.get("/v1/export", params={"kind": kind}, headers=ADMIN_HEADERS)
        assert resp.status == 200, await resp.text()
        body = await resp.read()
        return [orjson.loads(line) for line in body.splitlines() if line.strip()]

    async def fleet(self, **kw: Any) -> tuple[Fleet, dict[str, Any]]:
        fleet = Fleet(FleetOptions(collector=self.url, admin_token=ADMIN, **kw))
        summary = await fleet.run()
        return fleet, summary


async def start_collector(tmp: Path) -> AsyncGenerator[Collector, None]:
    # Virtual time packs a week of one box's uploads into seconds: the per-box rate limit
    # (real time) would answer 429 to most of them.
    settings = Settings(db=f"sqlite:///{tmp / 'collector.db'}", admin_token=ADMIN,
                        box_rate_per_min=1_000_000, box_burst=1_000_000)
    async with serve(settings) as client:
        yield Collector(client)


@pytest.fixture
async def collector(tmp_path: Path) -> AsyncIterator[Collector]:
    async for c in start_collector(tmp_path / "a"):
        yield c


@pytest.fixture
async def collector2(tmp_path: Path) -> AsyncIterator[Collector]:
    async for c in start_collector(tmp_path / "b"):
        yield c
