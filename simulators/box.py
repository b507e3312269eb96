"""``box-sim box``: one simulated box in this terminal, the tester answering the real question.

The real agent runs on the real clock with its default presenter (the Textual question
from ``survey.presenter``) and its sqlite buffer, uploading to the collector. A simulated
player plays sessions of ``--minutes`` each, compressed: the session's events carry the
times of a session that has just ended, so the record says 20 minutes though seconds
passed. Every eligible session is asked (sample rate 1, no cooldowns).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from stb_widget.agent import Agent
from stb_widget.clock import SystemClock
from stb_widget.config import (
    BoxSection,
    CollectorSection,
    Config,
    PlayerSection,
    SurveySection,
)
from stb_widget.events import PlayerEvent
from stb_widget.presenters import has_terminal

from .network import PROFILES, is_peak
from .player import Habits, end_event, plan_session
from .viewer import CHANNELS


class FastForwardClock(SystemClock):
    """The real clock, whose wall time can be set back while a compressed session starts."""

    def __init__(self) -> None:
        self.back_s = 0.0

    def wall(self) -> datetime:
        """Real wall time, minus ``back_s``."""
        return datetime.now(UTC) - timedelta(seconds=self.back_s)


async def enrol(http: aiohttp.ClientSession, collector: str, box_id: str) -> str:
    """A token for ``box_id`` from ``POST /v1/boxes`` with ``NPS_ADMIN_TOKEN``."""
    admin = os.environ.get("NPS_ADMIN_TOKEN", "")
    if not admin:
        raise SystemExit("box-sim box: give --token, or set NPS_ADMIN_TOKEN to enrol the box")
    async with http.post(collector.rstrip("/") + "/v1/boxes", json={"box_id": box_id},
                         headers={"Authorization": f"Bearer {admin}"}) as resp:
        if resp.status != 201:
            raise SystemExit(f"box-sim box: enrolment answered {resp.status}: {await resp.text()}")
        token: str = (await resp.json())["token"]
        return token


async def run_box(args: argparse.Namespace) -> int:
    """Play sessions one after another until ``--sessions`` or Ctrl-C."""
    if args.profile not in PROFILES:
        print(f"box-sim box: --profile must be one of {', '.join(PROFILES)}", file=sys.stderr)
        return 2
    if not has_terminal(""):
        print("box-sim box: needs a terminal to show the question in", file=sys.stderr)
        return 2
    profile = PROFILES[args.profile]
    rng = random.Random(args.seed)
    clock = FastForwardClock()
    timeout = aiohttp.ClientTimeout(total=30, connect=10)
    with tempfile.TemporaryDirectory(prefix="box-sim-") as tmp:
        data_dir = args.data_dir or Path(tmp)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            token = args.token or await enrol(http, args.collector, args.box_id)
            config = Config(
                box_id=args.box_id, data_dir=str(data_dir),
                box=BoxSection(model="X-200", firmware="4.2.1", region="NL-NH"),
                collector=CollectorSection(url=args.collector, token=token, upload_delay_s=5.0,
                                           boot_jitter_s=0.0),
                player=PlayerSection(source="events"),
                survey=SurveySection(sample_rate=1.0, cooldown_answered_days=0.0,
                                     cooldown_dismissed_days=0.0, locale=args.locale),
            )
            agent = Agent(config, clock=clock)  # the box's own HTTP client, as on a box
            await agent.start()
            habits = Habits(patience_s=30.0, pauses_per_h=0.5, seeks_per_h=0.5)
            n = 0
            try:
                while not args.sessions or n < args.sessions:
                    n += 1
                    length = args.minutes * 60.0
                    channel = rng.choice(CHANNELS)
                    ctype = rng.choice(("live", "vod", "catchup"))
                    plan = plan_session(
                        rng, profile, habits, peak=is_peak(datetime.now().hour),
                        content_seconds=length, channel=channel, content_type=ctype,
                        replaced=False,
                    )
                    lived = plan.lived
                    # The session started its length ago and ends now: the record says
                    # ``--minutes`` though only a moment passed.
                    now = clock.monotonic()
                    t0 = now - plan.end_s
                    clock.back_s = plan.end_s
                    await agent.feed(PlayerEvent("play", t0, channel=channel, content_type=ctype))
                    for ev in plan.events:
                        await agent.feed(replace(ev, at=t0 + (ev.at or 0.0)))
                    clock.back_s = 0.0
                    print(f"session {n}: {args.minutes:g} min of {channel} ({ctype}) on "
                          f"{profile.name}: {lived.rebuffer_count} stall(s), "
                          f"{lived.rebuffer_s:.1f} s stalled, "
                          f"{lived.avg_kbps or 0:.0f} kbps, startup "
                          f"{lived.startup_ms if lived.startup_ms is not None else '-'} ms"
                          f"{', FAILED' if lived.failed else ''}", flush=True)
                    end = end_event(plan, now)
                    if end is not None:
                        await agent.feed(end)
                    await asyncio.sleep(0.2)
                    await agent.wait_question()
                    print(f"  so far: {dict(agent.counts)}", flush=True)
                    await asyncio.sleep(2.0)
            finally:
                await agent.stop()
                print(f"uploads: {dict(agent.uploader.stats) if agent.uploader else {}}")
    return 0
