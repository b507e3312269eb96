"""The agent against the real collector (``collector.app``): what it sends is accepted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

from collector.app import SERVER_KWARGS, create_app
from collector.settings import Settings
from stb_widget.agent import Agent
from stb_widget.clock import SystemClock
from stb_widget.events import PlayerEvent

from .conftest import make_config
from .test_agent import ScriptedPresenter

ADMIN = "agent-test-admin-token-0123456789"


async def test_agent_uploads_to_the_real_collector(tmp_path: Path) -> None:
    settings = Settings(db=f"sqlite:///{tmp_path / 'collector.db'}", admin_token=ADMIN)
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server(**SERVER_KWARGS)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(server.make_url("/v1/boxes"), json={"box_id": "stb-real-1"},
                             headers=admin) as resp:
            assert resp.status == 201
            token = (await resp.json())["token"]
        cfg = make_config(
            tmp_path, box_id="stb-real-1",
            box={"model": "X-200", "firmware": "4.2.1", "region": "NL-NH"},
            collector={"url": str(server.make_url("/")), "token": token, "upload_delay_s": 0.2},
            survey={"min_watch_s": 1, "sample_rate": 1.0},
        )
        clock = SystemClock()
        # The agent's own HTTP client, as on a box.
        agent = Agent(cfg, clock=clock, presenters=lambda: ScriptedPresenter(clock=clock))
        await agent.start()
        for i in range(5):
            await agent.feed(PlayerEvent("play", at=i * 100.0, channel=f"ch{i}",
                                         content_type="live"))
            await agent.feed(PlayerEvent("first_frame", at=i * 100.0 + 0.8))
            await agent.feed(PlayerEvent("bitrate", at=i * 100.0 + 0.8, kbps=5400))
            await agent.feed(PlayerEvent("stall_start", at=i * 100.0 + 30))
            await agent.feed(PlayerEvent("stall_end", at=i * 100.0 + 32))
            await agent.feed(PlayerEvent("error" if i == 4 else "stop", at=i * 100.0 + 90))
            await agent.wait_question()
        for _ in range(200):
            if agent.store.ready_count == 0 and agent.uploader and agent.uploader.stats["http_200"]:
                break
            await asyncio.sleep(0.05)
        assert agent.store.ready_count == 0, agent.stats()
        assert agent.uploader is not None
        assert agent.uploader.stats["records_accepted"] == 6, agent.stats()
        assert agent.uploader.stats["records_rejected"] == 0
        await agent.stop()
        async with http.get(server.make_url("/v1/report"), headers=admin) as resp:
            assert resp.status == 200
            report = await resp.json()
    await server.close()
    assert report["sessions"]["count"] == 5 and report["sessions"]["failed"] == 1
    assert report["surveys"]["answered"] == 1 and report["reasons"] == {"buffering": 1}
