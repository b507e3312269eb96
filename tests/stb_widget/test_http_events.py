"""The ``http`` source: event lines POSTed to 127.0.0.1, over real HTTP.

Requests go through the agent's own h11 client (a real TCP connection) or, for what a
well-behaved client never sends, a raw socket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from stb_widget.agent import Agent
from stb_widget.buffer import MemoryBuffer
from stb_widget.config import BufferSection
from stb_widget.errors import ConfigError
from stb_widget.http_client import HttpClient, Response
from stb_widget.sources.events_socket import EventsSocketSource
from stb_widget.sources.http_events import MAX_BODY, HttpEventsSource

from .conftest import FakeClock, make_config
from .test_events_socket import send, sessions

SESSION: list[dict[str, Any]] = [
    {"event": "play", "channel": "NPO1", "content_type": "live", "at": 100.0},
    {"event": "first_frame", "at": 100.9},
    {"event": "bitrate", "kbps": 5400, "height": 1080, "at": 100.9},
    {"event": "stall_start", "at": 340.0},
    {"event": "stall_end", "at": 343.5},
    {"event": "pause", "at": 420.0},
    {"event": "resume", "at": 480.0},
    {"event": "bitrate", "kbps": 2500, "height": 720, "at": 490.0},
    {"event": "seek", "at": 500.0},
    {"event": "stall_start", "at": 501.0},
    {"event": "stall_end", "at": 502.0},
    {"event": "dropped_frames", "count": 12, "at": 610.0},
    {"event": "stop", "at": 1900.0},
]


def lines(*events: dict[str, Any] | bytes) -> bytes:
    return b"".join((e if isinstance(e, bytes) else orjson.dumps(e)) + b"\n" for e in events)


class Running:
    def __init__(self, agent: Agent, source: HttpEventsSource, client: HttpClient) -> None:
        self.agent = agent
        self.source = source
        self.client = client

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.source.port}/events"

    async def post(self, body: bytes, content_type: str = "application/json") -> Response:
        return await self.client.post(self.url, body=body,
                                      headers={"content-type": content_type})


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    clock = FakeClock()
    cfg = make_config(tmp_path, survey={"enabled": False})
    agent = Agent(cfg, clock=clock, store=MemoryBuffer(BufferSection(), clock), upload=False)
    await agent.start()
    source = HttpEventsSource(0, agent.feed)
    await source.start()
    task = asyncio.create_task(source.run())
    client = HttpClient(timeout_s=10, connect_timeout_s=5)
    yield Running(agent, source, client)
    await client.close()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await agent.stop()


async def raw(port: int, request: bytes, *, then: bytes = b"") -> bytes:
    """Send ``request`` (and ``then`` once an answer began) on a fresh connection; read
    the answer up to the server's close or 2 s."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    got = b""
    try:
        async with asyncio.timeout(2):
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                got += chunk
                if then:
                    writer.write(then)
                    then = b""
    except TimeoutError:
        pass
    writer.close()
    return got


