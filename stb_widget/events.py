"""The internal player event model, shared by every source, and the JSON-lines parser."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

from protocol.types import CONTENT_TYPES

from .errors import EventError

EventKind = Literal[
    "play", "first_frame", "bitrate", "stall_start", "stall_end",
    "pause", "resume", "seek", "error", "stop", "describe", "dropped_frames", "height",
]
#: The kinds a JSON line may carry (``describe`` and ``height`` are internal: a source that
#: learns the open session's channel or content type after its ``play``, or the picture's
#: height apart from any bitrate, as mpv does).
KINDS: Final[frozenset[str]] = frozenset(
    ("play", "first_frame", "bitrate", "stall_start", "stall_end",
     "pause", "resume", "seek", "error", "stop", "dropped_frames")
)
#: Longest player event line accepted; longer ones are skipped.
MAX_LINE: Final = 16 * 1024


@dataclass(frozen=True, slots=True)
class PlayerEvent:
    """One fact about the player.

    ``at`` is seconds on any monotonic clock of the sender (None: the agent's own clock).
    ``describe`` sets the open session's ``channel`` and ``content_type`` where not None.
    ``kbps`` is None on a ``bitrate`` event whose value is unknown. ``nominal`` is False
    for a measured bitrate (it moves every second), which weighs in the average but is
    never counted as a switch.
    """

    kind: EventKind
    at: float | None = None
    channel: str | None = None
    content_type: str | None = None
    kbps: float | None = None
    nominal: bool = True
    message: str | None = None
    #: ``bitrate`` and ``height``: the picture's height in pixels, where the player said; it
    #: holds until a later event gives another (an event without one changes nothing).
    height: int | None = None
    #: ``dropped_frames``: the player's running count of dropped frames for the session.
    count: int | None = None


def parse_event_line(line: bytes) -> PlayerEvent:
    """Parse one line of the ``events`` source; :class:`EventError` says what is wrong.

    A ``play`` with a bad ``channel`` or ``content_type`` still parses, with that field None.
    """
    if len(line) > MAX_LINE:
        raise EventError(f"line longer than {MAX_LINE} bytes")
    try:
        doc: Any = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise EventError(f"not JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise EventError("not a JSON object")
    kind = doc.get("event")
    if not isinstance(kind, str) or kind not in KINDS:
        raise EventError(f"event: unknown or missing ({kind!r})")
    at = doc.get("at")
    if at is not None and (
        isinstance(at, bool) or not isinstance(at, int | float) or not (at == at)
        or at in (float("inf"), float("-inf"))
    ):
        raise EventError("at: must be a number of seconds")
    at_f = None if at is None else float(at)
    if kind == "play":
        channel = doc.get("channel")
        ctype = doc.get("content_type")
        return PlayerEvent(
            "play", at_f,
            # A channel the collector would refuse (U+0000, contract section 3) is no channel:
            # the session is still worth sending.
            channel=channel if isinstance(channel, str) and 0 < len(channel) <= 256
            and "\x00" not in channel else None,
            content_type=ctype if isinstance(ctype, str) and ctype in CONTENT_TYPES else None,
        )
    if kind == "bitrate":
        kbps = doc.get("kbps")
        if kbps is not None and (
            isinstance(kbps, bool) or not isinstance(kbps, int | float) or not 0 <= kbps < 1e9
        ):
            raise EventError("kbps: must be a non-negative number or null")
        height = doc.get("height")
        # ``height`` is optional; one that is no pixel count is dropped, the bitrate kept.
        if isinstance(height, bool) or not isinstance(height, int) or not 0 < height < 65536:
            height = None
        return PlayerEvent("bitrate", at_f, kbps=None if kbps is None else float(kbps),
                           height=height)
    if kind == "dropped_frames":
        count = doc.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count < 2**31:
            raise EventError("count: must be a non-negative integer")
        return PlayerEvent("dropped_frames", at_f, count=count)
    if kind == "error":
        message = doc.get("message")
        return PlayerEvent("error", at_f, message=str(message)[:200] if message else None)
    return PlayerEvent(kind, at_f)  # type: ignore[arg-type]
