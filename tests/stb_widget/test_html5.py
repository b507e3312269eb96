"""The HTML5 bridge in a real browser: Shaka Player plays an ffmpeg-made DASH stream in
headless Chromium, through a throttling proxy that causes a real stall and rendition
switches; the bridge posts to the agent's ``http`` source; the session the agent records
must agree with Shaka's own ``getStats()``. hls.js, dash.js, a plain ``<video>`` and
player errors go the same way, with what each offers to compare with.

Parts, all real: Chromium (Debian's, driven by Playwright), Shaka Player 5.2.12, hls.js
1.7.4 and dash.js 5.2.1 from npm (vendored in ``vendor/``, licences kept), DASH, HLS and
MP4 streams made by ffmpeg at test time, Python's http.server with byte ranges as the
origin (its own process), and a small asyncio proxy in this test between the two that
paces every byte at a rate the test changes.

Where Chromium, ffmpeg or Playwright is missing the test is skipped locally and fails
under CI (``CI`` set), as the other tests that need real tools do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from stb_widget.agent import Agent
from stb_widget.bridge import BRIDGE_JS
from stb_widget.buffer import MemoryBuffer
from stb_widget.config import BufferSection
from stb_widget.events import PlayerEvent
from stb_widget.sources.http_events import HttpEventsSource

from .conftest import FakeClock, make_config

pytestmark = pytest.mark.slow

SHAKA = Path(__file__).parent / "vendor" / "shaka-player-5.2.12" / "shaka-player.dash-es2021.js"
HLSJS = Path(__file__).parent / "vendor" / "hls.js-1.7.4" / "hls.light.min.js"
DASHJS = Path(__file__).parent / "vendor" / "dashjs-5.2.1" / "dash.mediaplayer.min.js"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--autoplay-policy=no-user-gesture-required"]
#: The renditions: (height, nominal bits/s). ffmpeg's ultrafast x264 overshoots the
#: nominal rate a little; the manifest carries the nominal one, as real packagers do.
RENDITIONS = ((144, 150_000), (240, 400_000), (360, 1_000_000))
DURATION_S = 24
FAST = 500_000   # bytes/s through the proxy: 4 Mbit/s, above every rendition
SLOW = 12_000    # bytes/s: ~0.1 Mbit/s, below every rendition: the buffer runs dry


def need(tool: str, found: bool, how: str) -> None:
    if found:
        return
    message = f"{tool} is missing: {how}"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, so the HTML5 test must run: {message}")
    pytest.skip(message)


def make_stream(out: Path) -> None:
    """A DASH stream: three renditions of ``DURATION_S`` s, 1 s segments, video only."""
    args = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
            f"testsrc2=size=640x360:rate=25:duration={DURATION_S}"]
    args += ["-map", "0:v"] * len(RENDITIONS)
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
             "-g", "25", "-keyint_min", "25", "-sc_threshold", "0"]
    for i, (height, bps) in enumerate(RENDITIONS):
        width = (height * 16 // 9) // 2 * 2
        args += [f"-filter:v:{i}", f"scale={width}:{height}", f"-b:v:{i}", str(bps),
                 f"-maxrate:v:{i}", str(bps), f"-bufsize:v:{i}", str(bps)]
    args += ["-f", "dash", "-seg_duration", "1", "-use_template", "1", "-use_timeline", "0",
             "-adaptation_sets", "id=0,streams=v", str(out / "manifest.mpd")]
    subprocess.run(args, check=True, timeout=120)


HLS_S = 16


def make_hls(out: Path) -> None:
    """An HLS stream (fMP4 segments of 1 s) with the same renditions, for hls.js."""
    (out / "hls").mkdir()
    args = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
            f"testsrc2=size=640x360:rate=25:duration={HLS_S}"]
    args += ["-map", "0:v"] * len(RENDITIONS)
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
             "-g", "25", "-keyint_min", "25", "-sc_threshold", "0"]
    for i, (height, bps) in enumerate(RENDITIONS):
        width = (height * 16 // 9) // 2 * 2
        args += [f"-filter:v:{i}", f"scale={width}:{height}", f"-b:v:{i}", str(bps),
                 f"-maxrate:v:{i}", str(bps), f"-bufsize:v:{i}", str(bps)]
    args += ["-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod",
             "-hls_segment_type", "fmp4", "-master_pl_name", "master.m3u8",
             "-var_stream_map", " ".join(f"v:{i}" for i in range(len(RENDITIONS))),
             "-hls_segment_filename", str(out / "hls" / "v%v-%03d.m4s"),
             "-hls_fmp4_init_filename", "init.mp4", str(out / "hls" / "v%v.m3u8")]
    subprocess.run(args, check=True, timeout=120)


PLAIN_S = 8


def make_plain(out: Path) -> None:
    """A progressive MP4 for a plain ``<video>``: 240p, ``PLAIN_S`` s, index first."""
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    f"testsrc2=size=426x240:rate=25:duration={PLAIN_S}", "-c:v", "libx264",
                    "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25",
                    "-movflags", "+faststart", str(out / "plain.mp4")], check=True, timeout=120)


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>box UI</title></head>
<body style="margin:0;background:#000">
<video id="tv" muted autoplay playsinline width="640" height="360"></video>
<script src="shaka.js"></script>
<script src="nps-bridge.js"></script>
<script>
window.start = async function (agentPort) {
  const video = document.getElementById("tv");
  const player = new shaka.Player();
  await player.attach(video);
  // A box UI tuned for live TV keeps a short buffer; with it, a slow network shows as
  // stalls within seconds (the test's stream is short).
  player.configure({
    streaming: {bufferingGoal: 3, rebufferingGoal: 1, bufferBehind: 30,
                observeQualityChanges: true},
    // Start from a low estimate, not Chromium's network guess: the first switch is up.
    abr: {defaultBandwidthEstimate: 200000, useNetworkInformation: false, switchInterval: 1},
  });
  window.player = player;
  window.nps = NpsBridge.attach(video, {
    shaka: player, endpoint: "http://127.0.0.1:" + agentPort + "/events", flushMs: 100,
  });
  nps.channel("Test 1", "vod");
  await player.load("manifest.mpd");
};
</script>
</body></html>
"""

