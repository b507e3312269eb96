"""SQL shared by the backends: column lists, row values and filter clauses."""

from __future__ import annotations

from typing import Any

from ..model import Filters, SessionRow, SurveyRow

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
