"""The v1 wire types: the batch envelope and its two kinds of record.

These frozen dataclasses are the only definition of the wire format; the box builds
them, the collector decodes into them, and the JSON Schema is generated from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from .errors import FieldError
from .limits import BOX_ID_PATTERN, PROTOCOL_VERSION
from .spec import wire

CONTENT_TYPES: Final = ("live", "vod", "catchup")
OUTCOMES: Final = ("answered", "dismissed", "timeout")
REASONS: Final = ("picture", "buffering", "content", "price", "interface", "support", "other")

ContentType = Literal["live", "vod", "catchup"]
Outcome = Literal["answered", "dismissed", "timeout"]
Reason = Literal["picture", "buffering", "content", "price", "interface", "support", "other"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Qos:
    """Quality of one viewing session, as the box measured it."""

    startup_ms: int | None = wire(
        "integer", "Play request to first frame, ms; null where no frame was ever shown.",
        minimum=0, nullable=True,
    )
    watch_s: float = wire(
        "number", "Play request to the end of the session, startup and stalls included, "
        "time paused by the viewer excluded.", minimum=0,
    )
    rebuffer_count: int = wire(
        "integer", "Stalls after the first frame that the viewer did not cause.", minimum=0
    )
    rebuffer_s: float = wire("number", "Total time of those stalls, s.", minimum=0)
    avg_bitrate_kbps: float | None = wire(
        "number", "Video bitrate in use, weighted by time played; null if unknown.",
        minimum=0, nullable=True,
    )
    bitrate_switches: int = wire("integer", "Changes of the video bitrate.", minimum=0)
    failed: bool = wire("boolean", "The session ended on a playback error.")
    dropped_frames: int | None = wire(
        "integer", "Frames the player or decoder dropped while playing; absent or null where "
        "the player does not tell.", minimum=0, nullable=True, optional=True,
    )
    video_height: int | None = wire(
        "integer", "Height in pixels of the rendition played longest (e.g. 1080); absent or "
        "null where the player does not tell.", minimum=0, nullable=True, optional=True,
    )

    @property
    def rebuffer_ratio(self) -> float:
        """``rebuffer_s / watch_s``, 0 where ``watch_s`` is 0 (the contract's definition)."""
        return self.rebuffer_s / self.watch_s if self.watch_s > 0 else 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRecord:
    """One viewing session, sent whether or not it was surveyed."""

    id: str = wire("uuid", "Record id, made on the box (UUIDv7 recommended).")
    kind: Literal["session"] = wire("string", "Record kind.", const="session")
    started_at: datetime = wire("time", "When the play request came.")
    ended_at: datetime = wire("time", "When the session ended; not before started_at.")
    channel: str | None = wire("string", "Channel name, or null.", nullable=True)
    content_type: ContentType | None = wire(
        "string", "live, vod, catchup or null.", enum=CONTENT_TYPES, nullable=True
    )
    qos: Qos = wire("object", "Quality of the session.", of=Qos)

    @classmethod
    def _check(cls, values: Mapping[str, Any], path: str) -> None:
        if values["ended_at"] < values["started_at"]:
            raise FieldError(_join(path, "ended_at"), "must not be before started_at")


@dataclass(frozen=True, slots=True, kw_only=True)
class SurveyRecord:
    """One question shown to a viewer, and what came of it."""

    id: str = wire("uuid", "Record id, made on the box (UUIDv7 recommended).")
    kind: Literal["survey"] = wire("string", "Record kind.", const="survey")
    session_id: str | None = wire(
        "uuid", "The session after which the question was shown, or null.", nullable=True
    )
    shown_at: datetime = wire("time", "When the question appeared.")
    answered_at: datetime | None = wire(
        "time", "When the score was confirmed; null or absent unless answered.", optional=True
    )
    outcome: Outcome = wire("string", "answered, dismissed or timeout.", enum=OUTCOMES)
    score: int | None = wire(
        "integer", "0 to 10 when answered; null or absent otherwise.",
        minimum=0, maximum=10, optional=True,
    )
    reason: Reason | None = wire(
        "string", "Main reason picked after answering, or null.", enum=REASONS, optional=True
    )
    locale: str | None = wire(
        "string", "The question's language.", optional=True, max_length=64
    )

    @classmethod
    def _check(cls, values: Mapping[str, Any], path: str) -> None:
        if values["outcome"] == "answered":
            if values["score"] is None:
                raise FieldError(_join(path, "score"), "is required when outcome is answered")
            if values["answered_at"] is None:
                raise FieldError(
                    _join(path, "answered_at"), "is required when outcome is answered"
                )
        else:
            for name in ("score", "answered_at", "reason"):
                if values[name] is not None:
                    raise FieldError(
                        _join(path, name), f"must be null when outcome is {values['outcome']}"
                    )


Record = SessionRecord | SurveyRecord
RECORD_TYPES: Final[dict[str, type[SessionRecord] | type[SurveyRecord]]] = {
    "session": SessionRecord,
    "survey": SurveyRecord,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class BoxInfo:
    """The box's attributes; the report's segments. They apply to the batch's records."""

    model: str | None = wire("string", "Hardware model.", optional=True, max_length=256)
    firmware: str | None = wire("string", "Firmware version.", optional=True, max_length=256)
    region: str | None = wire("string", "Region code.", optional=True, max_length=256)


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """A batch's envelope: everything but its records."""

    protocol: int = wire("integer", "Protocol version; the integer 1.", const=PROTOCOL_VERSION)
    box_id: str = wire(
        "string", "The sending box: 1 to 64 of A-Z a-z 0-9 . _ : -", pattern=BOX_ID_PATTERN
    )
    sent_at: datetime = wire("time", "The box's clock when this attempt was sent.")
    box: BoxInfo | None = wire("object", "The box's attributes.", of=BoxInfo, optional=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Batch:
    """A whole upload, as the box builds it."""

    box_id: str
    sent_at: datetime
    records: tuple[Record, ...]
    box: BoxInfo | None = None
    protocol: int = PROTOCOL_VERSION


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