HLS_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>box UI, hls.js</title></head>
<body style="margin:0;background:#000">
<video id="tv" muted autoplay playsinline width="640" height="360"></video>
<script src="hls.js"></script>
<script src="nps-bridge.js"></script>
<script>
window.waits = 0;   // counted here, apart from the bridge: stalls after the first frame
window.start = function (agentPort) {
  const video = document.getElementById("tv");
  let framed = false;
  video.addEventListener("playing", () => { framed = true; });
  video.addEventListener("waiting", () => { if (framed && !video.seeking) { waits += 1; } });
  const hls = new Hls({startLevel: 0, maxBufferLength: 3, maxMaxBufferLength: 4,
                       abrEwmaDefaultEstimate: 200000, capLevelToPlayerSize: false});
  window.hls = hls;
  window.level = () => hls.levels[hls.currentLevel];
  window.nps = NpsBridge.attach(video, {
    hls: hls, endpoint: "http://127.0.0.1:" + agentPort + "/events", flushMs: 100,
  });
  nps.channel("HLS 1", "live");
  hls.loadSource("hls/master.m3u8");
  hls.attachMedia(video);
};
</script>
</body></html>
"""

DASHJS_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>box UI, dash.js</title></head>
<body style="margin:0;background:#000">
<video id="tv" muted autoplay playsinline width="640" height="360"></video>
<script src="dash.js"></script>
<script src="nps-bridge.js"></script>
<script>
window.waits = 0;   // counted here, apart from the bridge: stalls after the first frame
window.start = function (agentPort) {
  const video = document.getElementById("tv");
  let framed = false;
  video.addEventListener("playing", () => { framed = true; });
  video.addEventListener("waiting", () => { if (framed && !video.seeking) { waits += 1; } });
  const player = dashjs.MediaPlayer().create();
  player.updateSettings({streaming: {
    buffer: {bufferTimeDefault: 3, bufferTimeAtTopQuality: 3, bufferTimeAtTopQualityLongForm: 3},
    abr: {initialBitrate: {video: 200}, limitBitrateByPortal: false},
  }});
  window.player = player;
  window.level = () => player.getCurrentRepresentationForType("video");
  window.nps = NpsBridge.attach(video, {
    dashjs: player, endpoint: "http://127.0.0.1:" + agentPort + "/events", flushMs: 100,
  });
  nps.channel("DASH 1", "live");
  player.initialize(video, "manifest.mpd", true);
};
</script>
</body></html>
"""

