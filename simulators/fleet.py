"""A fleet of simulated boxes, each running the real agent, under one virtual clock.

One process, one event loop, one ``aiohttp.ClientSession`` (behind
:class:`~simulators.transport.SimNetwork`), one :class:`~simulators.clock.VirtualClock`.
Per box: the real :class:`stb_widget.agent.Agent` (tracker, policy, uploader) over the
real record store (:class:`~stb_widget.buffer.SqliteBuffer` for durable boxes, one file
each; the agent's :class:`~stb_widget.buffer.MemoryBuffer` for the rest, since each sqlite
buffer holds a thread), a simulated player and a simulated viewer.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson

from protocol import Accepted, SessionRecord, SurveyRecord, decode_record
from protocol.units import DAY_S, HOUR_S
from stb_widget.agent import Agent
from stb_widget.buffer import MemoryBuffer, RecordStore, SqliteBuffer
from stb_widget.config import (
    BoxSection,
    BufferSection,
    CollectorSection,
    Config,
    PlayerSection,
    SurveySection,
)
from stb_widget.errors import NetworkError
from stb_widget.events import PlayerEvent
from stb_widget.http_client import Poster

from .clock import BoxClock, VirtualClock
from .faults import Faults
from .http_pool import HttpPool
from .ids import id_maker
from .network import PROFILES, is_peak
from .planted import CONFOUNDED_REGIONS, Planted
from .player import end_event, plan_session
from .store import PowerCut, TrackedStore
from .transport import SessionPoster, SimNetwork
from .truth import LivedSession, agent_vs_lived, ground_truth
from .viewer import Persona, ViewerPresenter, Watch, day_plan

REGIONS = tuple(CONFOUNDED_REGIONS)
MODELS = (("X-200", "4.2.1"), ("X-200", "4.3.0"), ("X-300", "5.0.2"))
#: The boxes' local time zone (CET, winter): viewing habits follow local hours.
UTC_OFFSET_H = 1.0


@dataclass(frozen=True, slots=True)
class FleetOptions:
    """Everything a fleet run is told. ``durable_boxes`` None: every box up to 200, else 200."""

    collector: str
    admin_token: str
    boxes: int = 100
    days: float = 7.0
    seed: int = 1
    faults: Faults = field(default_factory=Faults)
    durable_boxes: int | None = None
    data_dir: Path | None = None
    sample_rate: float = 0.05
    min_watch_s: float = 600.0
    cooldown_answered_days: float = 90.0
    cooldown_dismissed_days: float = 30.0
    upload_delay_s: float = 60.0
    boot_jitter_s: float = 300.0
    concurrency: int = 32
    #: Virtual time runs at most this far ahead of the oldest request still out (virtual s).
    http_lag_s: float = 300.0
    #: Sleeps end on whole multiples of this (virtual s): fewer distinct instants to settle.
    resolution_s: float = 1.0
    #: After the last day, how long (virtual h) boxes may keep uploading what is buffered.
    drain_h: float = 72.0
    #: Virtual time at the start (default: midnight UTC ``days`` days ago).
    start: datetime | None = None
    progress: bool = False
    box_prefix: str = "sim"
    #: What the analysis must find: effects, confounder, non-response (checked on use).
    planted: Planted = field(default_factory=Planted)
    #: Simulate the ``days`` that end now, with box clocks that are right: the boxes hold
    #: their uploads until the simulated time reaches the collector's now (as boxes out of
    #: reach would), so the collector needs to shift nothing and every record keeps its
    #: day; no session runs past now. ``start`` is then ignored.
    ends_now: bool = False
    #: Hold every upload until the simulated days are over (implied by ``ends_now``):
    #: one upload per box instead of one a session, the fast path of the tests that
    #: need many fleets. The collector then shifts the records' times (contract section 3).
    hold_uploads: bool = False
    #: This share of the boxes (drawn per box) has its line turn ``lossy`` for the last
    #: ``degrade_days`` days: households whose streams went bad lately, asked or not (what
    #: ``GET /v1/at-risk`` must put first). Listed in the summary (``degraded_boxes``).
    degrade_share: float = 0.0
    degrade_days: float = 2.0

    def durable_count(self) -> int:
        """How many boxes keep their buffer in sqlite."""
        if self.durable_boxes is not None:
            return min(self.boxes, self.durable_boxes)
        return min(self.boxes, 200)


class SimBox:
    """One simulated box: its household, its line, and the real agent in between."""

    def __init__(self, fleet: Fleet, index: int, box_id: str, token: str, durable: bool) -> None:
        o = fleet.options
        self.fleet = fleet
        self.index = index
        self.box_id = box_id
        self.durable = durable

        def seeded(part: str) -> random.Random:
            return random.Random(f"{o.seed}/{index}/{part}")

        self.rng_schedule = seeded("schedule")
        self.rng_player = seeded("player")
        traits = seeded("traits")
        planted = o.planted
        self.persona = Persona.draw(traits, planted.mood_spread)
        self.region = region = traits.choice(REGIONS)
        names = list(PROFILES)
        # The planted confounder: a region's lines (and its viewers' mood, in the viewer).
        weights = planted.region_lines(region) or [PROFILES[n].weight for n in names]
        self.profile = PROFILES[traits.choices(names, weights)[0]]
        # Its own generator: planting degradation changes nothing else the box draws.
        self.degraded = seeded("degrade").random() < o.degrade_share
        model, firmware = traits.choice(MODELS)
        self.clock = BoxClock(fleet.clock, o.faults.skew_for(traits))
        self.presenter = ViewerPresenter(self.clock, seeded("viewer"), self.persona,
                                         planted, region)
        self.new_id = id_maker(seeded("ids"), self.clock)
        self.rng_upload = seeded("upload")
        lossy = o.faults.loss > 0 and (o.faults.loss_all or self.profile.name == "lossy")
        self.link = fleet.net.link(seeded("net"), o.faults.loss if lossy else 0.0)
        self.cut_times = o.faults.cut_times(seeded("power"), fleet.horizon_s) if durable else []
        data_dir = fleet.data_dir / box_id
        self.config = Config(
            box_id=box_id,
            data_dir=str(data_dir),
            box=BoxSection(model=model, firmware=firmware, region=region),
            collector=CollectorSection(url=o.collector, token=token,
                                       upload_delay_s=o.upload_delay_s,
                                       boot_jitter_s=o.boot_jitter_s),
            player=PlayerSection(source="events"),
            survey=fleet.survey,
            buffer=fleet.limits,
        )
        self.sessions: dict[str, SessionRecord] = {}
        self.surveys: dict[str, SurveyRecord] = {}
        #: What the viewer lived through, session by session, whose end reached a running
        #: agent (the ground truth; the agent's tracker never sees this list).
        self.lived: list[LivedSession] = []
        #: A session zapped on from, whose end is the next ``play``: (agent, session), and
        #: the player's monotonic time when its content ended (the next ``play``'s ``at``).
        self._open: tuple[Agent, LivedSession] | None = None
        self._zap_end = 0.0
        #: Sessions the viewer lived but a power cut lost with the agent.
        self.lost_sessions = 0
        self.agent: Agent | None = None
        self.store: TrackedStore | None = None
        self.alive = False
        self.power_cuts = 0
        self.watched = 0
        #: Counters of agents that died in power cuts (their successors start from zero).
        self.past: dict[str, Counter[str]] = {"counts": Counter(), "not_asked": Counter(),
                                              "uploads": Counter(), "evictions": Counter()}
        self._reboot: asyncio.Task[None] | None = None

    # -- power ---------------------------------------------------------------------------

    async def boot(self) -> None:
        """Start (or restart, after a power cut) from what the buffer holds."""
        clock = self.fleet.clock
        inner: RecordStore
        if self.durable:
            with clock.busy():
                sq = await SqliteBuffer.open(self.config.db_path, self.config.buffer, self.clock)
                # Whatever the buffer kept through a power cut is a record the box made.
                for stored in await sq.fetch(1 << 30, 1 << 40):
                    self._note(stored.body)
            inner = sq
        else:
            inner = MemoryBuffer(self.config.buffer, self.clock)
        self.store = TrackedStore(inner, clock, self._cut, sessions=self.sessions,
                                  surveys=self.surveys, held=self.fleet.holding)
        self.agent = Agent(
            self.config, clock=self.clock, store=self.store,
            # BoxLink is the uploader's Poster; it forwards to the fleet's one session.
            http=self.link,
            presenters=lambda: self.presenter, rng=self.rng_upload, new_id=self.new_id,
        )
        await self.agent.start()
        self.alive = True

    def _note(self, body: bytes) -> None:
        decoded = decode_record(orjson.loads(body), 0)
        if isinstance(decoded, Accepted):
            r = decoded.record
            if isinstance(r, SessionRecord):
                self.sessions.setdefault(r.id, r)
            else:
                self.surveys.setdefault(r.id, r)

    def _cut(self) -> None:
        if self._reboot is None or self._reboot.done():
            self._reboot = asyncio.create_task(self._power_cycle(), name=f"cut-{self.box_id}")

    async def _power_cycle(self) -> None:
        agent, store = self.agent, self.store
        assert agent is not None and store is not None
        self.alive = False
        self.power_cuts += 1
        self._absorb(agent)
        await agent.kill()
        if store.cut_write is not None:
            await asyncio.gather(store.cut_write, return_exceptions=True)
        await store.close()  # an unfinished transaction is rolled back, as after a crash
        await self.clock.sleep(self.fleet.options.faults.reboot_s)
        await self.boot()

    def _absorb(self, agent: Agent) -> None:
        stats = agent.stats()
        for key in ("counts", "not_asked", "uploads", "evictions"):
            self.past[key].update(stats[key])

    async def power(self) -> None:
        """Cut the power at the planned times (each strikes in the middle of the next write)."""
        for t in self.cut_times:
            await self.fleet.clock.sleep(max(0.0, t - self.fleet.clock.now))
            if self.alive and self.store is not None:
                self.store.arm_power_cut()

    # -- viewing -------------------------------------------------------------------------

    async def live(self) -> None:
        """Watch TV, day after day, until the horizon."""
        fleet = self.fleet
        clock = fleet.clock
        zapping = False
        # Days start at midnight UTC (the first one may have begun before the start).
        for day in range(math.ceil((fleet.horizon_s - fleet.day0_s) / DAY_S)):
            for w in day_plan(self.rng_schedule, self.persona, fleet.day0_s + day * float(DAY_S),
                              UTC_OFFSET_H):
                if w.start_s < 0.0:
                    continue  # before the simulation started
                if w.start_s >= fleet.horizon_s:
                    if zapping:
                        await self._switch_off()
                    return
                if not zapping:
                    await clock.sleep(max(0.0, w.start_s - clock.now))
                zapping = False
                if not self.alive:
                    continue  # the box is dark: nobody watches
                try:
                    zapping = await self._watch(w)
                except PowerCut:
                    zapping = False

    async def _switch_off(self) -> None:
        """The viewer switches off: the session zapped on from ends with a ``stop``."""
        agent = self.agent
        if not self.alive or agent is None:
            self._open = None
            return
        with contextlib.suppress(PowerCut):
            at = self._zap_end if self._open is not None else self.fleet.clock.monotonic()
            await agent.feed(PlayerEvent("stop", at))
            self._ended(agent)
            await agent.wait_question()

    def _ended(self, agent: Agent) -> None:
        """The open session's end reached ``agent``: it is lived truth if that agent runs."""
        if self._open is None:
            return
        owner, session = self._open
        self._open = None
        if owner is agent and agent is self.agent and self.alive:
            self.lived.append(session)
        else:
            self.lost_sessions += 1

    async def _watch(self, w: Watch) -> bool:
        clock = self.fleet.clock
        agent = self.agent
        assert agent is not None
        local_hour = int(((clock.now - self.fleet.day0_s) / HOUR_S + UTC_OFFSET_H) % 24)
        if self._open is not None and self._open[0] is not agent:
            self._ended(agent)  # zapped on from under an agent a power cut killed: lost
        # Zapping on, the next play is when the last content ended (the virtual clock
        # woke on its next whole tick): the ended session's record then lasts exactly
        # what the viewer lived.
        t0 = self._zap_end if self._open is not None else clock.monotonic()
        profile = self.profile
        if self.degraded and clock.now >= self.fleet.horizon_s - self.fleet.options.degrade_days * DAY_S:
            profile = PROFILES["lossy"]  # the line went bad in the last days
        plan = plan_session(self.rng_player, profile, self.persona.habits,
                            peak=is_peak(local_hour), content_seconds=w.content_s,
                            channel=w.channel, content_type=w.content_type,
                            replaced=w.zap_on, t0=t0)
        if self.fleet.options.ends_now and clock.now + plan.end_s > self.fleet.horizon_s:
            # The week ends now: a session that would run past now is not watched.
            if self._open is not None:
                await self._switch_off()
            return False
        started = self.clock.wall()
        await agent.feed(PlayerEvent("play", t0, channel=w.channel, content_type=w.content_type))
        # The play ended the session zapped on from (the tracker saw it replaced).
        self._ended(agent)
        self._open = (agent, LivedSession(self.box_id, started, w.channel, w.content_type,
                                          plan.lived))
        self.watched += 1
        # What happens in between only matters through each event's ``at``, which the
        # tracker uses; so the session's events are fed together when it ends (two
        # scheduler steps a session instead of one per event).
        await clock.sleep(plan.end_s)
        if agent is not self.agent or not self.alive:
            self._ended(agent)  # counted lost: the power went and the session with it
            return False
        for ev in plan.events:
            await agent.feed(ev)
        self.presenter.lived = plan.lived
        end = end_event(plan, t0 + plan.end_s)
        if end is None:
            self._zap_end = t0 + plan.end_s
            return True
        await agent.feed(end)
        self._ended(agent)
        if agent.question_up:
            await agent.wait_question()  # the viewer deals with the question before going on
        return False

    # -- figures -------------------------------------------------------------------------

    def stats(self) -> dict[str, Counter[str]]:
        """This box's counters, over every agent it ran."""
        out = {k: Counter(v) for k, v in self.past.items()}
        if self.agent is not None and self.alive:
            stats = self.agent.stats()
            for key in out:
                out[key].update(stats[key])
        return out

    def buffered(self) -> int:
        """Records still in the buffer (uploadable or not)."""
        if self.store is None or not self.alive:
            return 0
        inner = self.store.inner
        total = getattr(inner, "total_count", None)
        return int(total) if total is not None else inner.ready_count

    async def stop(self) -> None:
        """Stop the agent cleanly at the end of the run."""
        if self._reboot is not None:
            await asyncio.gather(self._reboot, return_exceptions=True)
        if self.agent is not None and self.alive:
            await self.agent.stop()
            if self.store is not None:
                await self.store.close()


