"""A simulated player: one viewing session as the contract's player events.

:func:`plan_session` draws, from a network profile and the viewer's habits, everything
that will happen in one session: startup, stalls, bitrate switches, pauses, seeks (with
their own short buffering, which the agent must not count), a failure or an exit before
the first frame. It answers the events (``at`` relative to the play) and what the viewer
*lived through* (:class:`Lived`), which drives the viewer's score.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final, Literal

from protocol.units import HOUR_S
from stb_widget.events import PlayerEvent

from .network import HEIGHTS, LADDER, NetworkProfile

EndKind = Literal["stop", "error", "replaced"]

#: Nobody waits longer than this for a picture: it bounds the startup a viewer lives
#: through (the planted model's realistic range, ``planted.RANGE``, relies on it).
MAX_PATIENCE_S: Final = 20.0
#: No network stall starts this soon after a seek (the contract's 5 s window, plus a
#: margin): whatever stalls there is the seek's own, so lived and measured stalls agree.
SEEK_QUIET_S: Final = 6.0


@dataclass(frozen=True, slots=True)
class Lived:
    """The quality the viewer went through, as the player knows it."""

    startup_ms: int | None
    watch_s: float
    rebuffer_s: float
    rebuffer_count: int
    avg_kbps: float | None
    failed: bool
    exited_before_start: bool
    #: The height of the rung played longest (None where nothing was played).
    video_height: int | None = None

    @property
    def rebuffer_ratio(self) -> float:
        """Stalled share of the watch time (0 when nothing was watched)."""
        return self.rebuffer_s / self.watch_s if self.watch_s > 0 else 0.0


@dataclass(frozen=True, slots=True)
class SessionPlan:
    """Everything one session will do. ``events`` exclude the ``play`` and the end event."""

    channel: str
    content_type: str
    events: tuple[PlayerEvent, ...]
    #: Seconds after the play when the session ends (pauses included).
    end_s: float
    end: EndKind
    lived: Lived


@dataclass(frozen=True, slots=True)
class Habits:
    """A viewer's habits that shape a session."""

    #: Seconds the viewer waits for a picture before giving up (median).
    patience_s: float
    #: Pauses per hour of VOD/catch-up viewing.
    pauses_per_h: float
    #: Seeks per hour of VOD/catch-up viewing.
    seeks_per_h: float


def _rung_for(kbps: float) -> int:
    """The highest rung the throughput sustains with a 20 % margin (at least the lowest)."""
    best = 0
    for i, rate in enumerate(LADDER):
        if rate <= 0.8 * kbps:
            best = i
    return best