PLAIN_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>box UI, plain video</title></head>
<body style="margin:0;background:#000">
<video id="tv" muted autoplay playsinline width="426" height="240"></video>
<script src="nps-bridge.js"></script>
<script>
window.start = function (agentPort) {
  const video = document.getElementById("tv");
  window.nps = NpsBridge.attach(video, {
    endpoint: "http://127.0.0.1:" + agentPort + "/events", flushMs: 100,
  });
  nps.channel("Plain 1", "vod");
  video.src = "plain.mp4";
};
</script>
</body></html>
"""


class ThrottlingProxy:
    """Forwards each request to the origin (a fresh connection, ``Connection: close``)
    and sends the answer back paced at ``rate`` bytes/s, read anew for every chunk: a
    change of rate applies at once, to downloads already running too."""

    CHUNK = 2048

    def __init__(self, origin_port: int) -> None:
        self.origin_port = origin_port
        self.rate = FAST
        self.requests: list[str] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        o_writer: asyncio.StreamWriter | None = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            self.requests.append(lines[0].decode("latin-1"))
            kept = [ln for ln in lines[1:] if ln and not ln.lower().startswith(
                (b"connection:", b"keep-alive:", b"proxy-connection:"))]
            o_reader, o_writer = await asyncio.open_connection("127.0.0.1", self.origin_port)
            o_writer.write(b"\r\n".join([lines[0], *kept, b"connection: close", b"", b""]))
            await o_writer.drain()
            loop = asyncio.get_running_loop()
            while True:
                chunk = await o_reader.read(self.CHUNK)
                if not chunk:
                    break
                started = loop.time()
                writer.write(chunk)
                await writer.drain()
                await asyncio.sleep(max(0.0, len(chunk) / self.rate - (loop.time() - started)))
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            if o_writer is not None:
                o_writer.close()
            writer.close()


#: The origin server, run as its own process: Python's http.server, plus the byte ranges
#: a browser needs to seek in a progressive MP4 (without them the file is not seekable).
ORIGIN = """
import http.server, os, re, sys
class H(http.server.SimpleHTTPRequestHandler):
    def send_head(self):
        m = re.fullmatch(r"bytes=(\\d+)-(\\d*)", self.headers.get("Range", ""))
        path = self.translate_path(self.path)
        if m is None or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        start = int(m.group(1))
        end = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
        f = open(path, "rb")
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.remaining = end - start + 1
        return f
    def copyfile(self, source, outputfile):
        n = getattr(self, "remaining", None)
        outputfile.write(source.read(n) if n is not None else source.read())
    def log_message(self, *args):
        pass
port, root = int(sys.argv[1]), sys.argv[2]
os.chdir(root)
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
async def origin(tmp_path: Path) -> AsyncIterator[tuple[Path, int]]:
    need("ffmpeg", shutil.which("ffmpeg") is not None, "scripts/setup-system installs it")
    site = tmp_path / "site"
    site.mkdir()
    make_stream(site)
    make_plain(site)
    make_hls(site)
    (site / "index.html").write_text(PAGE)
    (site / "hls.html").write_text(HLS_PAGE)
    (site / "dashjs.html").write_text(DASHJS_PAGE)
    shutil.copy(HLSJS, site / "hls.js")
    shutil.copy(DASHJS, site / "dash.js")
    (site / "plain.html").write_text(PLAIN_PAGE)
    shutil.copy(SHAKA, site / "shaka.js")
    shutil.copy(BRIDGE_JS, site / "nps-bridge.js")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", ORIGIN, str(port), str(site)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                break
            await asyncio.sleep(0.05)
        yield site, port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def wait_for(page: Any, expression: str, timeout_s: float, what: str) -> None:
    try:
        await page.wait_for_function(expression, timeout=timeout_s * 1000, polling=100)
    except Exception as exc:  # Playwright's TimeoutError: say what did not happen
        state = await page.evaluate(
            "() => ({t: document.getElementById('tv').currentTime,"
            " h: window.player && player.getStats().height,"
            " buffering: window.player && player.isBuffering()})")
        raise AssertionError(f"{what} did not happen within {timeout_s} s; page: {state}") from exc