class Fleet:
    """A fleet run: enrol, boot, live for ``days``, drain, summarise."""

    def __init__(self, options: FleetOptions, poster: Poster | None = None) -> None:
        """``poster``, where given, carries the enrolment and every upload instead of HTTP
        to ``options.collector`` (a collector in the same process: tests that need many
        fleets and only their records)."""
        self.options = options
        self._poster = poster
        o = options
        o.planted.check()
        if not 0.0 <= o.degrade_share <= 1.0 or not o.degrade_days > 0.0:
            raise ValueError(f"degrade: share {o.degrade_share} must be in [0, 1] and days "
                             f"{o.degrade_days} above 0")
        #: Boxes hold their uploads until the simulated days are over.
        self.holding = o.ends_now or o.hold_uploads
        if o.ends_now:
            start = datetime.now(UTC) - timedelta(days=o.days)
        elif o.start is not None:
            start = o.start
        else:
            today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            start = today - timedelta(days=math.ceil(o.days))
        self.clock = VirtualClock(start, resolution_s=o.resolution_s)
        self.horizon_s = o.days * float(DAY_S)
        #: Virtual seconds of the midnight (UTC) on or before the start: viewing follows
        #: the boxes' local hours on the wall clock.
        midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
        self.day0_s = -(start - midnight).total_seconds()
        self.survey = SurveySection(
            sample_rate=o.sample_rate, min_watch_s=o.min_watch_s,
            cooldown_answered_days=o.cooldown_answered_days,
            cooldown_dismissed_days=o.cooldown_dismissed_days,
            presenter="simulators.viewer:ViewerPresenter",
        )
        self.limits = BufferSection()
        self.boxes: list[SimBox] = []
        self.data_dir = Path(".")
        self.net: SimNetwork
        self.real_s = 0.0
        self.drained = False
        self.on_progress: Callable[[float], None] | None = None

    def box_id(self, index: int) -> str:
        """The id of box ``index`` (seed in it: two fleets with other seeds never clash)."""
        return f"{self.options.box_prefix}-{self.options.seed}-{index:05d}"

    async def enrol(self, poster: Poster) -> list[str]:
        """Enrol every box with the admin token (``POST /v1/boxes``); answers their tokens."""
        o = self.options
        url = o.collector.rstrip("/") + "/v1/boxes"
        headers = {"Authorization": f"Bearer {o.admin_token}",
                   "Content-Type": "application/json"}
        tokens = [""] * o.boxes
        todo = iter(range(o.boxes))

        async def one(i: int) -> str:
            for attempt in range(5):
                try:
                    resp = await poster.post(url, body=orjson.dumps({"box_id": self.box_id(i)}),
                                             headers=headers)
                except NetworkError as exc:
                    if attempt == 4:
                        raise EnrolError(f"cannot reach {url}: {exc}") from exc
                else:
                    if resp.status == 201:
                        token: str = orjson.loads(resp.body)["token"]
                        return token
                    if resp.status not in (429, 503):
                        raise EnrolError(f"POST /v1/boxes answered {resp.status}: "
                                         f"{resp.body[:200].decode(errors='replace')}")
                await asyncio.sleep(0.2 * (attempt + 1))
            raise EnrolError(f"POST /v1/boxes: collector kept shedding load for box {i}")

        async def worker() -> None:
            # ``concurrency`` workers over the boxes, not a task per box behind a semaphore.
            for i in todo:
                tokens[i] = await one(i)

        await asyncio.gather(*(worker() for _ in range(min(o.concurrency, o.boxes))))
        return tokens

    async def run(self) -> dict[str, Any]:
        """Run the whole fleet; answers the summary (see :func:`summary`)."""
        o = self.options
        t_start = time.monotonic()
        async with contextlib.AsyncExitStack() as stack:
            stack.enter_context(_few_gc_passes())
            if o.data_dir is None:
                self.data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(
                    prefix="box-sim-")))
            else:
                self.data_dir = o.data_dir
            connector = aiohttp.TCPConnector(limit=o.concurrency)
            timeout = aiohttp.ClientTimeout(total=60, connect=10)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                             headers={"User-Agent": "box-sim/0.1"}) as session:
                # Enrolment and the boxes' uploads go through a lean client of kept-alive
                # connections (aiohttp's per-request work cost as much CPU as the agents'
                # own); an https:// collector through the aiohttp session.
                poster: Poster
                if self._poster is not None:
                    poster = self._poster
                elif o.collector.startswith("http://"):
                    pool = HttpPool(o.collector)
                    stack.push_async_callback(pool.close)
                    poster = pool
                else:
                    poster = SessionPoster(session)
                tokens = await self.enrol(poster)
                self.net = SimNetwork(session, self.clock, concurrency=o.concurrency,
                                      outages=o.faults.outages, lag_s=o.http_lag_s,
                                      poster=poster)
                durable = o.durable_count()
                self.boxes = [SimBox(self, i, self.box_id(i), tokens[i], i < durable)
                              for i in range(o.boxes)]
                for box in self.boxes:
                    await box.boot()
                tasks = [asyncio.create_task(b.live(), name=f"live-{b.box_id}")
                         for b in self.boxes]
                tasks += [asyncio.create_task(b.power(), name=f"power-{b.box_id}")
                          for b in self.boxes if b.cut_times]
                try:
                    await self._advance(tasks)
                    if self.holding:
                        await self._catch_up()
                    await self._drain(tasks)
                finally:
                    for t in tasks:
                        t.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                    self.real_s = time.monotonic() - t_start
                    summary = self.summary()
                    for box in self.boxes:
                        await box.stop()
                    await self.net.quiet()
        return summary

    async def _advance(self, tasks: list[asyncio.Task[None]]) -> None:
        clock = self.clock
        step = float(HOUR_S)
        while clock.now < self.horizon_s:
            await clock.run_until(min(self.horizon_s, clock.now + step))
            if self.on_progress is not None:
                self.on_progress(clock.now / self.horizon_s)
            for t in tasks:
                if t.done() and not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]

    async def _catch_up(self) -> None:
        """Let every box upload what it held; with ``ends_now``, once simulated time has
        reached the collector's clock (the run took some real time): clocks right."""
        behind = (datetime.now(UTC) - self.clock.wall()).total_seconds()
        if self.options.ends_now and behind > 0:
            await self.clock.run_until(self.clock.now + behind)
        self.holding = False
        for box in self.boxes:
            if box.store is not None:
                box.store.release()

    async def _drain(self, tasks: list[asyncio.Task[None]]) -> None:
        """Keep time going until the last sessions end and every buffer is empty (or
        ``drain_h`` passes): no new session starts after the horizon."""
        clock = self.clock
        limit = self.horizon_s + self.options.drain_h * float(HOUR_S)
        n = 0
        while True:
            n += 1
            # Let what the last step woke run first: it may set new sleeps.
            await clock.settle()
            # Checking every box is O(boxes): do it now and then, or when nothing is due.
            if ((n % 256 == 1 or clock.next_deadline() is None) and self.net.in_flight == 0
                    and all(t.done() for t in tasks)
                    and not any(b.buffered() for b in self.boxes)):
                self.drained = True
                return
            deadline = clock.next_deadline()
            if deadline is None or deadline > limit:
                if self.net.in_flight:
                    await self.net.quiet()
                    await clock.settle()
                    continue
                return
            await clock.step()

    def summary(self) -> dict[str, Any]:
        """Sessions, questions, answers, uploads, retries, buffered, faults, ground truth."""
        o = self.options
        counts: Counter[str] = Counter()
        not_asked: Counter[str] = Counter()
        uploads: Counter[str] = Counter()
        evictions: Counter[str] = Counter()
        for b in self.boxes:
            s = b.stats()
            counts.update(s["counts"])
            not_asked.update(s["not_asked"])
            uploads.update(s["uploads"])
            evictions.update(s["evictions"])
        retries = uploads["network"] + uploads["bad_ack"] + sum(
            v for k, v in uploads.items() if k.startswith("http_") and k != "http_200")
        meter = self.net.meter
        after = max((out.end_s for out in o.faults.outages), default=None)
        network: dict[str, Any] = {
            "requests_sent": meter.sent,
            "failed_in_outage": meter.failed_outage,
            "lost_requests": meter.lost_before,
            "lost_answers": meter.lost_answer,
            "peak_requests_per_virtual_s": meter.peak_virtual(0.0),
            "peak_requests_per_real_s": meter.peak_real(),
            "mean_requests_per_real_s": meter.sent / self.real_s if self.real_s else None,
        }
        if after is not None:
            first = min(out.start_s for out in o.faults.outages)
            network["before_outage_requests_per_virtual_s"] = meter.mean_virtual(0.0, first)
            network["after_outage_peak_requests_per_virtual_s"] = meter.peak_virtual(after)
        sessions = [r for b in self.boxes for r in b.sessions.values()]
        surveys = [r for b in self.boxes for r in b.surveys.values()]
        lived = [s for b in self.boxes for s in b.lived]
        shown = [q for b in self.boxes for q in b.presenter.shown]
        asked = sum(v for k, v in counts.items() if k.startswith("asked_"))
        return {
            "boxes": o.boxes,
            "durable_boxes": o.durable_count(),
            "days": o.days,
            "seed": o.seed,
            "virtual_start": self.clock.start.isoformat(),
            "sessions": counts["sessions"],
            "questions": asked,
            "answers": counts["asked_answered"],
            "dismissed": counts["asked_dismissed"],
            "timeouts": counts["asked_timeout"],
            "not_asked": dict(not_asked),
            "uploads": uploads["http_200"],
            "retries": retries,
            "upload_stats": dict(uploads),
            "records_made": len(sessions) + len(surveys),
            "records_accepted": uploads["records_accepted"],
            "records_duplicate": uploads["records_duplicate"],
            "records_rejected": uploads["records_rejected"],
            "records_buffered": sum(b.buffered() for b in self.boxes),
            "drained": self.drained,
            "power_cuts": sum(b.power_cuts for b in self.boxes),
            "evictions": dict(evictions),
            "network": network,
            "virtual_days_run": self.clock.now / DAY_S,
            "real_s": round(self.real_s, 2),
            "sessions_lost_in_power_cuts": sum(b.lost_sessions for b in self.boxes),
            "degraded_boxes": [b.box_id for b in self.boxes if b.degraded],
            "degraded_from": (self.clock.start + timedelta(
                seconds=self.horizon_s - o.degrade_days * DAY_S)).isoformat(),
            # What the viewers lived and answered (never the agents' records)...
            "ground_truth": ground_truth(lived, shown, o.planted),
            # ...and how the agents' records compare with it.
            "agent_vs_lived": agent_vs_lived(lived, {b.box_id: b.sessions for b in self.boxes},
                                             watch_slack_s=0.0),
        }


