"""SQL shared by the backends: column lists, row values and filter clauses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..metrics import METRICS, Metric
from ..model import Filters, SessionGroup, SessionRow, SurveyFact, SurveyRow

#: The ``sessions`` table's columns: a :class:`SessionRow`'s fields, then ``surveyed``.
SESSION_COLUMNS = (*SessionRow._fields, "surveyed")
#: The ``surveys`` table's columns: a :class:`SurveyRow`'s fields.
SURVEY_COLUMNS = SurveyRow._fields


def session_values(r: SessionRow, surveyed: bool = False) -> tuple[Any, ...]:
    """A session row's values in :data:`SESSION_COLUMNS` order (for either store)."""
    return (*r, surveyed)


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


def where_surveys(f: Filters, style: str, session: str = "s") -> tuple[str, list[Any]]:
    """WHERE clause over ``surveys v LEFT JOIN sessions s``: a survey reaches the channel
    and content-type filters through its session, so a survey whose session has not
    arrived is left out of such a query. ``session="v"``: over ``surveys v`` alone, through
    the session's values the survey row keeps (:mod:`.survey_session`), the same rows."""
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
            parts.append(f"{session}.{col} = {p.add(value)}")
    return ("WHERE " + " AND ".join(parts) if parts else ""), p.values


def bucket_sql(metric: Metric, value: str) -> str:
    """SQL (both dialects) giving the index of the contract bucket of ``metric`` that the
    expression ``value`` falls in, or NULL where it is null: what
    :func:`collector.metrics.bucket_index` computes, written from the metric table's edges
    (``lo < x <= hi``, the first bucket also taking ``x == lo``). The edges are written as
    Python writes them (the shortest text that reads back as the same double), so a
    double column is compared with the same double in SQLite and in PostgreSQL (where a
    decimal constant is compared with a double as a double)."""
    buckets = metric.buckets
    lo = buckets[0].lo
    arms = [f"WHEN {value} IS NULL THEN NULL", f"WHEN {value} < {lo!r} THEN NULL"]
    arms += [f"WHEN {value} <= {b.hi!r} THEN {i}" for i, b in enumerate(buckets) if b.hi is not None]
    # The last bucket is open above (checked by the metric table's edges ending in None).
    assert buckets[-1].hi is None
    return f"(CASE {' '.join(arms)} ELSE {len(buckets) - 1} END)"


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