async def test_shaka_session_agrees_with_shaka_stats(
    origin: tuple[Path, int], tmp_path: Path
) -> None:
    need("Chromium", Path(CHROMIUM).exists(), "scripts/setup-system installs Debian's chromium")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        need("playwright", False, "scripts/venv dev installs it")
        raise
    _, origin_port = origin

    clock = FakeClock()
    cfg = make_config(tmp_path, survey={"enabled": False})
    agent = Agent(cfg, clock=clock, store=MemoryBuffer(BufferSection(), clock), upload=False)
    await agent.start()
    received: list[PlayerEvent] = []

    async def feed(event: PlayerEvent) -> None:
        received.append(event)
        await agent.feed(event)

    source = HttpEventsSource(0, feed)
    await source.start()
    serving = asyncio.create_task(source.run())
    proxy = ThrottlingProxy(origin_port)
    proxy_port = await proxy.start()
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                               headless=True)
            try:
                page = await browser.new_page()
                console: list[str] = []
                page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
                page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
                await page.goto(f"http://127.0.0.1:{proxy_port}/index.html")
                await page.evaluate(f"start({source.port})")
                # 1. A fast network: Shaka starts low (its estimate is 0.2 Mbit/s) and
                #    climbs to the top rendition: switches up.
                await wait_for(page, "player.getStats().height === 360 && "
                               "document.getElementById('tv').currentTime > 1", 20,
                               "playing the 360p rendition")
                # 2. The network drops below the lowest rendition: the 3 s buffer runs
                #    dry (a stall) and Shaka switches down.
                proxy.rate = SLOW
                await wait_for(page, "player.isBuffering()", 20, "a stall on the slow network")
                await asyncio.sleep(1.5)
                # 3. The network comes back; the viewer pauses for a second; the stream
                #    plays to its end.
                proxy.rate = FAST
                await wait_for(page, "!player.isBuffering() && "
                               "document.getElementById('tv').currentTime > 12", 30,
                               "playing on after the stall")
                await page.evaluate("document.getElementById('tv').pause()")
                await asyncio.sleep(1.0)
                await page.evaluate("document.getElementById('tv').play()")
                await wait_for(page, "document.getElementById('tv').ended", 60,
                               "the end of the stream")
                stats: dict[str, Any] = await page.evaluate("player.getStats()")
                await page.evaluate("nps.flush()")
                for _ in range(100):
                    if received and received[-1].kind == "stop":
                        break
                    await asyncio.sleep(0.05)
            finally:
                await browser.close()
        records = [orjson.loads(r.body) for r in await agent.store.fetch(100, 10**9)]
    finally:
        await proxy.close()
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        await agent.stop()

    assert not [c for c in console if "nps-bridge" in c or c.startswith("pageerror")], console
    assert source.bad_lines == 0
    kinds = [e.kind for e in received]
    assert kinds[0] == "play" and kinds[-1] == "stop", kinds
    assert "first_frame" in kinds
    # One pause, one resume: Shaka's own play() after loading is no resume.
    assert (kinds.count("pause"), kinds.count("resume")) == (1, 1), kinds
    [rec] = [r for r in records if r["kind"] == "session"]
    qos = rec["qos"]
    assert (rec["channel"], rec["content_type"], qos["failed"]) == ("Test 1", "vod", False)

    # Stalls. Shaka's state history: "buffering" entries after the first "playing" are
    # rebuffering. The bridge's stalls are Shaka's own "buffering" events, so the count
    # must be equal; the time may differ by the event dispatch (Date.now() in Shaka,
    # performance.now() in the bridge: a few ms an edge) and the record's rounding.
    # The figures side by side, for the test log (pytest -s) and the bench notes.
    print(f"\nhtml5: agent {qos} | shaka timeToFirstFrame={stats['timeToFirstFrame']:.3f} "
          f"loadLatency={stats['loadLatency']:.3f} bufferingTime={stats['bufferingTime']:.3f} "
          f"streamBandwidth={stats['streamBandwidth']} height={stats['height']} "
          f"droppedFrames={stats['droppedFrames']} switches={len(stats['switchHistory'])} "
          f"| bridge bitrates={[(e.kbps, e.height) for e in received if e.kind == 'bitrate']} "
          f"dropped={[e.count for e in received if e.kind == 'dropped_frames']} "
          f"events={[(e.kind, round((e.at or 0) - (received[0].at or 0), 3), e.kbps, e.height) for e in received]} "
          f"switchHistory={stats['switchHistory']} state={stats['stateHistory']}")
    history = stats["stateHistory"]
    first_play = next(i for i, h in enumerate(history) if h["state"] == "playing")
    rebuffers = [h for h in history[first_play:] if h["state"] == "buffering"]
    assert rebuffers, f"the throttling caused no stall: {history}"
    assert qos["rebuffer_count"] == len(rebuffers)
    shaka_stall_s = sum(h["duration"] for h in rebuffers)
    assert abs(qos["rebuffer_s"] - shaka_stall_s) <= 0.05 + 0.02 * len(rebuffers), \
        (qos["rebuffer_s"], shaka_stall_s)

    # Startup. Shaka's timeToFirstFrame runs from its load() start to the first painted
    # frame (requestVideoFrameCallback), as the bridge's play → first_frame does; the
    # bridge's play is Shaka's "loading" event, dispatched a few ms before Shaka takes
    # its start time (after guessing the MIME type): 100 ms covers that and timer
    # granularity. loadLatency (to loadedmetadata) comes before the first frame.
    startup_s = qos["startup_ms"] / 1000
    assert abs(startup_s - stats["timeToFirstFrame"]) <= 0.1, (startup_s, stats)
    assert stats["loadLatency"] <= startup_s + 0.05, (startup_s, stats["loadLatency"])

    # Bitrate and height. What the agent got last is what Shaka shows at the end
    # (streamBandwidth is the variant's nominal bandwidth; video only, so the stream's).
    bitrates = [e for e in received if e.kind == "bitrate"]
    assert bitrates, kinds
    assert bitrates[-1].kbps is not None
    assert abs(bitrates[-1].kbps * 1000 - stats["streamBandwidth"]) <= 500  # rounding to kbps
    assert bitrates[-1].height == stats["height"]
    assert {e.height for e in bitrates} <= {h for h, _ in RENDITIONS}
    # Up from the start, then down on the slow network, up again: switches on screen, and
    # never more than the variants Shaka chose (its switchHistory; the first is no switch).
    choices = [s for s in stats["switchHistory"] if s["type"] == "variant"]
    assert 2 <= qos["bitrate_switches"] <= len(choices) - 1, (qos, choices)
    lo, hi = min(b for _, b in RENDITIONS) / 1000, max(b for _, b in RENDITIONS) / 1000
    assert lo <= qos["avg_bitrate_kbps"] <= hi

    # Dropped frames: the bridge's last running count is Shaka's figure (both read the
    # same getVideoPlaybackQuality(); nothing is decoded after the end).
    dropped = [e.count for e in received if e.kind == "dropped_frames"]
    assert dropped, kinds
    assert dropped[-1] == stats["droppedFrames"]
    # The session's figure (contract: the last running count minus the first, or the last
    # where only one came) is Shaka's figure less what was dropped before the first count.
    assert qos["dropped_frames"] == stats["droppedFrames"] - (dropped[0] if len(dropped) > 1 else 0)
    # Height: the rendition played longest, by the heights the bridge reported as shown
    # (the picture changes a few seconds after Shaka's switchHistory picks a variant, as
    # the buffered segments play out, so that history cannot say which was on screen;
    # test_tracker checks the rule itself). Played time at each height from the events,
    # the stall and the pause taken out.
    def times(kind: str) -> list[float]:
        return [e.at or 0.0 for e in received if e.kind == kind]

    # Every stall and every pause, however many the run had (each start with its end).
    not_played = [*zip(times("stall_start"), times("stall_end"), strict=True),
                  *zip(times("pause"), times("resume"), strict=True)]
    first_frame = times("first_frame")[0]
    shown = [((e.at or 0.0), e.height) for e in bitrates]
    played: dict[int | None, float] = {}
    for (t0, h), (t1, _) in zip(shown, [*shown[1:], (times("stop")[-1], None)], strict=True):
        t0 = max(t0, first_frame)
        lost = sum(max(0.0, min(t1, b) - max(t0, a)) for a, b in not_played)
        played[h] = played.get(h, 0.0) + max(0.0, t1 - t0 - lost)
    assert qos["video_height"] == max(played, key=lambda h: played[h]), (qos, played)
    # Watch time: from the load to the end, startup and stalls in, the viewer's pause
    # out. From Shaka's state history that is every state's time but "ended" and the
    # "paused" ones after the first "playing" (the one before is Shaka's own start).
    # That history only begins once Shaka has fetched and parsed the manifest and starts
    # streaming, after load() (where the bridge's play is): the agent's figure is longer
    # by that part of the startup, which is shorter than loadLatency (load() to
    # loadedmetadata, later still); 50 ms more for the dispatch delays at the edges.
    shaka_watch_s = sum(h["duration"] for i, h in enumerate(history)
                        if h["state"] != "ended"
                        and not (h["state"] == "paused" and i > first_play))
    shaka_watch_s -= history[-1]["duration"] if history[-1]["state"] != "ended" else 0
    assert -0.05 <= qos["watch_s"] - shaka_watch_s <= stats["loadLatency"] + 0.05, \
        (qos["watch_s"], shaka_watch_s, stats["loadLatency"])
    assert qos["watch_s"] >= DURATION_S


