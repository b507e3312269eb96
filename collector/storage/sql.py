"""SQL shared by the backends: column lists, row values and filter clauses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..model import Filters, SessionRow, SurveyRow
from .aggregates import Joined, SessionFacts, SurveyFacts, fine_bin_pos

SESSION_COLUMNS = (
    "id", "box_id", "received_us", "started_us", "ended_us", "channel", "content_type",
    "startup_ms", "watch_s", "rebuffer_count", "rebuffer_s", "avg_bitrate_kbps",
    "bitrate_switches", "failed", "rebuffer_ratio", "rb_bucket", "br_bucket", "su_bucket",
    "model", "firmware", "region", "clock_shift_s", "raw", "rb_fine", "br_fine", "su_fine",
    "rb_pos", "br_pos", "su_pos", "surveyed",
)
SURVEY_COLUMNS = (
    "id", "box_id", "received_us", "session_id", "shown_us", "answered_us", "outcome",
    "score", "reason", "locale", "model", "firmware", "region", "clock_shift_s", "raw",
)


Derived = tuple[int | None, int | None, int | None, int | None, int | None, int | None]


def derived(r: SessionRow) -> Derived:
    """The session's fine bins then positions (rebuffer ratio, bitrate, start-up): the
    columns ``rb_fine`` to ``su_pos``, computed once per row and passed along."""
    rb, rbp = fine_bin_pos("rebuffer_ratio", r.rebuffer_ratio)
    br, brp = fine_bin_pos("avg_bitrate_kbps", r.avg_bitrate_kbps)
    su, sup = fine_bin_pos("startup_ms", r.startup_ms)
    return rb, br, su, rbp, brp, sup


def session_values(r: SessionRow, surveyed: bool = False, d: Derived | None = None) -> tuple[Any, ...]:
    """A session row's values in :data:`SESSION_COLUMNS` order (SQLite types)."""
    return (
        r.id, r.box_id, r.received_us, r.started_us, r.ended_us, r.channel, r.content_type,
        r.startup_ms, r.watch_s, r.rebuffer_count, r.rebuffer_s, r.avg_bitrate_kbps,
        r.bitrate_switches, int(r.failed), r.rebuffer_ratio, r.rb_bucket, r.br_bucket,
        r.su_bucket, r.model, r.firmware, r.region, r.clock_shift_s, r.raw,
        *(d or derived(r)), int(surveyed),
    )


def session_facts(r: SessionRow) -> SessionFacts:
    """What the aggregates need of a session row."""
    return SessionFacts(r.started_us, r.region, r.model, r.firmware, r.channel, r.content_type,
                        r.rb_bucket, r.br_bucket, r.su_bucket, r.failed)


def session_joined(r: SessionRow, d: Derived | None = None) -> Joined:
    """What a survey's aggregates need of its session row."""
    return Joined(r.channel, r.content_type, *(d or derived(r)))


def survey_facts_of(r: SurveyRow) -> SurveyFacts:
    """What the aggregates need of a survey row."""
    return SurveyFacts(r.shown_us, r.region, r.model, r.firmware, r.outcome, r.score, r.reason)


#: Columns that give :class:`SessionFacts` (in order), for flips of the surveyed flag.
SESSION_FACT_COLUMNS = ("started_us", "region", "model", "firmware", "channel", "content_type",
                        "rb_bucket", "br_bucket", "su_bucket", "failed")
#: Columns that give :class:`Joined` (after the id), for surveys that find their session.
JOINED_COLUMNS = ("channel", "content_type", "rb_fine", "br_fine", "su_fine", "rb_pos",
                  "br_pos", "su_pos")
#: Columns that give :class:`SurveyFacts` (after the session id), for surveys whose session
#: arrives later.
SURVEY_FACT_COLUMNS = ("shown_us", "region", "model", "firmware", "outcome", "score", "reason")


def survey_values(r: SurveyRow) -> tuple[Any, ...]:
    """A survey row's values in :data:`SURVEY_COLUMNS` order."""
    return (
        r.id, r.box_id, r.received_us, r.session_id, r.shown_us, r.answered_us, r.outcome,
        r.score, r.reason, r.locale, r.model, r.firmware, r.region, r.clock_shift_s, r.raw,
    )


class _Params:
    def __init__(self, style: str) -> None:
        self.style = style
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return "?" if self.style == "?" else f"${len(self.values)}"


def placeholders(style: str, n: int, start: int = 0) -> str:
    """``?, ?, ...`` or ``$k, $k+1, ...`` for ``n`` values."""
    if style == "?":
        return ", ".join("?" * n)
    return ", ".join(f"${start + i + 1}" for i in range(n))


def where_sessions(f: Filters, style: str) -> tuple[str, list[Any]]:
    """WHERE clause over ``sessions`` (unaliased); ``style`` is ``?`` or ``$`` (numbered)."""
    p = _Params(style)
    parts = []
    if f.from_us is not None:
        parts.append(f"started_us >= {p.add(f.from_us)}")
    if f.to_us is not None:
        parts.append(f"started_us < {p.add(f.to_us)}")
    for col in ("region", "model", "firmware", "channel", "content_type"):
        value = getattr(f, col)
        if value is not None:
            parts.append(f"{col} = {p.add(value)}")
    return ("WHERE " + " AND ".join(parts) if parts else ""), p.values


def where_surveys(f: Filters, style: str) -> tuple[str, list[Any]]:
    """WHERE clause over ``surveys v LEFT JOIN sessions s``: a survey reaches the channel
    and content-type filters through its session, so a survey whose session has not
    arrived is left out of such a query."""
    p = _Params(style)
    parts = []
    if f.from_us is not None:
        parts.append(f"v.shown_us >= {p.add(f.from_us)}")
    if f.to_us is not None:
        parts.append(f"v.shown_us < {p.add(f.to_us)}")
    for col in ("region", "model", "firmware"):
        value = getattr(f, col)
        if value is not None:
            parts.append(f"v.{col} = {p.add(value)}")
    for col in ("channel", "content_type"):
        value = getattr(f, col)
        if value is not None:
            parts.append(f"s.{col} = {p.add(value)}")
    return ("WHERE " + " AND ".join(parts) if parts else ""), p.values


def session_facts_row(r: Sequence[Any]) -> SessionFacts:
    """:class:`SessionFacts` from a row of :data:`SESSION_FACT_COLUMNS`."""
    return SessionFacts(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], bool(r[9]))


def joined_row(r: Sequence[Any]) -> Joined:
    """:class:`Joined` from a row of :data:`JOINED_COLUMNS`."""
    return Joined(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7])


def survey_facts_row(r: Sequence[Any]) -> SurveyFacts:
    """:class:`SurveyFacts` from a row of :data:`SURVEY_FACT_COLUMNS`."""
    return SurveyFacts(r[0], r[1], r[2], r[3], r[4], r[5], r[6])
