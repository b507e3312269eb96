"""The known values of each segment column, for the dashboard's filter suggestions.

Read from the report's aggregate rows (``agg_sessions``, ``agg_surveys``, level 0), which
hold one row per day and segment: far fewer rows than records. SQL both backends accept.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

Fetch = Callable[[str, Sequence[Any]], Awaitable[list[Any]]]

#: Segment columns and the aggregate tables that carry them with a count column: surveys
#: carry the box's attributes too, sessions alone carry channel and content type.
_SOURCES = {
    "region": (("agg_sessions", "n"), ("agg_surveys", "shown")),
    "model": (("agg_sessions", "n"), ("agg_surveys", "shown")),
    "firmware": (("agg_sessions", "n"), ("agg_surveys", "shown")),
    "channel": (("agg_sessions", "n"),),
    "content_type": (("agg_sessions", "n"),),
}


async def read_segment_values(fetch: Fetch, limit: int) -> dict[str, list[str]]:
    """Up to ``limit`` values of each segment column, sorted; nulls (kept as ``''``) and
    segments whose every record was deleted are left out."""
    out: dict[str, list[str]] = {}
    for column, sources in _SOURCES.items():
        # ``column`` and the table names are the constants above, never input.
        union = " UNION ".join(
            f"SELECT {column} AS v FROM {table} WHERE lvl = 0 AND {count} > 0 AND {column} <> ''"
            for table, count in sources
        )
        rows = await fetch(f"SELECT DISTINCT v FROM ({union}) u ORDER BY v LIMIT {int(limit)}", ())
        out[column] = [str(r[0]) for r in rows]
    return out