async def test_a_session_posted_is_recorded_as_from_the_socket(
    running: Running, tmp_path: Path
) -> None:
    # The same lines through both sources give the same record (ids and times aside).
    answer = await running.post(lines(*SESSION[:5]))
    assert (answer.status, orjson.loads(answer.body)) == (200, {"accepted": 5})
    answer = await running.post(lines(*SESSION[5:]), content_type="text/plain")
    assert (answer.status, orjson.loads(answer.body)) == (200, {"accepted": len(SESSION) - 5})
    assert answer.headers["access-control-allow-origin"] == "*"
    [by_http] = await sessions(running.agent, 1)

    clock = FakeClock()
    cfg = make_config(tmp_path / "sock", survey={"enabled": False})
    agent = Agent(cfg, clock=clock, store=MemoryBuffer(BufferSection(), clock), upload=False)
    await agent.start()
    sock = EventsSocketSource(Path(cfg.player.events_socket), agent.feed)
    await sock.start()
    task = asyncio.create_task(sock.run())
    try:
        await send(Path(cfg.player.events_socket), *SESSION)
        [by_socket] = await sessions(agent, 1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await agent.stop()
    for rec in (by_http, by_socket):
        rec.pop("id")
    assert by_http == by_socket
    qos = by_http["qos"]
    assert qos["startup_ms"] == 900
    assert qos["rebuffer_count"] == 1  # the stall right after the seek is the seek's own
    assert qos["bitrate_switches"] == 1
    assert running.source.accepted == len(SESSION)


async def test_bad_lines_are_named_and_good_ones_taken(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    body = lines(SESSION[0], b"not json", SESSION[1], {"event": "dance"},
                 {"event": "bitrate", "kbps": -5}, SESSION[-1])
    with caplog.at_level(logging.WARNING):
        answer = await running.post(body)
    doc = orjson.loads(answer.body)
    assert answer.status == 400
    assert doc["accepted"] == 3
    assert [b["line"] for b in doc["bad_lines"]] == [2, 4, 5]
    assert "not JSON" in doc["bad_lines"][0]["error"]
    assert "event: unknown or missing ('dance')" in doc["bad_lines"][1]["error"]
    assert "kbps" in doc["bad_lines"][2]["error"]
    assert doc["error"].startswith("3 bad line(s) skipped, 3 taken: line 2: not JSON")
    assert sum("bad player event line" in r.getMessage() for r in caplog.records) == 3
    # The good lines made a whole session: play, first frame, stop.
    [rec] = await sessions(running.agent, 1)
    assert rec["channel"] == "NPO1" and rec["qos"]["startup_ms"] == 900
    assert running.source.bad_lines == 3

    answer = await running.post(b"\n  \n")
    assert answer.status == 400
    assert orjson.loads(answer.body)["error"] == "no event lines in the body"


async def test_a_body_over_the_limit_is_refused_whole(running: Running) -> None:
    play = orjson.dumps(SESSION[0]) + b"\n"
    big = play * (MAX_BODY // len(play) + 1)
    assert len(big) > MAX_BODY
    answer = await running.post(big)
    assert answer.status == 413
    assert str(MAX_BODY) in orjson.loads(answer.body)["error"]
    # Chunked, so the size is only known while reading: refused too, nothing fed.
    head = (b"POST /events HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (len(big), big)
    got = await raw(running.source.port, head + chunk + b"0\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 413 ")
    assert running.source.accepted == 0
    # One just under the limit is taken, and the endpoint still serves.
    fits = play * (MAX_BODY // len(play))
    answer = await running.post(fits)
    assert (answer.status, orjson.loads(answer.body)["accepted"]) == (200, len(fits) // len(play))


async def test_expect_100_continue_is_answered(running: Running) -> None:
    # curl sends "Expect: 100-continue" for bodies over 1 KiB and waits for it.
    body = lines(*SESSION)
    head = (b"POST /events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"expect: 100-continue\r\nconnection: close\r\ncontent-length: %d\r\n\r\n"
            % len(body))
    got = await raw(running.source.port, head, then=body)
    assert got.startswith(b"HTTP/1.1 100 ")
    assert b"HTTP/1.1 200 " in got and b'{"accepted":13}' in got
    # Too large with Expect: refused before the body is sent.
    head = (b"POST /events HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n"
            b"content-length: %d\r\n\r\n" % (MAX_BODY + 1))
    got = await raw(running.source.port, head)
    assert got.startswith(b"HTTP/1.1 413 ")


async def test_cors_other_methods_paths_and_bad_http(running: Running) -> None:
    port = running.source.port
    got = await raw(port, b"OPTIONS /events HTTP/1.1\r\nhost: x\r\norigin: http://ui.local\r\n"
                          b"access-control-request-method: POST\r\n"
                          b"access-control-request-headers: content-type\r\n"
                          b"connection: close\r\n\r\n")
    head = got.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 204 ")
    for header in (b"access-control-allow-origin: *", b"access-control-allow-methods: post",
                   b"access-control-allow-headers: content-type",
                   b"access-control-allow-private-network: true"):
        assert header in head, header
    assert b"access-control-allow-credentials" not in head
    got = await raw(port, b"GET /events HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 405 ") and b"allow: POST, OPTIONS" in got
    answer = await running.client.post(f"http://127.0.0.1:{port}/elsewhere", body=b"{}",
                                       headers={})
    assert answer.status == 404 and b"/events" in answer.body
    got = await raw(port, b"this is not HTTP\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 400 ")
    # Still serving, on a kept-alive connection: two requests, one connection.
    for _ in range(2):
        answer = await running.post(lines(SESSION[0]))
        assert answer.status == 200
    assert len(running.source._conns) == 1


async def test_binds_loopback_only_and_the_config_knows_the_port(tmp_path: Path) -> None:
    source = HttpEventsSource(0, _ignore)
    await source.start()
    try:
        assert source._server is not None
        addrs = {s.getsockname()[0] for s in source._server.sockets}
        assert addrs == {"127.0.0.1"}
    finally:
        await source.close()
    cfg = make_config(tmp_path, player={"source": "http", "http_port": 9123})
    assert (cfg.player.source, cfg.player.http_port) == ("http", 9123)
    assert make_config(tmp_path, player={"source": "http"}).player.http_port == 8497
    with pytest.raises(ConfigError, match=r"^player\.http_port: must be a port between 1"):
        make_config(tmp_path, player={"source": "http", "http_port": 70000})


async def test_a_port_in_use_is_a_clear_error() -> None:
    first = HttpEventsSource(0, _ignore)
    await first.start()
    try:
        second = HttpEventsSource(first.port, _ignore)
        with pytest.raises(Exception, match=r"^player\.http_port: cannot listen on 127\.0\.0\.1"):
            await second.start()
    finally:
        await first.close()


async def _ignore(event: object) -> None:
    return None


async def test_stb_widget_run_serves_http_and_idles(tmp_path: Path) -> None:
    """`stb-widget run` with source = "http", as its own process: it listens where the
    config says, takes a session over HTTP, and burns no CPU while a page keeps its
    connection open and sends nothing (no polling; the idle timeout is a timer)."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f"""
box_id = "http-1"
data_dir = "{tmp_path / 'data'}"
[collector]
url = "http://127.0.0.1:9/"
token = "t"
boot_jitter_s = 0
[player]
source = "http"
http_port = {port}
""")
    root = Path(__file__).resolve().parents[2]
    log = tmp_path / "agent.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "stb_widget.cli", "run", "--config",
                                 str(cfg)], cwd=root, stdin=subprocess.DEVNULL, stderr=err)
    client = HttpClient(timeout_s=10, connect_timeout_s=5)
    try:
        for _ in range(200):
            if f"http://127.0.0.1:{port}/events" in log.read_text():
                break
            await asyncio.sleep(0.05)
        answer = await client.post(f"http://127.0.0.1:{port}/events", body=lines(*SESSION),
                                   headers={})
        assert (answer.status, orjson.loads(answer.body)) == (200, {"accepted": len(SESSION)})

        def cpu() -> float:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        await asyncio.sleep(1.0)
        before = cpu()
        await asyncio.sleep(3.0)  # the client's kept-alive connection stays open
        assert cpu() - before <= 0.02
    finally:
        await client.close()
        proc.terminate()
        assert proc.wait(10) == 0
    text = log.read_text()
    assert "source http" in text and "Traceback" not in text, text


def test_bitrate_height_and_dropped_count_are_kept() -> None:
    from stb_widget.events import parse_event_line

    ev = parse_event_line(b'{"event": "bitrate", "kbps": 2500, "height": 720, "at": 1}')
    assert (ev.kbps, ev.height) == (2500.0, 720)
    # A height that is no pixel count is dropped; the bitrate stays good.
    for bad in (b'"720"', b"0", b"-1", b"true", b"1.5", b"70000"):
        ev = parse_event_line(b'{"event": "bitrate", "kbps": 800, "height": ' + bad + b"}")
        assert (ev.kbps, ev.height) == (800.0, None), bad
    assert parse_event_line(b'{"event": "dropped_frames", "count": 12}').count == 12
