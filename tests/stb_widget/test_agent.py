"""The agent's wiring: sessions stored, questions asked through the port, reason codes."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from protocol import SurveyRecord
from stb_widget.agent import Agent
from stb_widget.buffer import MemoryBuffer
from stb_widget.config import BufferSection
from stb_widget.events import PlayerEvent
from stb_widget.survey_port import PresenterUnavailable, SurveyPresenter, SurveyRequest, SurveySink

from .conftest import FakeClock, make_config

ROOT = Path(__file__).parents[2]


class ScriptedPresenter:
    """Answers like the Textual presenter would: confirmed, then finished."""

    def __init__(self, outcome: str = "answered", fail_after_confirm: bool = False,
                 hold: asyncio.Event | None = None, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock()
        self.outcome = outcome
        self.fail_after_confirm = fail_after_confirm
        self.hold = hold
        self.requests: list[SurveyRequest] = []

    async def present(self, request: SurveyRequest, sink: SurveySink) -> SurveyRecord:
        self.requests.append(request)
        if self.hold is not None:
            await self.hold.wait()
        now = self.clock.wall()
        if self.outcome != "answered":
            rec = SurveyRecord(id=request.survey_id, kind="survey", session_id=request.session_id,
                               shown_at=now, outcome=self.outcome, locale=request.locale)  # type: ignore[arg-type]
            await sink.finished(rec)
            return rec
        rec = SurveyRecord(id=request.survey_id, kind="survey", session_id=request.session_id,
                           shown_at=now, answered_at=now, outcome="answered", score=8,
                           locale=request.locale)
        await sink.confirmed(rec)
        if self.fail_after_confirm:
            raise RuntimeError("the UI crashed during the pick-list")
        final = replace(rec, reason="buffering")
        await sink.finished(final)
        return final


async def watch(agent: Agent, clock: FakeClock, seconds: float = 700.0) -> None:
    await agent.feed(PlayerEvent("play", channel="NPO1", content_type="live"))
    clock.advance(1)
    await agent.feed(PlayerEvent("first_frame"))
    clock.advance(seconds)
    await agent.feed(PlayerEvent("stop"))


def make_agent(tmp_path: Path, presenter: SurveyPresenter | None, clock: FakeClock,
               **survey: object) -> Agent:
    cfg = make_config(tmp_path, survey={"min_watch_s": 600, "sample_rate": 1.0, **survey})
    return Agent(cfg, clock=clock, store=MemoryBuffer(BufferSection(), clock),
                 presenters=lambda: presenter, upload=False)


async def stored(agent: Agent) -> list[dict[str, object]]:
    return [orjson.loads(r.body) for r in await agent.store.fetch(1000, 10**9)]


async def test_answer_flow_and_cooldown(tmp_path: Path) -> None:
    clock = FakeClock()
    presenter = ScriptedPresenter(clock=clock)
    agent = make_agent(tmp_path, presenter, clock)
    await agent.start()
    await watch(agent, clock)
    await agent.wait_question()
    records = await stored(agent)
    session = next(r for r in records if r["kind"] == "session")
    survey = next(r for r in records if r["kind"] == "survey")
    assert survey["session_id"] == session["id"] and survey["reason"] == "buffering"
    req = presenter.requests[0]
    assert (req.locale, req.service_name, req.timeout_s, req.tty) == ("nl", "IPTV", 60.0, "")
    await watch(agent, clock)
    assert agent.policy.reasons == {"cooldown_answered": 1}
    assert agent.counts["asked_answered"] == 1
    await agent.stop()


async def test_dismissal_starts_the_dismissed_cooldown(tmp_path: Path) -> None:
    clock = FakeClock()
    agent = make_agent(tmp_path, ScriptedPresenter("dismissed", clock=clock), clock)
    await agent.start()
    await watch(agent, clock)
    await agent.wait_question()
    await watch(agent, clock)
    assert agent.policy.reasons == {"cooldown_dismissed": 1}
    clock.advance(31 * 86400)
    await watch(agent, clock)
    await agent.wait_question()
    assert agent.counts["asked_dismissed"] == 2
    await agent.stop()


async def test_confirmed_answer_survives_a_presenter_crash(tmp_path: Path) -> None:
    clock = FakeClock()
    agent = make_agent(tmp_path, ScriptedPresenter(fail_after_confirm=True), clock)
    await agent.start()
    await watch(agent, clock)
    await agent.wait_question()
    surveys = [r for r in await stored(agent) if r["kind"] == "survey"]
    assert len(surveys) == 1 and surveys[0]["score"] == 8 and surveys[0].get("reason") is None
    assert agent.policy.reasons == {"presenter_error": 1}
    await agent.stop()


async def test_one_question_at_a_time(tmp_path: Path) -> None:
    clock = FakeClock()
    hold = asyncio.Event()
    presenter = ScriptedPresenter(hold=hold)
    agent = make_agent(tmp_path, presenter, clock)
    await agent.start()
    await watch(agent, clock)
    for _ in range(20):  # settle_s passes (the fake clock's sleep is instant)
        if presenter.requests:
            break
        await asyncio.sleep(0)
    assert agent.question_up and len(presenter.requests) == 1
    await watch(agent, clock)
    assert agent.policy.reasons == {"question_up": 1}
    hold.set()
    await agent.wait_question()
    await agent.stop()


async def test_no_display_is_logged_once_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Unavailable:
        async def present(self, request: SurveyRequest, sink: SurveySink) -> SurveyRecord:
            raise PresenterUnavailable("no terminal")

    clock = FakeClock()
    agent = make_agent(tmp_path, Unavailable(), clock)
    await agent.start()
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            await watch(agent, clock)
            await agent.wait_question()
    assert agent.policy.reasons == {"no_display": 3}
    assert sum("no terminal" in r.getMessage() for r in caplog.records) == 1
    assert agent.counts["sessions"] == 3
    await agent.stop()


@pytest.mark.parametrize(
    "survey",
    [{"tty": "/nonexistent/tty9"},
     {"tty": "/dev/null", "presenter": "stb_widget.no_such_ui.presenter:TextualPresenter"}],
)
async def test_default_factory_without_terminal_or_presenter(
    tmp_path: Path, survey: dict[str, object]
) -> None:
    clock = FakeClock()
    cfg = make_config(tmp_path, survey={"min_watch_s": 0, "sample_rate": 1.0, **survey})
    agent = Agent(cfg, clock=clock, store=MemoryBuffer(BufferSection(), clock), upload=False)
    await agent.start()
    await watch(agent, clock)
    await agent.wait_question()
    assert agent.policy.reasons == {"no_display": 1}
    await agent.stop()


async def test_stop_ends_the_open_session_not_as_failure(tmp_path: Path) -> None:
    clock = FakeClock()
    agent = make_agent(tmp_path, None, clock)
    await agent.start()
    await agent.feed(PlayerEvent("play"))
    clock.advance(5)
    await agent.stop()
    assert agent.counts["sessions"] == 1
    assert agent.policy.reasons == {"shutdown": 1}


async def test_a_play_within_settle_s_makes_the_ended_session_a_zap(tmp_path: Path) -> None:
    clock = FakeClock()
    presenter = ScriptedPresenter(clock=clock)
    agent = make_agent(tmp_path, presenter, clock)
    await agent.start()
    await watch(agent, clock)
    assert agent.question_up  # due, waiting for the player to stay idle
    await agent.feed(PlayerEvent("play", channel="RTL4"))  # the viewer zapped on
    await agent.wait_question()
    assert agent.policy.reasons == {"zapped": 1} and presenter.requests == []
    clock.advance(700)
    await agent.feed(PlayerEvent("stop"))
    await agent.wait_question()  # idle after this one: asked
    assert len(presenter.requests) == 1 and agent.policy.reasons == {"zapped": 1}
    await agent.stop()


async def test_the_question_waits_settle_s_on_the_real_clock(tmp_path: Path) -> None:
    from stb_widget.clock import SystemClock

    clock = SystemClock()
    presenter = ScriptedPresenter()
    cfg = make_config(tmp_path, survey={"min_watch_s": 0, "sample_rate": 1.0, "settle_s": 0.5})
    agent = Agent(cfg, clock=clock, store=MemoryBuffer(BufferSection(), clock),
                  presenters=lambda: presenter, upload=False)
    await agent.start()
    await agent.feed(PlayerEvent("play"))
    await agent.feed(PlayerEvent("stop"))
    await asyncio.sleep(0.3)
    assert presenter.requests == [] and agent.question_up
    await asyncio.sleep(0.4)
    assert len(presenter.requests) == 1
    await agent.wait_question()
    await agent.stop()


async def test_stop_while_settling_counts_shutdown(tmp_path: Path) -> None:
    clock = FakeClock()
    presenter = ScriptedPresenter(clock=clock)
    agent = make_agent(tmp_path, presenter, clock)
    await agent.start()
    await watch(agent, clock)
    await agent.stop()
    assert agent.policy.reasons == {"shutdown": 1} and presenter.requests == []


IDLE_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from stb_widget.agent import Agent
    from stb_widget.config import parse_config
    from stb_widget.events import PlayerEvent

    async def main():
        cfg = parse_config({
            "box_id": "b1", "data_dir": sys.argv[1],
            "collector": {"url": "http://127.0.0.1:9", "token": "t", "boot_jitter_s": 0},
            "player": {"source": "events"},
            "survey": {"sample_rate": 1.0, "min_watch_s": 600, "tty": "/dev/null"},
        })
        async with Agent(cfg) as agent:
            for _ in range(20):
                await agent.feed(PlayerEvent("play", at=0.0, channel="NPO1"))
                await agent.feed(PlayerEvent("first_frame", at=1.0))
                await agent.feed(PlayerEvent("stop", at=30.0))
            print(agent.stats()["not_asked"], "textual" in sys.modules, flush=True)

    asyncio.run(main())
""")


