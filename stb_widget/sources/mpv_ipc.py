"""The ``mpv`` source: mpv's JSON IPC (``--input-ipc-server``), read as player events.

Mapping: ``start-file`` → play; the first ``playback-restart`` after it → first frame;
``paused-for-cache`` → stall start/end; ``seeking`` (and the ``seek`` event) → seek,
except mpv's own seek while loading; ``pause`` → pause/resume; ``hls-bitrate`` (the
variant's nominal bitrate, as a property or in ``current-tracks/video``) → bitrate, or,
where mpv does not know it, ``video-bitrate`` as a measured bitrate (weighted, never a
switch); ``end-file`` with reason eof/stop/quit → stop, error → error. An
observed property that arrives without ``data`` is unknown. When mpv goes away the
agent reconnects, backing off up to ``reconnect_max_s``; a session that was open ends
as failed (mpv did not say it ended).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import orjson

from ..clock import Clock
from ..events import PlayerEvent
from . import Feed

log = logging.getLogger(__name__)

# ``hls-bitrate`` is also an option name in mpv (then its value is a string such as "max");
# only a number is a bitrate. The variant's bitrate of the playing track is in current-tracks.
_OBSERVED = ("paused-for-cache", "seeking", "pause", "hls-bitrate",
             "current-tracks/video/hls-bitrate", "video-bitrate")
_NOMINAL = frozenset(("hls-bitrate", "current-tracks/video/hls-bitrate"))
_STOP_REASONS = frozenset(("eof", "stop", "quit"))


class MpvIpcSource:
    """Connects to mpv's IPC socket and feeds player events; reconnects forever."""

    def __init__(self, path: str | Path, feed: Feed, clock: Clock,
                 reconnect_max_s: float = 5.0) -> None:
        self._path = str(path)
        self._feed = feed
        self._clock = clock
        self._reconnect_max = reconnect_max_s
        self.connected = asyncio.Event()
        self._reset()

    def _reset(self) -> None:
        self._in_file = False
        self._awaiting_frame = False
        self._stalled = False
        self._seeking = False
        self._paused = False
        self._hls_known = False

    async def run(self) -> None:
        """Connect, read, reconnect; until cancelled."""
        wait = 0.1
        down_logged = False
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(self._path, limit=1 << 20)
            except OSError as exc:
                if not down_logged:
                    log.warning("mpv IPC %s not reachable (%s); retrying", self._path, exc)
                    down_logged = True
                await self._clock.sleep(wait)
                wait = min(self._reconnect_max, wait * 2)
                continue
            log.info("connected to mpv at %s", self._path)
            wait, down_logged = 0.1, False
            try:
                await self._session(reader, writer)
            finally:
                writer.close()
                self.connected.clear()
            if self._in_file:
                await self._feed(PlayerEvent("error", message="mpv went away"))
            self._reset()
            log.warning("mpv IPC connection lost; reconnecting")

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for i, name in enumerate(_OBSERVED, start=1):
            writer.write(orjson.dumps({"command": ["observe_property", i, name]}) + b"\n")
        try:
            await writer.drain()
        except OSError:
            return
        self.connected.set()
        while True:
            try:
                line = await reader.readline()
            except (ValueError, OSError):
                return
            if not line:
                return
            try:
                msg = orjson.loads(line)
            except orjson.JSONDecodeError:
                log.debug("unreadable mpv message: %.120r", line)
                continue
            if isinstance(msg, dict):
                for ev in self.translate(msg):
                    await self._feed(ev)

    def translate(self, msg: dict[str, Any]) -> list[PlayerEvent]:
        """The player events one mpv message means (updates the source's state)."""
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
            return [PlayerEvent("play")] + ([PlayerEvent("pause")] if paused else [])
        if not self._in_file:
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
        return []
