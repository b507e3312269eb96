"""The collector's report computed from raw rows, for tests and benches: the session groups
and survey facts are read straight from the records and binned exactly as ingest bins
them, so the answer must equal the report the store's aggregates give."""

from __future__ import annotations

from typing import Any

from collector.fine_bins import fine_bin_pos
from collector.metrics import NAMES
from collector.model import Filters, SessionGroup, SurveyFact
from collector.report import compute_report_data
from collector.storage import Storage
from collector.storage.aggregates import SURVEY_VEC, session_counts
from collector.storage.report_sql import ReportData
from collector.storage.sql import session_group_row, session_groups_sql, where_sessions

__all__ = ["compute_report", "session_groups"]


async def session_groups(store: Storage, filters: Filters) -> list[SessionGroup]:
    """Counts of the matching sessions by bucket indices, failure and surveyed flags."""
    fetch, style = store.sql_reader()
    where, params = where_sessions(filters, style)
    return [session_group_row(r) for r in await fetch(session_groups_sql(where), params)]


def compute_report(groups: list[SessionGroup], facts: list[SurveyFact]) -> dict[str, Any]:
    """The report from session groups and survey facts."""
    data = ReportData()
    for g in groups:
        data.add_session_counts(session_counts(g.buckets, g.failed, g.surveyed, g.count))
    for f in facts:
        counts = dict.fromkeys(SURVEY_VEC, 0)
        counts["shown"] = 1
        if f.outcome in ("answered", "dismissed", "timeout"):
            counts[f.outcome] = 1
        answered = f.outcome == "answered" and f.score is not None
        if answered:
            counts[f"h{f.score}"] = 1
            if f"r_{f.reason}" in counts:
                counts[f"r_{f.reason}"] = 1
        data.add_surveys([counts[c] for c in SURVEY_VEC])
        if not (answered and f.has_session):
            continue
        assert f.score is not None
        for name in NAMES:
            fine, pos = fine_bin_pos(name, f.value(name))
            if fine is not None:
                data.add_scores(name, fine, f.score, pos or 0, 1)
    return compute_report_data(data)
