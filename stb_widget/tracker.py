"""One session tracker: turns player events into the contract's session record and QoS.

The rules (contract section 2): time *played* is after the first frame and neither
paused nor stalled; a stall that starts within 5 s after a seek is the seek's own and not
counted; paused time never counts as stall time and is left out of ``watch_s``; a
bitrate equal to the current one is not a switch, nor is the first one.

Memory per tracker is a few dozen numbers and the time played at each picture height (a
handful of renditions): nothing is kept per event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from protocol import Qos, SessionRecord

from .clock import Clock
from .events import PlayerEvent
from .ids import uuid7

log = logging.getLogger(__name__)

#: A stall starting this soon after a seek is the seek's own.
SEEK_STALL_WINDOW_S = 5.0

EndReason = Literal["stop", "error", "replaced", "shutdown"]


@dataclass(frozen=True, slots=True)
class FinishedSession:
    """A session that ended, and how: ``stop``/``error`` (by the player), ``replaced``
    (a new ``play`` came while it was open) or ``shutdown`` (the agent stopped)."""

    record: SessionRecord
    end: EndReason


class _Open:
    """The running figures of the open session."""

    __slots__ = (
        "by_height", "channel", "content_type", "drops", "first_frame_t", "height", "id", "kbps",
        "last_nominal", "last_seek_t", "last_t", "offset", "paused", "paused_s",
        "rebuffer_count", "rebuffer_s", "stall_counted", "stall_pending", "stalled",
        "started_wall", "switches", "t0", "weighted_s", "weighted_sum",
    )

    def __init__(self, sid: str, wall: datetime, t0: float, offset: float,
                 channel: str | None, content_type: str | None) -> None:
        self.id = sid
        self.started_wall = wall
        self.t0 = t0
        self.last_t = t0
        self.offset = offset  # agent monotonic minus sender clock
        self.channel = channel
        self.content_type = content_type
        self.first_frame_t: float | None = None
        self.paused = False
        self.stalled = False
        self.stall_counted = False
        self.stall_pending = False  # a counted stall that began while paused
        self.last_seek_t: float | None = None
        self.paused_s = 0.0
        self.rebuffer_s = 0.0
        self.rebuffer_count = 0
        self.kbps: float | None = None
        self.last_nominal: float | None = None
        self.switches = 0
        self.weighted_sum = 0.0
        self.weighted_s = 0.0
        self.height: int | None = None
        #: Seconds played at each picture height (a handful of renditions at most).
        self.by_height: dict[int, float] = {}
        self.drops = _Drops()

    def advance(self, t: float) -> None:
        """Book the time since the last event in the state it was spent in."""
        dt = t - self.last_t
        if dt <= 0:
            return
        self.last_t = t
        if self.paused:
            self.paused_s += dt
        elif self.stalled:
            if self.stall_counted:
                if self.stall_pending:
                    self.stall_pending = False
                    self.rebuffer_count += 1
                self.rebuffer_s += dt
        elif self.first_frame_t is not None:
            if self.kbps is not None:
                self.weighted_sum += self.kbps * dt
                self.weighted_s += dt
            if self.height is not None:
                self.by_height[self.height] = self.by_height.get(self.height, 0.0) + dt

    def video_height(self) -> int | None:
        """The height played longest (the higher one on a tie); None where no time was
        played at a known height."""
        if not self.by_height:
            return None
        return max(self.by_height, key=lambda h: (self.by_height[h], h))


class _Drops:
    """The session's dropped frames from the player's running counts: the last count minus
    the first, or the last where only one came (contract section 2). A count below the
    one before means the player started counting again (a decoder re-created), so that
    count is all new drops: the figure is never negative."""

    __slots__ = ("counts", "prev", "total")

    def __init__(self) -> None:
        self.counts = 0
        self.prev = 0
        self.total = 0

    def add(self, count: int) -> None:
        """Take one running count."""
        if self.counts:
            self.total += count - self.prev if count >= self.prev else count
        self.counts += 1
        self.prev = count

    def figure(self) -> int | None:
        """The session's figure; None where the player never said."""
        if not self.counts:
            return None
        return self.prev if self.counts == 1 else self.total


