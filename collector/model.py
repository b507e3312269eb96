"""What the collector stores and queries, independent of the database behind it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, NamedTuple

from .metrics import BY_NAME, METRICS


class SessionRow(NamedTuple):
    """A session record ready to store; times in µs since the epoch, clock-corrected.

    A tuple in the column order of the ``sessions`` table (less ``surveyed``, which the
    store sets): it is built once, on the event loop, and either store binds it as it is,
    so that the single writer does no per-record work that needs no database.

    Besides :data:`SESSION_HEAD`, it holds each metric's four columns
    (:attr:`collector.metrics.Metric.columns`), checked below at import. The order is
    ``collector.storage.schema``'s (checked there): schema 1's columns, then the four
    columns of each metric added since, in the metric table's order."""

    id: str
    box_id: str
    received_us: int
    started_us: int
    ended_us: int
    channel: str | None
    content_type: str | None
    startup_ms: int | None
    watch_s: float
    rebuffer_count: int
    rebuffer_s: float
    avg_bitrate_kbps: float | None
    bitrate_switches: int
    failed: bool
    rebuffer_ratio: float
    rb_bucket: int | None
    br_bucket: int | None
    su_bucket: int | None
    model: str | None
    firmware: str | None
    region: str | None
    clock_shift_s: float
    #: The record's named fields as received, JSON.
    raw: bytes
    #: Fine bins of the metrics, then the value's position inside each (see
    #: ``collector.storage.aggregates``).
    rb_fine: int | None
    br_fine: int | None
    su_fine: int | None
    rb_pos: int | None
    br_pos: int | None
    su_pos: int | None
    #: The columns of each metric added after schema 1 (value, bucket, fine bin, position),
    #: in the metric table's order, as its migration appends them.
    video_height: int | None
    vh_bucket: int | None
    vh_fine: int | None
    vh_pos: int | None


#: The fields of a :class:`SessionRow` that belong to no metric.
SESSION_HEAD: Final = ("id", "box_id", "received_us", "started_us", "ended_us", "channel",
                       "content_type", "watch_s", "rebuffer_count", "rebuffer_s",
                       "bitrate_switches", "failed", "model", "firmware", "region",
                       "clock_shift_s", "raw")
# Every metric of the table has its columns here, and nothing else is here.
assert sorted(SessionRow._fields) == sorted(
    (*SESSION_HEAD, *(c for m in METRICS for c in m.columns))), \
    "SessionRow's fields must be SESSION_HEAD and each metric's columns"


class SurveyRow(NamedTuple):
    """A survey record ready to store, in the column order of the ``surveys`` table; times
    in µs since the epoch, clock-corrected."""

    id: str
    box_id: str
    received_us: int
    session_id: str | None
    shown_us: int
    answered_us: int | None
    outcome: str
    score: int | None
    reason: str | None
    locale: str | None
    model: str | None
    firmware: str | None
    region: str | None
    clock_shift_s: float
    raw: bytes


Row = SessionRow | SurveyRow


@dataclass(frozen=True, slots=True)
class Filters:
    """The report's and the export's filters; times half-open, µs since the epoch."""

    from_us: int | None = None
    to_us: int | None = None
    region: str | None = None
    model: str | None = None
    firmware: str | None = None
    channel: str | None = None
    content_type: str | None = None

    @property
    def through_session(self) -> bool:
        """Whether a survey can only be matched through its session."""
        return self.channel is not None or self.content_type is not None


@dataclass(frozen=True, slots=True)
class SessionGroup:
    """A count of sessions sharing bucket indices, failure and surveyed flags."""

    #: The bucket index of each metric, in the metric table's order (None: no value).
    buckets: tuple[int | None, ...]
    failed: bool
    surveyed: bool
    count: int

    @classmethod
    def of(cls, buckets: Mapping[str, int | None], failed: bool, surveyed: bool,
           count: int) -> SessionGroup:
        """A group from its buckets by metric name (a metric not given: no value)."""
        return cls(tuple(buckets.get(m.name) for m in METRICS), failed, surveyed, count)


_METRIC_INDEX: Final = {m.name: i for i, m in enumerate(METRICS)}


@dataclass(frozen=True, slots=True)
class SurveyFact:
    """One survey in range, with its session's metrics where the session is known."""

    outcome: str
    score: int | None
    reason: str | None
    has_session: bool
    #: The session's value of each metric, in the metric table's order (None: unknown).
    values: tuple[float | None, ...]

    @classmethod
    def of(cls, outcome: str, score: int | None, reason: str | None, has_session: bool,
           values: Mapping[str, float | None]) -> SurveyFact:
        """A fact from its session's values by metric name (a metric not given: null)."""
        return cls(outcome, score, reason, has_session, tuple(values.get(m.name) for m in METRICS))

    def value(self, metric: str) -> float | None:
        """The session's value of ``metric``."""
        assert metric in BY_NAME, metric
        return self.values[_METRIC_INDEX[metric]]


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A stored box token's owner and state."""

    box_id: str
    revoked: bool


@dataclass(frozen=True, slots=True)
class UploadAuth:
    """The token an upload came with, for the store to check in its write transaction."""

    token_hash: bytes
    box_id: str

    def refusal(self, info: TokenInfo | None) -> str | None:
        """Why the stored token ``info`` does not allow this upload, or None if it does."""
        if info is None:
            return "unknown"
        if info.revoked:
            return "revoked"
        if info.box_id != self.box_id:
            return "other_box"
        return None