async def test_plain_video_session(origin: tuple[Path, int], tmp_path: Path) -> None:
    """No player library: a plain <video> playing an MP4. The session opens at the new
    source, the height comes from the picture (bitrate unknown), the viewer's seek is
    a seek and not a stall, the end is a stop; the watch time is the media played."""
    need("Chromium", Path(CHROMIUM).exists(), "scripts/setup-system installs Debian's chromium")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        need("playwright", False, "scripts/venv dev installs it")
        raise
    _, origin_port = origin
    clock = FakeClock()
    cfg = make_config(tmp_path, survey={"enabled": False})
    agent = Agent(cfg, clock=clock, store=MemoryBuffer(BufferSection(), clock), upload=False)
    await agent.start()
    received: list[PlayerEvent] = []

    async def feed(event: PlayerEvent) -> None:
        received.append(event)
        await agent.feed(event)

    source = HttpEventsSource(0, feed)
    await source.start()
    serving = asyncio.create_task(source.run())
    proxy = ThrottlingProxy(origin_port)
    proxy_port = await proxy.start()
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                               headless=True)
            try:
                page = await browser.new_page()
                await page.goto(f"http://127.0.0.1:{proxy_port}/plain.html")
                await page.evaluate(f"start({source.port})")
                await wait_for(page, "document.getElementById('tv').currentTime > 2", 20,
                               "playing the MP4")
                jumped: float = await page.evaluate(
                    "(() => { const v = document.getElementById('tv');"
                    " const from = v.currentTime; v.currentTime = from + 3; return 3; })()")
                await wait_for(page, "document.getElementById('tv').ended", 30, "the end")
                quality: dict[str, Any] = await page.evaluate(
                    "(() => { const q = document.getElementById('tv')"
                    ".getVideoPlaybackQuality(); return {dropped: q.droppedVideoFrames}; })()")
                for _ in range(100):
                    if received and received[-1].kind == "stop":
                        break
                    await asyncio.sleep(0.05)
            finally:
                await browser.close()
        records = [orjson.loads(r.body) for r in await agent.store.fetch(100, 10**9)]
    finally:
        await proxy.close()
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        await agent.stop()

    kinds = [e.kind for e in received]
    assert kinds[0] == "play" and kinds[-1] == "stop", kinds
    assert kinds.count("seek") == 1, kinds
    # The seek's own loading is no stall. (A stall elsewhere may happen on a loaded
    # machine, Chromium waiting for its next range: that one is real and counted.)
    [seek_at] = [e.at for e in received if e.kind == "seek"]
    stalls = [e.at for e in received if e.kind == "stall_start"]
    assert seek_at is not None and all(a is not None for a in stalls)
    assert not [a for a in stalls if 0 <= a - seek_at <= 1.0], (seek_at, stalls)  # type: ignore[operator]
    [rec] = [r for r in records if r["kind"] == "session"]
    qos = rec["qos"]
    assert (rec["channel"], rec["content_type"], qos["failed"]) == ("Plain 1", "vod", False)
    heights = {e.height for e in received if e.kind == "bitrate"}
    assert heights == {240}
    assert {e.kbps for e in received if e.kind == "bitrate"} == {None}
    assert qos["avg_bitrate_kbps"] is None and qos["bitrate_switches"] == 0
    assert qos["rebuffer_count"] == len(stalls)
    assert [e.count for e in received if e.kind == "dropped_frames"][-1] == quality["dropped"]
    # Watched: startup, then the media less the part jumped over, and any stall (the
    # seek's own loading and the frame cadence make up the 0.5 s allowed).
    played_s = PLAIN_S - jumped
    assert 0 < qos["startup_ms"] < 5000
    expected = qos["startup_ms"] / 1000 + played_s + qos["rebuffer_s"]
    assert abs(qos["watch_s"] - expected) <= 0.5, (qos, expected)