def test_idle_agent_never_imports_textual(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", IDLE_SCRIPT, str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "{'too_short': 20} False", out.stdout + out.stderr


UPLOADING_SCRIPT = textwrap.dedent("""
    import asyncio, gzip, json, sys
    import stb_widget.cli, stb_widget.runner  # everything `stb-widget run` loads
    from stb_widget.agent import Agent
    from stb_widget.config import parse_config
    from stb_widget.events import PlayerEvent

    async def collector(reader, writer):
        # A bare HTTP/1.1 collector (aiohttp must not be imported in this process).
        while True:
            try:
                head = await reader.readuntil(b"\\r\\n\\r\\n")
            except asyncio.IncompleteReadError:
                writer.close()
                return
            length = next(int(l.split(b":")[1]) for l in head.split(b"\\r\\n")
                          if l.lower().startswith(b"content-length:"))
            n = len(json.loads(gzip.decompress(await reader.readexactly(length)))["records"])
            body = json.dumps({"accepted": n, "duplicates": 0, "rejected": []}).encode()
            writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\n"
                         b"Content-Length: %d\\r\\n\\r\\n%s" % (len(body), body))
            await writer.drain()

    async def main():
        server = await asyncio.start_server(collector, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        cfg = parse_config({
            "box_id": "b1", "data_dir": sys.argv[1],
            "collector": {"url": f"http://127.0.0.1:{port}/", "token": "t",
                          "boot_jitter_s": 0, "upload_delay_s": 0},
            "player": {"source": "events"},
            "survey": {"sample_rate": 1.0, "min_watch_s": 600, "tty": "/dev/null"},
        })
        async with Agent(cfg) as agent:
            for _ in range(5):
                await agent.feed(PlayerEvent("play", at=0.0, channel="NPO1"))
                await agent.feed(PlayerEvent("stop", at=30.0))
            for _ in range(200):
                if agent.store.ready_count == 0:
                    break
                await asyncio.sleep(0.05)
            print(agent.stats()["uploads"].get("records_accepted"),
                  sorted(m for m in ("aiohttp", "yarl", "multidict", "textual", "email")
                         if m in sys.modules), flush=True)
        server.close()

    asyncio.run(main())
""")


def test_the_uploading_agent_never_imports_aiohttp(tmp_path: Path) -> None:
    """aiohttp alone costs ~14 MB resident; the box agent uploads with its own h11 client
    (bench/README.md, "Box agent"). The simulators and the collector still use aiohttp.
    The email package (~0.8 MB) is loaded only for an HTTP-date Retry-After."""
    out = subprocess.run([sys.executable, "-c", UPLOADING_SCRIPT, str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "5 []", out.stdout + out.stderr


async def test_one_write_per_session_not_per_event(tmp_path: Path) -> None:
    from stb_widget.buffer import SqliteBuffer

    clock = FakeClock()
    cfg = make_config(tmp_path, survey={"enabled": False})
    store = await SqliteBuffer.open(cfg.db_path, cfg.buffer, clock)
    agent = Agent(cfg, clock=clock, store=store, upload=False)
    await agent.start()
    db = store._db
    before = db.total_changes
    await agent.feed(PlayerEvent("play", 0.0))
    await agent.feed(PlayerEvent("first_frame", 1.0))
    for i in range(500):
        kind = ("bitrate", "stall_start", "stall_end", "pause", "resume", "seek")[i % 6]
        await agent.feed(PlayerEvent(kind, 2.0 + i, kbps=1000.0 + i))  # type: ignore[arg-type]
    assert db.total_changes == before  # flash wears: nothing written during playback
    await agent.feed(PlayerEvent("stop", 600.0))
    assert db.total_changes == before + 1
    await agent.stop()
    await store.close()


async def test_a_failing_buffer_never_stops_the_agent(tmp_path: Path) -> None:
    from stb_widget.errors import StoreError

    class Broken(MemoryBuffer):
        async def add_session(self, record: object) -> None:
            raise StoreError("disk full")

    clock = FakeClock()
    cfg = make_config(tmp_path)
    agent = Agent(cfg, clock=clock, store=Broken(BufferSection(), clock), upload=False)
    await agent.start()
    await watch(agent, clock)
    await watch(agent, clock)
    assert agent.counts["sessions_lost"] == 2 and agent.counts["sessions"] == 0
    await agent.stop()


def test_idle_agent_uses_no_cpu(tmp_path: Path) -> None:
    """No polling: an idle `stb-widget run` (events source, collector unreachable after its
    backoff grew, nothing buffered) burns no CPU while waiting."""
    import os
    import time

    cfg = tmp_path / "agent.toml"
    cfg.write_text(f"""
box_id = "idle-1"
data_dir = "{tmp_path / 'data'}"
[collector]
url = "http://127.0.0.1:9/"
token = "t"
boot_jitter_s = 0
[player]
source = "events"
events_socket = "{tmp_path / 'ev.sock'}"
""")
    proc = subprocess.Popen([sys.executable, "-m", "stb_widget.cli", "run", "--config", str(cfg)],
                            cwd=ROOT, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if (tmp_path / "ev.sock").exists():
                break
            time.sleep(0.05)
        time.sleep(1.0)

        def cpu() -> float:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        before = cpu()
        time.sleep(3.0)
        assert cpu() - before <= 0.02
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