class SessionTracker:
    """Follows one player; :meth:`feed` answers the sessions that the event ended."""

    __slots__ = ("_clock", "_new_id", "_open")

    def __init__(self, clock: Clock, new_id: Callable[[], str] | None = None) -> None:
        self._clock = clock
        self._new_id = new_id or self._clock_id
        self._open: _Open | None = None

    def _clock_id(self) -> str:
        return uuid7(int(self._clock.wall().timestamp() * 1000))

    @property
    def open_session_id(self) -> str | None:
        """The id of the session in progress, if any."""
        return self._open.id if self._open else None

    def _time(self, s: _Open, at: float | None) -> float:
        # Events without ``at`` are placed on the sender's clock via the offset seen at play.
        t = self._clock.monotonic() - s.offset if at is None else at
        return max(t, s.last_t)  # never step back, whatever the sender sends

    def feed(self, ev: PlayerEvent) -> FinishedSession | None:
        """Apply one event; answers the session it ended, if any."""
        if ev.kind == "play":
            done = self._finish(ev.at, "replaced") if self._open else None
            now = self._clock.monotonic()
            t0 = now if ev.at is None else ev.at
            self._open = _Open(self._new_id(), self._clock.wall(), t0, now - t0,
                               ev.channel, ev.content_type)
            return done
        s = self._open
        if s is None:
            log.debug("player event %s outside a session: ignored", ev.kind)
            return None
        if ev.kind in ("stop", "error"):
            return self._finish(ev.at, ev.kind)
        t = self._time(s, ev.at)
        s.advance(t)
        kind = ev.kind
        if kind == "first_frame":
            if s.first_frame_t is None:
                s.first_frame_t = t
        elif kind == "bitrate":
            if ev.kbps is None:
                s.kbps = None
            else:
                if ev.nominal:
                    if s.last_nominal is not None and ev.kbps != s.last_nominal:
                        s.switches += 1
                    s.last_nominal = ev.kbps
                s.kbps = ev.kbps
            if ev.height is not None:
                s.height = ev.height
        elif kind == "height":
            s.height = ev.height
        elif kind == "dropped_frames":
            if ev.count is not None:
                s.drops.add(ev.count)
        elif kind == "stall_start":
            # Buffering before the first frame is startup, not a stall.
            if s.first_frame_t is not None and not s.stalled:
                s.stalled = True
                by_seek = s.last_seek_t is not None and t - s.last_seek_t <= SEEK_STALL_WINDOW_S
                s.stall_counted = not by_seek
                if s.stall_counted:
                    if s.paused:
                        s.stall_pending = True
                    else:
                        s.rebuffer_count += 1
        elif kind == "stall_end":
            s.stalled = False
            s.stall_counted = False
            s.stall_pending = False
        elif kind == "pause":
            s.paused = True
        elif kind == "resume":
            s.paused = False
        elif kind == "seek":
            s.last_seek_t = t
        elif kind == "describe":
            if ev.channel is not None:
                s.channel = ev.channel
            if ev.content_type is not None:
                s.content_type = ev.content_type
        return None

    def close(self) -> FinishedSession | None:
        """End the open session because the agent stops (not a failure)."""
        return self._finish(None, "shutdown") if self._open else None

    def _finish(self, at: float | None, end: EndReason) -> FinishedSession:
        s = self._open
        assert s is not None
        self._open = None
        t = self._time(s, at)
        s.advance(t)
        length = t - s.t0
        if s.weighted_s > 0:
            avg: float | None = round(s.weighted_sum / s.weighted_s, 3)
        else:
            avg = s.last_nominal if s.last_nominal is not None else s.kbps
        startup = None if s.first_frame_t is None else round((s.first_frame_t - s.t0) * 1000)
        qos = Qos(
            startup_ms=startup,
            watch_s=round(max(0.0, length - s.paused_s), 3),
            rebuffer_count=s.rebuffer_count,
            rebuffer_s=round(s.rebuffer_s, 3),
            avg_bitrate_kbps=avg,
            bitrate_switches=s.switches,
            failed=end == "error",
            dropped_frames=s.drops.figure(),
            video_height=s.video_height(),
        )
        record = SessionRecord(
            id=s.id,
            kind="session",
            started_at=s.started_wall,
            ended_at=s.started_wall + timedelta(seconds=length),
            channel=s.channel,
            content_type=s.content_type,  # type: ignore[arg-type]
            qos=qos,
        )
        return FinishedSession(record, end)