@pytest.mark.parametrize(("lib", "page_name", "channel"),
                         [("hls.js", "hls.html", "HLS 1"), ("dash.js", "dashjs.html", "DASH 1")])
async def test_library_session(origin: tuple[Path, int], tmp_path: Path, lib: str,
                               page_name: str, channel: str) -> None:
    """hls.js 1.7.4 (HLS) and dash.js 5.2.1 (DASH), vendored from npm, play the
    renditions through the throttling proxy: the session opens at the manifest load,
    quality switches are bitrates with their height, the stall on the slow network is
    counted as the page itself counts the <video>'s "waiting" after the first frame,
    the end is a stop. (These libraries have no getStats() to compare with.)"""
    need("Chromium", Path(CHROMIUM).exists(), "scripts/setup-system installs Debian's chromium")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        need("playwright", False, "scripts/venv dev installs it")
        raise
    _, origin_port = origin
    clock = FakeClock()
    cfg = make_config(tmp_path, survey={"enabled": False})
    agent = Agent(cfg, clock=clock, store=MemoryBuffer(BufferSection(), clock), upload=False)
    await agent.start()
    received: list[PlayerEvent] = []

    async def feed(event: PlayerEvent) -> None:
        received.append(event)
        await agent.feed(event)

    source = HttpEventsSource(0, feed)
    await source.start()
    serving = asyncio.create_task(source.run())
    proxy = ThrottlingProxy(origin_port)
    proxy_port = await proxy.start()
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                               headless=True)
            try:
                page = await browser.new_page()
                await page.goto(f"http://127.0.0.1:{proxy_port}/{page_name}")
                await page.evaluate(f"start({source.port})")
                await wait_for(page, "level() && level().height === 360 && "
                               "document.getElementById('tv').currentTime > 1", 20,
                               f"{lib} playing the top rendition")
                proxy.rate = SLOW
                await wait_for(page, "waits > 0", 20, "a stall on the slow network")
                await asyncio.sleep(1.0)
                proxy.rate = FAST
                await wait_for(page, "document.getElementById('tv').ended", 60, "the end")
                end: dict[str, Any] = await page.evaluate(
                    "(() => { const l = level();"
                    " const bps = l.bitrate || l.bandwidth;"
                    " const q = document.getElementById('tv').getVideoPlaybackQuality();"
                    " return {waits: waits, bitrate: bps, height: l.height,"
                    " dropped: q.droppedVideoFrames}; })()")
                for _ in range(100):
                    if received and received[-1].kind == "stop":
                        break
                    await asyncio.sleep(0.05)
            finally:
                await browser.close()
        records = [orjson.loads(r.body) for r in await agent.store.fetch(100, 10**9)]
    finally:
        await proxy.close()
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        await agent.stop()

    kinds = [e.kind for e in received]
    assert kinds[0] == "play" and kinds[-1] == "stop" and "first_frame" in kinds, kinds
    [rec] = [r for r in records if r["kind"] == "session"]
    qos = rec["qos"]
    assert (rec["channel"], rec["content_type"], qos["failed"]) == (channel, "live", False)
    assert qos["rebuffer_count"] == end["waits"] >= 1, (qos, end)
    bitrates = [e for e in received if e.kind == "bitrate"]
    assert {e.height for e in bitrates} <= {h for h, _ in RENDITIONS}
    assert bitrates[0].height < RENDITIONS[-1][0]  # started low (0.2 Mbit/s estimate)
    assert (bitrates[-1].kbps, bitrates[-1].height) == (round(end["bitrate"] / 1000),
                                                        end["height"])
    assert qos["bitrate_switches"] >= 1
    assert [e.count for e in received if e.kind == "dropped_frames"][-1] == end["dropped"]
    assert qos["watch_s"] >= (HLS_S if lib == "hls.js" else DURATION_S)


