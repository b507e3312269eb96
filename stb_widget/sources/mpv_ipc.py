"""The ``mpv`` source: mpv's JSON IPC (``--input-ipc-server``), read as player events.

Mapping: ``start-file`` → play; the first ``playback-restart`` after it → first frame;
``paused-for-cache`` → stall start/end; ``seeking`` (and the ``seek`` event) → seek,
except mpv's own seek while loading; ``pause`` → pause/resume; ``hls-bitrate`` (the
variant's nominal bitrate, as a property or in ``current-tracks/video``) → bitrate, or,
where mpv does not know it, ``video-bitrate`` as a measured bitrate (weighted, never a
switch); ``video-params/h`` → the picture's height; ``frame-drop-count`` plus
``decoder-frame-drop-count`` (frames the output and the decoder dropped) → the running
``dropped_frames`` count; ``end-file`` with reason eof/stop/quit → stop, error → error. An
observed property that arrives without ``data`` is unknown.

The channel and content type come from mpv's properties (:class:`Naming`): asked for at
``start-file`` and again at ``file-loaded`` (when the metadata is known), and sent as a
``describe`` event for the open session.

When mpv goes away the agent reconnects with an exponential backoff with jitter (up to
``reconnect_max_s``) and logs once per outage; a session that was open ends as failed
(mpv did not say it ended). A file that was already playing when the agent connected is
not measured (its start is unknown); the log says so.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

from ..clock import Clock
from ..events import PlayerEvent
from . import Feed

if TYPE_CHECKING:
    from ..config import PlayerSection

log = logging.getLogger(__name__)

# ``hls-bitrate`` is also an option name in mpv (then its value is a string such as "max");
# only a number is a bitrate. The variant's bitrate of the playing track is in current-tracks.
_OBSERVED = ("paused-for-cache", "seeking", "pause", "hls-bitrate",
             "current-tracks/video/hls-bitrate", "video-bitrate", "video-params/h",
             "frame-drop-count", "decoder-frame-drop-count")
#: Both drop counters: the session's running count is their sum.
_DROPS = frozenset(("frame-drop-count", "decoder-frame-drop-count"))
_NOMINAL = frozenset(("hls-bitrate", "current-tracks/video/hls-bitrate"))
_STOP_REASONS = frozenset(("eof", "stop", "quit"))
#: Request ids of our ``get_property`` commands start here (observe ids are below).
_REQUEST_BASE: Final = 1000
#: The first reconnect waits about this long; each failed attempt doubles it.
_BACKOFF_BASE_S: Final = 0.1
#: Longest channel name kept (the contract's bound on a ``play`` line's channel).
_MAX_CHANNEL: Final = 256


@dataclass(frozen=True, slots=True)
class Naming:
    """How a file's channel and content type are read from mpv's properties.

    ``channel_from`` is the property naming the channel ("" = none); ``media-title``
    counts only where it is a real title, not mpv's fallback to the file name (which may
    carry a URL's query string). ``channel_pattern`` picks the channel out of it (group
    ``channel``, else the whole match). ``content_types`` are (type, pattern) pairs tried
    in order against ``path``.
    """

    channel_from: str = "media-title"
    channel_pattern: re.Pattern[str] | None = None
    content_types: tuple[tuple[str, re.Pattern[str]], ...] = ()

    @classmethod
    def from_config(cls, player: PlayerSection) -> Naming:
        """The naming of the ``[player]`` section (its patterns were checked by the config)."""
        types = tuple(
            (name, re.compile(pattern))
            for name, pattern in (("live", player.content_type_live),
                                  ("vod", player.content_type_vod),
                                  ("catchup", player.content_type_catchup))
            if pattern
        )
        return cls(player.channel_from,
                   re.compile(player.channel_pattern) if player.channel_pattern else None,
                   types)

    @property
    def properties(self) -> tuple[str, ...]:
        """The mpv properties this naming reads."""
        wanted = ["path", "filename"]
        if self.channel_from and self.channel_from not in wanted:
            wanted.append(self.channel_from)
        return tuple(wanted)

    def describe(self, props: dict[str, str]) -> tuple[str | None, str | None]:
        """(channel, content_type) from the known property values."""
        channel: str | None = None
        raw = props.get(self.channel_from) if self.channel_from else None
        if raw is not None and not (self.channel_from == "media-title"
                                    and raw == props.get("filename")):
            if self.channel_pattern is None:
                channel = raw
            else:
                m = self.channel_pattern.search(raw)
                if m is not None:
                    named = m.groupdict().get("channel")
                    channel = named if named is not None else m.group(0)
        if channel is not None:
            # U+0000 would make the collector refuse the whole record: no channel then.
            channel = None if "\x00" in channel else (channel.strip()[:_MAX_CHANNEL] or None)
        content_type: str | None = None
        path = props.get("path")
        if path is not None:
            content_type = next((name for name, pat in self.content_types if pat.search(path)),
                                None)
        return channel, content_type


class MpvIpcSource:
    """Connects to mpv's IPC socket and feeds player events; reconnects forever."""

    def __init__(self, path: str | Path, feed: Feed, clock: Clock,
                 reconnect_max_s: float = 5.0, *, naming: Naming | None = None,
                 rng: random.Random | None = None) -> None:
        self._path = str(path)
        self._feed = feed
        self._clock = clock
        self._reconnect_max = reconnect_max_s
        self._naming = naming or Naming()
        self._rng = rng or random.Random()
        self.connected = asyncio.Event()
        #: Connection attempts made (for tests and the outage log).
        self.attempts = 0
        self._outbox: list[bytes] = []
        self._requests: dict[int, str] = {}
        self._next_request = _REQUEST_BASE
        self._reset()

    def _reset(self) -> None:
        self._in_file = False
        self._awaiting_frame = False
        self._stalled = False
        self._seeking = False
        self._paused = False
        self._hls_known = False
        self._drops: dict[str, int] = {}
        self._props: dict[str, str] = {}
        self._described: tuple[str | None, str | None] = (None, None)
        self._probe_id: int | None = None

    def _backoff(self, failures: int) -> float:
        # Equal jitter: never less than half the doubled wait, so boxes whose mpv died
        # together do not knock in step, and a dead mpv is not polled in a tight loop.
        wait: float = min(self._reconnect_max, _BACKOFF_BASE_S * 2.0 ** min(failures, 30))
        return wait / 2 + self._rng.uniform(0, wait / 2)

    async def run(self) -> None:
        """Connect, read, reconnect; until cancelled."""
        failures = 0
        outage_since: float | None = None  # set while mpv is unreachable (logged once)
        first = True
        while True:
            self.attempts += 1
            try:
                reader, writer = await asyncio.open_unix_connection(self._path, limit=1 << 20)
            except OSError as exc:
                if outage_since is None:
                    outage_since = self._clock.monotonic()
                    log.warning("mpv IPC %s not reachable (%s); retrying with a backoff of "
                                "up to %g s, quiet until it answers", self._path,
                                exc.strerror or exc, self._reconnect_max)
                await self._clock.sleep(self._backoff(failures))
                failures += 1
                continue
            answered = False
            try:
                answered = await self._session(reader, writer, outage_since, first)
            finally:
                writer.close()
                self.connected.clear()
            if self._in_file:
                await self._feed(PlayerEvent("error", message="mpv went away"))
            self._reset()
            self._requests.clear()
            self._outbox.clear()
            if answered:
                first = False
                failures = 0
                outage_since = self._clock.monotonic()
                log.warning("mpv IPC connection lost; reconnecting with a backoff of up to "
                            "%g s, quiet until it answers", self._reconnect_max)
            elif outage_since is None:
                # Accepted but never answered (mpv quitting, a stale listener): an outage.
                outage_since = self._clock.monotonic()
                log.warning("mpv IPC %s accepted but did not answer; retrying with a backoff",
                            self._path)
            await self._clock.sleep(self._backoff(failures))
            failures += 1

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       outage_since: float | None, first: bool) -> bool:
        """Read one connection until it ends; answers whether mpv ever answered on it."""
        for i, name in enumerate(_OBSERVED, start=1):
            writer.write(orjson.dumps({"command": ["observe_property", i, name]}) + b"\n")
        # Is something already playing? (Its start is unknown: it is not measured.)
        self._probe_id = self._request("path")
        self._flush(writer)
        try:
            await writer.drain()
        except OSError:
            return False
        answered = False
        while True:
            try:
                line = await reader.readline()
            except (ValueError, OSError):
                return answered
            if not line:
                return answered
            if not answered:
                answered = True
                self.connected.set()
                if outage_since is None or first:
                    log.info("connected to mpv at %s", self._path)
                else:
                    log.info("connected to mpv at %s again after %.1f s", self._path,
                             self._clock.monotonic() - outage_since)
            try:
                msg = orjson.loads(line)
            except orjson.JSONDecodeError:
                log.debug("unreadable mpv message: %.120r", line)
                continue
            if isinstance(msg, dict):
                for ev in self.translate(msg):
                    await self._feed(ev)
                if self._outbox:
                    self._flush(writer)
                    try:
                        await writer.drain()
                    except OSError:
                        return answered

    def _flush(self, writer: asyncio.StreamWriter) -> None:
        for command in self._outbox:
            writer.write(command)
        self._outbox.clear()

    def _request(self, prop: str) -> int:
        """Queue a ``get_property``; its answer comes back as a reply with its id."""
        rid = self._next_request
        self._next_request += 1
        self._requests[rid] = prop
        self._outbox.append(
            orjson.dumps({"command": ["get_property", prop], "request_id": rid}) + b"\n")
        return rid

    def _ask_naming(self) -> None:
        for prop in self._naming.properties:
            self._request(prop)

    def translate(self, msg: dict[str, Any]) -> list[PlayerEvent]:
        """The player events one mpv message means (updates the source's state; the
        ``get_property`` commands it needs are queued for the connection)."""
        rid = msg.get("request_id")
        if isinstance(rid, int) and rid in self._requests:
            return self._reply(rid, msg)
        name = msg.get("event")
        if name == "property-change":
            # State is followed outside files too (pause survives a file change in mpv).
            events = self._property(str(msg.get("name")), msg)
            return events if self._in_file else []
        if name == "start-file":
            paused = self._paused
            self._reset()
            self._paused = paused
            self._in_file = True
            self._awaiting_frame = True
            self._ask_naming()
            return [PlayerEvent("play")] + ([PlayerEvent("pause")] if paused else [])
        if not self._in_file:
            return []
        if name == "file-loaded":
            self._ask_naming()  # the metadata (a title) is known from here on
            return []
        if name == "playback-restart":
            if self._awaiting_frame:
                self._awaiting_frame = False
                return [PlayerEvent("first_frame")]
            return []
        if name == "seek":
            return [] if self._awaiting_frame else [PlayerEvent("seek")]
        if name == "end-file":
            self._in_file = False
            reason = msg.get("reason")
            if reason == "error":
                return [PlayerEvent("error", message=str(msg.get("file_error") or "error"))]
            if reason in _STOP_REASONS:
                return [PlayerEvent("stop")]
            return [PlayerEvent("stop")] if reason != "redirect" else []
        return []

    def _reply(self, rid: int, msg: dict[str, Any]) -> list[PlayerEvent]:
        prop = self._requests.pop(rid)
        value = msg.get("data") if msg.get("error") == "success" else None
        if rid == self._probe_id:
            self._probe_id = None
            if isinstance(value, str) and value and not self._in_file:
                self._missed(value)
            return []
        if not self._in_file:
            return []
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            self._props[prop] = str(value)
        else:
            self._props.pop(prop, None)
        described = self._naming.describe(self._props)
        if described == self._described:
            return []
        self._described = described
        channel, content_type = described
        return [PlayerEvent("describe", channel=channel, content_type=content_type)]

    def _missed(self, path: str) -> None:
        # The path itself is not logged: a stream URL may carry an access token.
        channel, _ = self._naming.describe({"path": path})
        log.warning("mpv was already playing a file when the agent connected%s; that "
                    "session is not recorded (its start and startup time are unknown); "
                    "the next file is", f" ({channel})" if channel else "")

    def _property(self, prop: str, msg: dict[str, Any]) -> list[PlayerEvent]:
        known = "data" in msg and msg["data"] is not None
        value = msg.get("data")
        if prop == "paused-for-cache":
            if not known or bool(value) == self._stalled:
                return []  # unknown: keep what we believed
            self._stalled = bool(value)
            return [PlayerEvent("stall_start" if self._stalled else "stall_end")]
        if prop == "seeking":
            if not known or bool(value) == self._seeking:
                return []
            self._seeking = bool(value)
            # mpv seeks to the start point while loading; that is startup, not a viewer seek.
            return [PlayerEvent("seek")] if self._seeking and not self._awaiting_frame else []
        if prop == "pause":
            if not known or bool(value) == self._paused:
                return []
            self._paused = bool(value)
            return [PlayerEvent("pause" if self._paused else "resume")]
        if prop in _NOMINAL:
            if known and isinstance(value, int | float) and value > 0:
                self._hls_known = True
                return [PlayerEvent("bitrate", kbps=float(value) / 1000.0)]
            return []
        if prop == "video-bitrate" and not self._hls_known:
            if known and isinstance(value, int | float) and value > 0:
                return [PlayerEvent("bitrate", kbps=round(float(value) / 1000.0, 1),
                                    nominal=False)]
            return [PlayerEvent("bitrate", kbps=None, nominal=False)]
        if prop == "video-params/h":
            if known and isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return [PlayerEvent("height", height=value)]
            return []
        if prop in _DROPS:
            if not (known and isinstance(value, int) and not isinstance(value, bool)
                    and value >= 0):
                return []
            self._drops[prop] = value
            return [PlayerEvent("dropped_frames", count=min(sum(self._drops.values()), 2**31 - 1))]
        return []
