"""The ``events`` source: JSON lines on a unix socket, several writers, bad lines."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from stb_widget.agent import Agent
from stb_widget.buffer import MemoryBuffer
from stb_widget.config import BufferSection
from stb_widget.errors import EventError, SourceError
from stb_widget.events import PlayerEvent, parse_event_line
from stb_widget.sources.events_socket import EventsSocketSource

from .conftest import FakeClock, make_config


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[Agent, Path, EventsSocketSource]]:
    clock = FakeClock()
    cfg = make_config(tmp_path, survey={"enabled": False})
    agent = Agent(cfg, clock=clock, store=MemoryBuffer(BufferSection(), clock), upload=False)
    await agent.start()
    path = Path(cfg.player.events_socket)
    source = EventsSocketSource(path, agent.feed)
    await source.start()
    task = asyncio.create_task(source.run())
    yield agent, path, source
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await agent.stop()


async def send(path: Path, *lines: bytes | dict[str, object], close: bool = True
               ) -> asyncio.StreamWriter:
    _, writer = await asyncio.open_unix_connection(str(path))
    for line in lines:
        writer.write((line if isinstance(line, bytes) else orjson.dumps(line)) + b"\n")
    await writer.drain()
    if close:
        writer.close()
        await writer.wait_closed()
    return writer


async def sessions(agent: Agent, n: int) -> list[dict[str, object]]:
    for _ in range(300):
        got = [orjson.loads(r.body) for r in await agent.store.fetch(100, 10**9)]
        if len(got) >= n:
            return got
        await asyncio.sleep(0.01)
    raise AssertionError(f"expected {n} sessions, have {len(got)}")


async def test_bad_lines_are_skipped_and_logged(
    running: tuple[Agent, Path, EventsSocketSource], caplog: pytest.LogCaptureFixture
) -> None:
    agent, path, source = running
    with caplog.at_level(logging.WARNING):
        await send(path,
                   {"event": "play", "channel": "NPO1", "content_type": "live", "at": 100.0},
                   b"not json at all", b"[1, 2]", b'{"event": "dance"}',
                   b'{"event": "stall_start", "at": "soon"}', b"x" * 20000, b"",
                   {"event": "first_frame", "at": 100.9},
                   {"event": "stop", "at": 200.0})
        got = await sessions(agent, 1)
    assert got[0]["channel"] == "NPO1"
    assert got[0]["qos"]["startup_ms"] == 900  # type: ignore[index]
    assert source.bad_lines == 5
    assert sum("bad player event line" in r.getMessage() for r in caplog.records) == 5


async def test_several_writers_and_reconnects(
    running: tuple[Agent, Path, EventsSocketSource]
) -> None:
    agent, path, _ = running
    a = await send(path, {"event": "play", "channel": "RTL4", "at": 10.0}, close=False)
    await send(path, {"event": "first_frame", "at": 11.0})  # another writer
    a.close()  # a writer going away ends nothing
    await a.wait_closed()
    await asyncio.sleep(0.05)
    assert agent.counts["sessions"] == 0
    await send(path, {"event": "stall_start", "at": 20.0}, {"event": "stall_end", "at": 22.0})
    await send(path, {"event": "stop", "at": 40.0})
    got = await sessions(agent, 1)
    q = got[0]["qos"]
    assert q == {"startup_ms": 1000, "watch_s": 30.0, "rebuffer_count": 1, "rebuffer_s": 2.0,
                 "avg_bitrate_kbps": None, "bitrate_switches": 0, "failed": False}


async def test_play_with_bad_channel_still_opens_a_session(
    running: tuple[Agent, Path, EventsSocketSource]
) -> None:
    agent, path, _ = running
    await send(path, {"event": "play", "channel": 42, "content_type": "radio", "at": 0},
               {"event": "error", "message": "no signal", "at": 3})
    got = await sessions(agent, 1)
    assert got[0]["channel"] is None and got[0]["content_type"] is None
    assert got[0]["qos"]["failed"] is True  # type: ignore[index]


async def test_a_zap_on_the_event_feed_is_not_asked(tmp_path: Path) -> None:
    """stop then play at once (a channel change) over the real socket: no question; a
    stop followed by silence: the question, once settle_s passed."""
    from stb_widget.clock import SystemClock

    from .test_mpv import RecordingPresenter

    clock = SystemClock()
    cfg = make_config(tmp_path, survey={"min_watch_s": 5, "sample_rate": 1.0, "settle_s": 0.5})
    presenter = RecordingPresenter()
    agent = Agent(cfg, clock=clock, store=MemoryBuffer(BufferSection(), clock),
                  presenters=lambda: presenter, upload=False)
    await agent.start()
    source = EventsSocketSource(cfg.player.events_socket, agent.feed)
    await source.start()
    task = asyncio.create_task(source.run())
    try:
        path = Path(cfg.player.events_socket)
        await send(path, {"event": "play", "channel": "NPO1", "at": 0.0},
                   {"event": "first_frame", "at": 1.0}, {"event": "stop", "at": 600.0},
                   {"event": "play", "channel": "RTL4", "at": 600.2})
        await sessions(agent, 1)
        await asyncio.sleep(1.0)
        assert presenter.requests == [] and agent.policy.reasons == {"zapped": 1}
        await send(path, {"event": "first_frame", "at": 601.0}, {"event": "stop", "at": 1200.0})
        got = await sessions(agent, 2)
        assert presenter.requests == []  # the player must stay idle settle_s first
        await asyncio.sleep(1.0)
        assert presenter.requests == [got[1]["id"]]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await agent.stop()


async def test_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    # A crashed agent leaves its bound socket file behind, with nobody listening on it.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    assert path.is_socket()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_unix_connection(str(path))
    got: list[PlayerEvent] = []

    async def feed(event: PlayerEvent) -> None:
        got.append(event)

    source = EventsSocketSource(path, feed)
    await source.start()
    task = asyncio.create_task(source.run())
    try:
        await send(path, {"event": "play", "channel": "NPO1", "at": 1.0})
        for _ in range(300):
            if got:
                break
            await asyncio.sleep(0.01)
        assert [(e.kind, e.channel) for e in got] == [("play", "NPO1")]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not path.exists()  # closing removes its own socket file
    # A file that is no socket is not the agent's to delete.
    path.write_text("keep me")
    with pytest.raises(SourceError, match="no socket"):
        await EventsSocketSource(path, feed).start()
    assert path.read_text() == "keep me"


def test_parser() -> None:
    ev = parse_event_line(b'{"event": "bitrate", "kbps": 5400, "at": 100.9}')
    assert ev.kind == "bitrate" and ev.kbps == 5400.0 and ev.at == 100.9
    assert parse_event_line(b'{"event": "pause"}').at is None
    # Contract v1 lines this agent does not measure yet still parse (no warning per line).
    assert parse_event_line(b'{"event": "dropped_frames", "count": 12}').kind == "dropped_frames"
    assert parse_event_line(b'{"event": "bitrate", "kbps": 5400, "height": 1080}').kbps == 5400
    for bad in (b'{"event": "bitrate", "kbps": -1}', b'{"event": "stop", "at": true}',
                b'{"at": 1}', b"\xff\xfe", b'{"event": "dropped_frames", "count": -1}',
                b'{"event": "describe", "channel": "x"}', b'{"event": "height", "height": 720}'):
        with pytest.raises(EventError):
            parse_event_line(bad)


async def test_the_event_feed_docs_example_gives_the_figures_it_states(
    running: tuple[Agent, Path, EventsSocketSource]
) -> None:
    """docs/event-feed.md's example, line by line through the real socket."""
    import re

    agent, path, source = running
    doc = (Path(__file__).parents[2] / "docs" / "event-feed.md").read_text("utf-8")
    example = doc.split("## Example", 1)[1]
    lines = [m.encode() for m in re.findall(r"^  '(\{.*\})' \\$", example, re.MULTILINE)]
    assert len(lines) == 10
    await send(path, *lines)
    got = await sessions(agent, 1)
    q = got[0]["qos"]
    assert q == {"startup_ms": 900, "watch_s": 1740.0, "rebuffer_count": 1, "rebuffer_s": 3.5,
                 "avg_bitrate_kbps": 5400.0, "bitrate_switches": 0, "failed": False,
                 "video_height": 1080, "dropped_frames": 12}
    assert source.bad_lines == 0
    assert "`startup_ms` 900, `watch_s` 1740" in doc and "one stall of 3.5 s" in doc
    assert "`video_height` 1080 and `dropped_frames` 12" in doc