@contextlib.asynccontextmanager
async def agent_and_browser(tmp_path: Path, agent_port: int = 0
                            ) -> AsyncIterator[tuple[Agent, HttpEventsSource, Any,
                                                     list[PlayerEvent]]]:
    """An agent with the http source, and a Chromium browser (for the shorter tests)."""
    need("Chromium", Path(CHROMIUM).exists(), "scripts/setup-system installs Debian's chromium")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        need("playwright", False, "scripts/venv dev installs it")
        raise
    clock = FakeClock()
    cfg = make_config(tmp_path, survey={"enabled": False})
    agent = Agent(cfg, clock=clock, store=MemoryBuffer(BufferSection(), clock), upload=False)
    await agent.start()
    received: list[PlayerEvent] = []

    async def feed(event: PlayerEvent) -> None:
        received.append(event)
        await agent.feed(event)

    source = HttpEventsSource(agent_port, feed)
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                               headless=True)
            try:
                yield agent, source, browser, received
            finally:
                await browser.close()
    finally:
        await source.close()
        await agent.stop()


async def stored(agent: Agent, n: int = 1) -> list[dict[str, Any]]:
    for _ in range(200):
        got = [orjson.loads(r.body) for r in await agent.store.fetch(100, 10**9)]
        if len(got) >= n:
            return got
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {n} record(s), have {len(got)}")


