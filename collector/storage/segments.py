"""Queries for the dashboard, in SQL both backends accept: the known values of each
segment column (for the filter suggestions) and surveys shown and answered by the QoS
bucket of their session (for the response rate by bucket).

The segment values are read from the report's aggregate rows (``agg_sessions``,
``agg_surveys``, level 0), which hold one row per day and segment: far fewer rows than
records. The response counts are grouped in the database, so a long period costs a scan
but never a row per survey in Python.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..metrics import METRICS, NAMES
from ..model import Filters
from .aggregate_sql import ANSWERED
from .aggregates import DELTA
from .sql import bucket_sql, where_surveys

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
        # The deltas too: segments first seen in write groups not yet folded.
        union = " UNION ".join(
            f"SELECT {column} AS v FROM {table} WHERE lvl = 0 AND {count} > 0 AND {column} <> '' "
            f"UNION SELECT {column} FROM {DELTA[table]} WHERE {count} > 0 AND {column} <> ''"
            for table, count in sources
        )
        rows = await fetch(f"SELECT DISTINCT v FROM ({union}) u ORDER BY v LIMIT {int(limit)}", ())
        out[column] = [str(r[0]) for r in rows]
    return out


async def read_unanswered_counts(fetch: Fetch, filters: Filters, style: str) -> dict[str, list[int]]:
    """Per metric, per bucket: the matching surveys *not* answered with a score (dismissed,
    timed out) whose session is known and has that metric. With the report's answered
    counts by bucket (its ``by_qos`` ``n``, read from the aggregates) they make
    the surveys shown and answered by bucket (``tests/report_from_rows.py`` counts them by joining every survey, as a reference).

    Read from the survey rows alone, no join: each keeps its session's values
    (:mod:`.survey_session`, schema 4 and 6), null while the session is not known, and the
    bucket of each value is computed here from the metric table (:func:`.sql.bucket_sql`),
    as the session's own bucket column was at ingest. The channel and content-type
    filters apply to the values kept too."""
    where, params = where_surveys(filters, style, session="v")
    cond = f"NOT ({ANSWERED.format(v='v')})"
    where = f"{where} AND {cond}" if where else f"WHERE {cond}"
    cols = ", ".join(bucket_sql(m, f"v.{m.name}") for m in METRICS)
    rows = await fetch(
        f"SELECT {cols}, count(*) FROM surveys v {where} "
        f"GROUP BY {', '.join(str(i + 1) for i in range(len(METRICS)))}", params,
    )
    out = {m.name: [0] * len(m.buckets) for m in METRICS}
    for r in rows:
        n = int(r[len(METRICS)])
        for i, m in enumerate(NAMES):
            if r[i] is not None:
                out[m][r[i]] += n
    return out
