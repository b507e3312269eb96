"""SQL shared by the backends: column lists, row values and filter clauses."""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from typing import Any

from ..metrics import METRICS
from ..model import Filters, SessionGroup, SessionRow, SurveyFact, SurveyRow
from .aggregates import COUNTED, Joined, SessionFacts, SurveyFacts

#: The ``sessions`` table's columns: a :class:`SessionRow`'s fields, then ``surveyed``.
SESSION_COLUMNS = (*SessionRow._fields, "surveyed")
#: The ``surveys`` table's columns: a :class:`SurveyRow`'s fields.
SURVEY_COLUMNS = SurveyRow._fields


def session_values(r: SessionRow, surveyed: bool = False) -> tuple[Any, ...]:
    """A session row's values in :data:`SESSION_COLUMNS` order (for either store)."""
    return (*r, surveyed)


_FINES = attrgetter(*(m.fine_column for m in METRICS))
_POSITIONS = attrgetter(*(m.pos_column for m in METRICS))


def session_joined(r: SessionRow) -> Joined:
    """What a survey's aggregates need of its session row."""
    return Joined(r.channel, r.content_type, tuple(_FINES(r)), tuple(_POSITIONS(r)))


def survey_facts_of(r: SurveyRow) -> SurveyFacts:
    """What the aggregates need of a survey row."""
    return SurveyFacts(r.shown_us, r.region, r.model, r.firmware, r.outcome, r.score, r.reason)


#: Columns that give :class:`SessionFacts` (in order), for flips of the surveyed flag.
SESSION_FACT_COLUMNS = ("started_us", *COUNTED)
#: Columns that give :class:`Joined` (after the id), for surveys that find their session.
JOINED_COLUMNS = ("channel", "content_type", *(m.fine_column for m in METRICS),
                  *(m.pos_column for m in METRICS))
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
    return SessionFacts(r[0], (*r[1:-1], bool(r[-1])))


def joined_row(r: Sequence[Any]) -> Joined:
    """:class:`Joined` from a row of :data:`JOINED_COLUMNS`."""
    k = len(METRICS)
    return Joined(r[0], r[1], tuple(r[2:2 + k]), tuple(r[2 + k:2 + 2 * k]))


def survey_facts_row(r: Sequence[Any]) -> SurveyFacts:
    """:class:`SurveyFacts` from a row of :data:`SURVEY_FACT_COLUMNS`."""
    return SurveyFacts(r[0], r[1], r[2], r[3], r[4], r[5], r[6])


def session_groups_sql(where: str) -> str:
    """Sessions counted by each metric's bucket, failed and surveyed (rows for
    :func:`session_group_row`); ``where`` from :func:`where_sessions`."""
    cols = (*(m.bucket_column for m in METRICS), "failed", "surveyed")
    group = ", ".join(str(i + 1) for i in range(len(cols)))
    return f"SELECT {', '.join(cols)}, count(*) FROM sessions {where} GROUP BY {group}"


def session_group_row(r: Sequence[Any]) -> SessionGroup:
    """:class:`SessionGroup` from a row of :func:`session_groups_sql`."""
    k = len(METRICS)
    return SessionGroup(tuple(r[:k]), bool(r[k]), bool(r[k + 1]), int(r[k + 2]))


def survey_facts_sql(where: str) -> str:
    """Surveys with their session's metric values (rows for :func:`survey_fact_row`);
    ``where`` from :func:`where_surveys`."""
    values = ", ".join(f"s.{m.name}" for m in METRICS)
    return (f"SELECT v.outcome, v.score, v.reason, s.id IS NOT NULL, {values} FROM surveys v "
            f"LEFT JOIN sessions s ON s.id = v.session_id {where}")


def survey_fact_row(r: Sequence[Any]) -> SurveyFact:
    """:class:`SurveyFact` from a row of :func:`survey_facts_sql`."""
    return SurveyFact(r[0], r[1], r[2], bool(r[3]), tuple(r[4:]))