async def test_player_errors_end_the_session_as_failed(
    origin: tuple[Path, int], tmp_path: Path
) -> None:
    """Shaka loading a manifest that is not there, and a plain <video> given a file
    that is no media: each session ends with an error naming it, as failed."""
    _, origin_port = origin
    async with agent_and_browser(tmp_path) as (agent, source, browser, received):
        await source.start()
        serving = asyncio.create_task(source.run())
        try:
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{origin_port}/index.html")
            await page.evaluate(f"""(async () => {{
                const player = new shaka.Player();
                await player.attach(document.getElementById("tv"));
                window.nps = NpsBridge.attach(document.getElementById("tv"), {{
                  shaka: player, endpoint: "http://127.0.0.1:{source.port}/events",
                  flushMs: 100}});
                await player.load("missing.mpd").catch(() => null);
            }})()""")
            [shaka_rec] = await stored(agent, 1)
            page2 = await browser.new_page()
            await page2.goto(f"http://127.0.0.1:{origin_port}/plain.html")
            await page2.evaluate(f"""(() => {{
                const v = document.getElementById("tv");
                window.nps = NpsBridge.attach(v, {{
                  endpoint: "http://127.0.0.1:{source.port}/events", flushMs: 100}});
                v.src = "index.html";   // HTML, not media
            }})()""")
            records = await stored(agent, 2)
        finally:
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
    errors = [e.message for e in received if e.kind == "error"]
    assert shaka_rec["qos"]["failed"] is True, [(e.kind, e.message) for e in received]
    assert records[1]["qos"]["failed"] is True
    assert errors[-2].startswith("shaka error ") and errors[-1].startswith("media error 4"), errors


async def test_events_wait_for_an_agent_that_is_not_up_yet(
    origin: tuple[Path, int], tmp_path: Path
) -> None:
    """The agent restarts while a stream plays: the bridge keeps its lines and posts them
    once the agent listens; their ``at`` keeps the session's times exact."""
    _, origin_port = origin
    port = free_port()
    async with agent_and_browser(tmp_path, port) as (agent, source, browser, received):
        page = await browser.new_page()
        console: list[str] = []
        page.on("console", lambda m: console.append(m.text))
        await page.goto(f"http://127.0.0.1:{origin_port}/plain.html")
        await page.evaluate(f"start({port})")
        await wait_for(page, "document.getElementById('tv').ended", 30, "the end")
        assert not received
        await source.start()  # the agent is back
        serving = asyncio.create_task(source.run())
        try:
            [rec] = await stored(agent, 1)
        finally:
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
    assert any("nps-bridge: cannot reach" in c for c in console), console
    kinds = [e.kind for e in received]
    assert kinds[0] == "play" and kinds[-1] == "stop", kinds
    qos = rec["qos"]
    assert 0 < qos["startup_ms"] < 5000
    expected = qos["startup_ms"] / 1000 + PLAIN_S + qos["rebuffer_s"]
    assert abs(qos["watch_s"] - expected) <= 0.5, (qos, expected)