def plan_session(
    rng: random.Random,
    profile: NetworkProfile,
    habits: Habits,
    *,
    peak: bool,
    content_seconds: float,
    channel: str,
    content_type: str,
    replaced: bool,
    t0: float = 0.0,
) -> SessionPlan:
    """Draw one session of about ``content_seconds`` of viewing.

    ``replaced``: the viewer zaps on, so no ``stop`` is sent (the next ``play`` ends it).
    ``t0``: the player's monotonic time of the ``play``; events' ``at`` count from it.
    """
    pf = profile.peak_factor if peak else 1.0
    events: list[PlayerEvent] = []
    startup_s = rng.lognormvariate(math.log(profile.startup_ms / 1000.0 * (1.3 if peak else 1.0)),
                                   profile.startup_sigma)
    patience = min(MAX_PATIENCE_S,
                   max(2.0, rng.lognormvariate(math.log(habits.patience_s), 0.5)))
    end_kind: EndKind = "replaced" if replaced else "stop"
    if startup_s > patience:
        # No picture in time: the viewer gives up before the first frame.
        lived = Lived(None, patience, 0.0, 0, None, False, True)
        return SessionPlan(channel, content_type, (), patience, end_kind, lived)
    throughput = rng.lognormvariate(math.log(profile.throughput_kbps / pf), profile.throughput_sigma)
    rung = _rung_for(throughput)
    t = startup_s
    events.append(PlayerEvent("first_frame", t0 + t))
    events.append(PlayerEvent("bitrate", t0 + t, kbps=LADDER[rung], height=HEIGHTS[rung]))
    end_t = max(t + 1.0, content_seconds)
    fails = rng.random() < min(0.9, profile.failure * pf)
    fail_t = rng.uniform(t, end_t) if fails else math.inf
    stall_rate = profile.stalls_per_h * pf / HOUR_S
    # Streams above what the line sustains stall more.
    if LADDER[rung] > throughput:
        stall_rate *= 2.0
    switch_rate = profile.switches_per_h / HOUR_S
    seekable = content_type != "live"
    pause_rate = habits.pauses_per_h / HOUR_S if seekable else habits.pauses_per_h / 14400.0
    seek_rate = habits.seeks_per_h / HOUR_S if seekable else 0.0
    total_rate = stall_rate + switch_rate + pause_rate + seek_rate
    rebuffer_s = 0.0
    rebuffer_n = 0
    last_seek = -math.inf
    paused_s = 0.0
    weighted = 0.0
    played = 0.0
    by_rung = [0.0] * len(LADDER)
    # Content time runs only while playing; wall offsets add stalls and pauses on top.
    content_t = t
    while True:
        gap = rng.expovariate(total_rate) if total_rate > 0 else math.inf
        stop_at = min(end_t - content_t, fail_t - content_t)
        if gap >= stop_at:
            played += stop_at
            weighted += LADDER[rung] * stop_at
            by_rung[rung] += stop_at
            t += stop_at
            content_t += stop_at
            break
        played += gap
        weighted += LADDER[rung] * gap
        by_rung[rung] += gap
        t += gap
        content_t += gap
        pick = rng.random() * total_rate
        if pick < stall_rate:
            d = max(0.3, rng.expovariate(1.0 / profile.stall_s))
            if t - last_seek <= SEEK_QUIET_S:
                # Right after a seek the network holds: a stall there would be the seek's
                # own by the contract (section 2), so the viewer never lives one.
                continue
            events.append(PlayerEvent("stall_start", t0 + t))
            t += d
            events.append(PlayerEvent("stall_end", t0 + t))
            rebuffer_s += d
            rebuffer_n += 1
            if rung > 0 and rng.random() < 0.6:  # the player adapts down after a stall
                rung -= 1
                events.append(PlayerEvent("bitrate", t0 + t, kbps=LADDER[rung], height=HEIGHTS[rung]))
        elif pick < stall_rate + switch_rate:
            target = _rung_for(throughput * rng.lognormvariate(0.0, 0.3))
            new = rung + (1 if target > rung else -1 if target < rung else 0)
            if new != rung:
                rung = new
                events.append(PlayerEvent("bitrate", t0 + t, kbps=LADDER[rung], height=HEIGHTS[rung]))
        elif pick < stall_rate + switch_rate + pause_rate:
            p = rng.expovariate(1.0 / 150.0)
            events.append(PlayerEvent("pause", t0 + t))
            t += p
            paused_s += p
            events.append(PlayerEvent("resume", t0 + t))
        else:
            events.append(PlayerEvent("seek", t0 + t))
            last_seek = t
            if rng.random() < 0.7:
                # The seek's own buffering: the agent must not count it as a stall. The
                # tenth of a second before it plays (the viewer sees the new position).
                d = rng.uniform(0.3, 2.0)
                events.append(PlayerEvent("stall_start", t0 + t + 0.1))
                played += 0.1
                weighted += LADDER[rung] * 0.1
                by_rung[rung] += 0.1
                t += 0.1 + d
                events.append(PlayerEvent("stall_end", t0 + t))
    if fails:
        end_kind = "error"
    watch = t - paused_s
    lived = Lived(
        startup_ms=round(startup_s * 1000),
        watch_s=watch,
        rebuffer_s=rebuffer_s,
        rebuffer_count=rebuffer_n,
        avg_kbps=weighted / played if played > 0 else float(LADDER[rung]),
        failed=fails,
        exited_before_start=False,
        video_height=max(((t, HEIGHTS[r]) for r, t in enumerate(by_rung) if t > 0),
                         default=(0.0, None))[1],
    )
    return SessionPlan(channel, content_type, tuple(events), t, end_kind, lived)


def end_event(plan: SessionPlan, at: float) -> PlayerEvent | None:
    """The event that ends the session (None when the next ``play`` replaces it)."""
    if plan.end == "stop":
        return PlayerEvent("stop", at)
    if plan.end == "error":
        return PlayerEvent("error", at, message="decoder failed")
    return None
