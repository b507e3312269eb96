"""A real mpv playing a throttled HLS stream from 127.0.0.1: real stalls, startup, bitrate.

ffmpeg makes a 20 s stream with two variants; an aiohttp server delays some segments so
that mpv's small cache runs dry. mpv and ffmpeg come from Debian (scripts/setup-system);
where they are missing the test is skipped locally but fails in CI (``CI`` set).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from protocol import SurveyRecord
from stb_widget.agent import Agent
from stb_widget.buffer import MemoryBuffer
from stb_widget.clock import SystemClock
from stb_widget.config import BufferSection
from stb_widget.sources.mpv_ipc import MpvIpcSource, Naming
from stb_widget.survey_port import SurveyRequest, SurveySink

from .conftest import make_config


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not installed (scripts/setup-system installs it)")
        pytest.skip(f"{tool} is not installed; run scripts/setup-system")
    return path


@pytest.fixture(scope="module")
def hls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ffmpeg = need("ffmpeg")
    out = tmp_path_factory.mktemp("hls")
    subprocess.run(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "lavfi",
         "-i", "testsrc=size=320x180:rate=25", "-t", "20",
         "-filter_complex", "[0:v]split=2[a][b];[b]scale=160:90[b2]",
         "-map", "[a]", "-map", "[b2]", "-c:v", "libx264", "-preset", "ultrafast",
         "-g", "25", "-keyint_min", "25", "-sc_threshold", "0",
         "-b:v:0", "800k", "-b:v:1", "200k",
         "-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod",
         "-hls_segment_filename", str(out / "v%v/seg%03d.ts"),
         "-master_pl_name", "master.m3u8", "-var_stream_map", "v:0 v:1",
         str(out / "v%v/index.m3u8")],
        check=True, timeout=120,
    )
    return out


@pytest.fixture
async def stream_url(hls_dir: Path) -> AsyncIterator[str]:
    """Serves the stream; segments 6 to 8 arrive 3 s late, so playback stalls."""

    async def handler(request: web.Request) -> web.StreamResponse:
        rel = request.match_info["path"]
        path = (hls_dir / rel).resolve()
        if not path.is_relative_to(hls_dir) or not path.is_file():
            raise web.HTTPNotFound()
        m = re.search(r"seg(\d+)\.ts$", rel)
        if m and 6 <= int(m.group(1)) <= 8:
            await asyncio.sleep(3.0)
        return web.FileResponse(path)

    app = web.Application()
    app.router.add_get("/{path:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/master.m3u8"
    await runner.cleanup()


async def start_mpv(sock: Path) -> asyncio.subprocess.Process:
    mpv = need("mpv")
    proc = await asyncio.create_subprocess_exec(
        mpv, "--no-config", "--idle=yes", "--vo=null", "--ao=null", "--ytdl=no",
        f"--input-ipc-server={sock}", "--cache=yes", "--cache-secs=2",
        "--demuxer-readahead-secs=1", "--cache-pause-initial=no", "--cache-pause-wait=1",
        "--msg-level=all=error", "--really-quiet",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
    )
    for _ in range(200):
        if sock.exists():
            break
        await asyncio.sleep(0.05)
    return proc


async def command(sock: Path, *args: object) -> None:
    _, writer = await asyncio.open_unix_connection(str(sock))
    writer.write(orjson.dumps({"command": list(args)}) + b"\n")
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def stop_mpv(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
    await proc.wait()


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_real_mpv_reports_stall_startup_and_bitrate(tmp_path: Path, stream_url: str) -> None:
    sock = tmp_path / "mpv.sock"
    clock = SystemClock()
    cfg = make_config(tmp_path, player={"source": "mpv", "mpv_socket": str(sock)},
                      survey={"enabled": False})
    agent = Agent(cfg, clock=clock, store=MemoryBuffer(BufferSection(), clock), upload=False)
    await agent.start()
    source = MpvIpcSource(sock, agent.feed, clock, reconnect_max_s=0.2)
    task = asyncio.create_task(source.run())
    proc = await start_mpv(sock)
    try:
        await asyncio.wait_for(source.connected.wait(), 10)
        await command(sock, "loadfile", stream_url)
        for _ in range(600):
            if agent.counts["sessions"]:
                break
            await asyncio.sleep(0.1)
        records = [orjson.loads(r.body) for r in await agent.store.fetch(10, 10**9)]
        assert len(records) == 1, records
        q = records[0]["qos"]
        print("mpv session qos:", q)
        assert q["failed"] is False
        assert q["startup_ms"] is not None and 0 < q["startup_ms"] < 10_000
        assert q["rebuffer_count"] >= 1 and q["rebuffer_s"] > 0.5, q
        assert q["avg_bitrate_kbps"] is not None and q["avg_bitrate_kbps"] > 50, q
        assert q["watch_s"] >= 18, q
        # The stream's two renditions are 320x180 and 160x90 (see ``stream_url``).
        assert q["video_height"] in (90, 180), q
        assert q["dropped_frames"] is not None and q["dropped_frames"] >= 0, q

        # mpv goes away mid-play: the session ends as failed; a new mpv is picked up.
        await command(sock, "loadfile", stream_url)
        for _ in range(100):
            if agent.tracker.open_session_id is not None:
                break
            await asyncio.sleep(0.05)
        await stop_mpv(proc)
        for _ in range(100):
            if agent.counts["sessions"] == 2:
                break
            await asyncio.sleep(0.05)
        records = [orjson.loads(r.body) for r in await agent.store.fetch(10, 10**9)]
        assert len(records) == 2 and records[1]["qos"]["failed"] is True
        sock.unlink(missing_ok=True)
        proc = await start_mpv(sock)
        await asyncio.wait_for(source.connected.wait(), 10)
    finally:
        await stop_mpv(proc)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await agent.stop()


def kinds(src: MpvIpcSource, *msgs: dict[str, object]) -> list[str]:
    out: list[str] = []
    for m in msgs:
        out += [e.kind for e in src.translate(m)]
    return out


def prop(name: str, *data: object) -> dict[str, object]:
    msg: dict[str, object] = {"event": "property-change", "name": name}
    if data:
        msg["data"] = data[0]
    return msg


async def _nothing(event: object) -> None:
    return None


def test_mpv_translation_rules() -> None:
    src = MpvIpcSource("/nonexistent", _nothing, SystemClock())
    assert kinds(src, prop("pause", True)) == []  # outside a file: state only
    assert kinds(src, {"event": "start-file"}) == ["play", "pause"]  # pause survives files
    assert kinds(src, prop("pause", False)) == ["resume"]
    # mpv's own seek while loading is startup, not a viewer seek
    assert kinds(src, prop("seeking", True), prop("seeking", False)) == []
    assert kinds(src, prop("paused-for-cache"), prop("hls-bitrate", "max")) == []  # unknown
    assert kinds(src, {"event": "playback-restart"}) == ["first_frame"]
    assert kinds(src, {"event": "playback-restart"}) == []
    assert kinds(src, prop("paused-for-cache", True), prop("paused-for-cache", True),
                 prop("paused-for-cache"), prop("paused-for-cache", False)) == \
        ["stall_start", "stall_end"]
    assert kinds(src, prop("seeking", True), prop("seeking", False)) == ["seek"]
    evs = src.translate(prop("video-bitrate", 2_000_000))
    assert evs[0].kbps == 2000.0 and not evs[0].nominal
    evs = src.translate(prop("current-tracks/video/hls-bitrate", 5_400_000))
    assert evs[0].kbps == 5400.0 and evs[0].nominal
    assert src.translate(prop("video-bitrate", 1_000_000)) == []  # nominal known: ignored
    assert kinds(src, {"event": "end-file", "reason": "error", "file_error": "x"}) == ["error"]
    for reason in ("eof", "stop", "quit"):
        kinds(src, {"event": "start-file"})
        assert kinds(src, {"event": "end-file", "reason": reason}) == ["stop"]
    assert kinds(src, {"event": "end-file", "reason": "eof"}) == []  # no file open


def test_mpv_height_and_dropped_frames() -> None:
    src = MpvIpcSource("/nonexistent", _nothing, SystemClock())
    assert src.translate(prop("video-params/h", 720)) == []  # outside a file
    kinds(src, {"event": "start-file"})
    assert [(e.kind, e.height) for e in src.translate(prop("video-params/h", 1080))] == \
        [("height", 1080)]
    assert src.translate(prop("video-params/h")) == []  # unknown: no height event
    # The running count is the output's drops plus the decoder's.
    assert [e.count for e in src.translate(prop("frame-drop-count", 3))] == [3]
    assert [e.count for e in src.translate(prop("decoder-frame-drop-count", 4))] == [7]
    assert [e.count for e in src.translate(prop("frame-drop-count", 5))] == [9]
    assert src.translate(prop("decoder-frame-drop-count")) == []  # unknown
    assert src.translate(prop("frame-drop-count", True)) == []  # not a count
    # A new file counts from its own start: the old counters are forgotten.
    kinds(src, {"event": "end-file", "reason": "eof"}, {"event": "start-file"})
    assert [e.count for e in src.translate(prop("decoder-frame-drop-count", 1))] == [1]


# -- channel changes, naming, a playback already running, mpv going away -------------------


@pytest.fixture(scope="module")
def channel_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two 30 s "channels" with a title in their metadata, under a ``live/`` directory."""
    ffmpeg = need("ffmpeg")
    out = tmp_path_factory.mktemp("channels") / "live"
    out.mkdir()
    files: dict[str, Path] = {}
    for title, pattern in (("NPO1", "testsrc"), ("RTL4", "smptebars")):
        path = out / f"{title.lower()}.mkv"
        subprocess.run(
            [ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "lavfi",
             "-i", f"{pattern}=size=160x90:rate=25", "-t", "30", "-c:v", "libx264",
             "-preset", "ultrafast", "-metadata", f"title={title}", str(path)],
            check=True, timeout=120,
        )
        files[title] = path
    return files


