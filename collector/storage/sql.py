"""SQL shared by the backends: column lists, row values and filter clauses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..model import Filters, SessionRow, SurveyRow
from .aggregates import Joined, SessionFacts, SurveyFacts

#: The ``sessions`` table's columns: a :class:`SessionRow`'s fields, then ``surveyed``.
SESSION_COLUMNS = (*SessionRow._fields, "surveyed")
#: The ``surveys`` table's columns: a :class:`SurveyRow`'s fields.
SURVEY_COLUMNS = SurveyRow._fields


def session_values(r: SessionRow, surveyed: bool = False) -> tuple[Any, ...]:
    """A session row's values in :data:`SESSION_COLUMNS` order (for either store)."""
    return (*r, surveyed)


def session_joined(r: SessionRow) -> Joined:
    """What a survey's aggregates need of its session row."""
    return Joined(r.channel, r.content_type, r.rb_fine, r.br_fine, r.su_fine,
                  r.rb_pos, r.br_pos, r.su_pos)


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