#: Cyclic GC thresholds while a fleet runs (CPython's defaults: 700, 10, 10).
FLEET_GC_THRESHOLDS: Final = (50_000, 50, 1_000)


@contextlib.contextmanager
def _few_gc_passes() -> Iterator[None]:
    """Let the cyclic garbage collector pass seldom while the fleet runs (restored after).

    A fleet holds a large heap that only grows (thousands of agents, and every record
    made, for the ground truth) and allocates fast. With CPython's default thresholds
    the collector made about a thousand passes over a 3,000-box week, 8 % of the
    simulation's CPU, and found little: asyncio's objects are freed by reference
    counting. The garbage cycles left until the next pass are small.
    """
    before = gc.get_threshold()
    gc.set_threshold(*FLEET_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)


class EnrolError(Exception):
    """The collector would not enrol the fleet's boxes."""


def progress_printer(stream: Any = None) -> Callable[[float], None]:
    """A progress bar on ``stream`` (stderr), drawn only when it is a terminal."""
    out = stream or sys.stderr
    if not out.isatty():
        return lambda _f: None
    started = time.monotonic()

    def draw(fraction: float) -> None:
        width = 40
        done = int(width * fraction)
        out.write(f"\r[{'#' * done}{'.' * (width - done)}] {100 * fraction:5.1f}% "
                  f"of simulated time, {time.monotonic() - started:6.1f} s")
        if fraction >= 1.0:
            out.write("\n")
        out.flush()

    return draw