class RecordingPresenter:
    """Counts the questions put up (each is dismissed at once)."""

    def __init__(self) -> None:
        self.requests: list[str] = []

    async def present(self, request: SurveyRequest, sink: SurveySink) -> SurveyRecord:
        self.requests.append(request.session_id or "")
        rec = SurveyRecord(id=request.survey_id, kind="survey", session_id=request.session_id,
                           shown_at=datetime.now(UTC), outcome="dismissed")
        await sink.finished(rec)
        return rec


async def until(check: Callable[[], bool], seconds: float, what: str) -> None:
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_real_mpv_channel_change_is_a_zap_not_a_question(
    tmp_path: Path, channel_files: dict[str, Path]
) -> None:
    """``loadfile … replace`` (a channel change) ends the session with end-file/stop and
    starts the next one at once: no question over the next channel. Stopping for good is
    followed by the question once the player stayed idle ``settle_s``."""
    sock = tmp_path / "mpv.sock"
    clock = SystemClock()
    cfg = make_config(tmp_path, player={"source": "mpv", "mpv_socket": str(sock),
                                        "content_type_live": "/live/"},
                      survey={"min_watch_s": 1, "sample_rate": 1.0, "settle_s": 1.5})
    presenter = RecordingPresenter()
    agent = Agent(cfg, clock=clock, store=MemoryBuffer(BufferSection(), clock),
                  presenters=lambda: presenter, upload=False)
    await agent.start()
    source = MpvIpcSource(sock, agent.feed, clock, reconnect_max_s=0.2,
                          naming=Naming.from_config(cfg.player))
    task = asyncio.create_task(source.run())
    proc = await start_mpv(sock)
    try:
        await asyncio.wait_for(source.connected.wait(), 10)
        await command(sock, "loadfile", str(channel_files["NPO1"]))
        await asyncio.sleep(2.5)
        await command(sock, "loadfile", str(channel_files["RTL4"]), "replace")  # zap
        await until(lambda: agent.counts["sessions"] == 1, 10, "the first session")
        await asyncio.sleep(2.5)  # longer than settle_s: the question would be up by now
        assert presenter.requests == [], "a question came up over the next channel"
        assert agent.policy.reasons == {"zapped": 1}
        await asyncio.sleep(1.0)
        await command(sock, "stop")  # the viewer switches off: idle from here
        await until(lambda: agent.counts["sessions"] == 2, 10, "the second session")
        await asyncio.sleep(0.5)
        assert presenter.requests == []  # not yet: settle_s has not passed
        await until(lambda: len(presenter.requests) == 1, 5, "the question after settle_s")
        records = [orjson.loads(r.body) for r in await agent.store.fetch(10, 10**9)]
        sessions = [r for r in records if r["kind"] == "session"]
        print("sessions:", [(s["channel"], s["content_type"], s["qos"]["watch_s"])
                            for s in sessions])
        assert [(s["channel"], s["content_type"]) for s in sessions] == \
            [("NPO1", "live"), ("RTL4", "live")]
        assert presenter.requests == [sessions[1]["id"]]
        assert all(s["qos"]["startup_ms"] is not None for s in sessions)
    finally:
        await stop_mpv(proc)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await agent.stop()


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_real_mpv_playing_before_the_agent_connects_is_logged_and_exits_back_off(
    tmp_path: Path, channel_files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    sock = tmp_path / "mpv.sock"
    clock = SystemClock()
    cfg = make_config(tmp_path, player={"source": "mpv", "mpv_socket": str(sock)},
                      survey={"enabled": False})
    agent = Agent(cfg, clock=clock, store=MemoryBuffer(BufferSection(), clock), upload=False)
    await agent.start()
    proc = await start_mpv(sock)
    await command(sock, "loadfile", str(channel_files["NPO1"]))
    await asyncio.sleep(1.0)  # playing before the agent is there
    source = MpvIpcSource(sock, agent.feed, clock, reconnect_max_s=1.0,
                          naming=Naming.from_config(cfg.player))
    caplog.set_level(logging.INFO, logger="stb_widget.sources.mpv_ipc")
    task = asyncio.create_task(source.run())
    try:
        await asyncio.wait_for(source.connected.wait(), 10)
        await until(lambda: any("already playing" in r.getMessage() for r in caplog.records),
                    5, "the log line about the file already playing")
        missed = next(r.getMessage() for r in caplog.records if "already playing" in r.getMessage())
        assert str(channel_files["NPO1"]) not in missed  # never the path: a URL has tokens
        # The next file is measured.
        await command(sock, "loadfile", str(channel_files["RTL4"]), "replace")
        await until(lambda: agent.tracker.open_session_id is not None, 10, "the next session")

        # mpv quits (it says the file ended: reason quit, not a failure); the reconnects
        # back off, logged once.
        caplog.clear()
        await command(sock, "quit")
        await proc.wait()
        await until(lambda: agent.counts["sessions"] == 1, 5, "the session")
        before = source.attempts
        await asyncio.sleep(4.0)
        attempts = source.attempts - before
        lines = [r.getMessage() for r in caplog.records]
        print(f"outage of 4 s: {attempts} connect attempts, log lines: {lines}")
        assert 2 <= attempts <= 12, attempts  # 0.1 s doubling to 1 s, with jitter
        assert len(lines) <= 2, lines  # "connection lost" (+ at most "not reachable")
        caplog.clear()
        proc = await start_mpv(sock)
        await asyncio.wait_for(source.connected.wait(), 10)
        lines = [r.getMessage() for r in caplog.records]
        assert any("again after" in line for line in lines), lines
        records = [orjson.loads(r.body) for r in await agent.store.fetch(10, 10**9)]
        assert len(records) == 1 and records[0]["qos"]["failed"] is False
        assert records[0]["channel"] == "RTL4"  # from the file's title
    finally:
        await stop_mpv(proc)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await agent.stop()


def test_naming_rules() -> None:
    naming = Naming.from_config(make_config(
        Path("/tmp"), player={"source": "mpv", "channel_from": "path",
                              "channel_pattern": r"/ch/(?P<channel>[^/?]+)",
                              "content_type_vod": r"/vod/", "content_type_live": r"/ch/"}).player)
    assert naming.describe({"path": "http://h/ch/NPO2/i.m3u8?token=s"}) == ("NPO2", "live")
    assert naming.describe({"path": "http://h/vod/film.m3u8"}) == (None, "vod")
    title = Naming()
    # mpv's fallback title is the file name (perhaps with a URL's query): not a channel.
    assert title.describe({"media-title": "i.m3u8?t=1", "filename": "i.m3u8?t=1"}) == \
        (None, None)
    assert title.describe({"media-title": " NPO 1 ", "filename": "x.ts"}) == ("NPO 1", None)
    assert Naming(channel_from="").describe({"media-title": "NPO1"}) == (None, None)
    assert title.describe({"media-title": "NPO\x001", "filename": "x.ts"}) == (None, None)
