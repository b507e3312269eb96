"""The collector's report computed from raw rows, for tests and benches: the session groups
and survey facts are read straight from the records and binned exactly as ingest bins
them, so the answer must equal the report the store's aggregates give; and the other
figures the tests compare the collector's faster reads with, computed the slow, plain way
(every survey joined to its session)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from collector.dashboard.quality import MetricRows, metric_rows
from collector.fine_bins import fine_bin_pos
from collector.metrics import METRICS, NAMES
from collector.model import Filters, SessionGroup, SurveyFact
from collector.report import compute_report_data
from collector.storage import Storage
from collector.storage.aggregates import SURVEY_VEC, session_counts
from collector.storage.report_sql import ReportData
from collector.storage.sql import (
    session_group_row,
    session_groups_sql,
    where_sessions,
    where_surveys,
)

__all__ = ["compute_report", "impact_rows", "response_counts", "session_groups"]


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


async def response_counts(store: Storage, filters: Filters) -> dict[str, list[tuple[int, int]]]:
    """Per metric, per bucket: (surveys shown, surveys answered) among the matching surveys
    whose session is known and has that metric, each survey joined to its session (the
    reference for the dashboard's response rate by bucket)."""
    fetch, style = store.sql_reader()
    where, params = where_surveys(filters, style)
    cols = ", ".join(f"s.{m.bucket_column}" for m in METRICS)
    rows = await fetch(
        f"SELECT {cols}, CASE WHEN v.outcome = 'answered' THEN 1 ELSE 0 END, count(*) "
        f"FROM surveys v JOIN sessions s ON s.id = v.session_id {where} "
        f"GROUP BY {', '.join(str(i + 1) for i in range(len(METRICS) + 1))}", params,
    )
    out = {m.name: [[0, 0] for _ in m.buckets] for m in METRICS}
    for r in rows:
        answered, n = int(r[len(METRICS)]), int(r[len(METRICS) + 1])
        for i, m in enumerate(NAMES):
            if r[i] is not None:
                out[m][r[i]][0] += n
                out[m][r[i]][1] += n * answered
    return {m: [(shown, answered) for shown, answered in out[m]] for m in NAMES}


def impact_rows(facts: Sequence[SurveyFact]) -> dict[str, MetricRows]:
    """The what-if metrics over contract §6's rows: answered surveys whose session is
    known, less sessions that showed a frame but have no bitrate."""
    rows = [f for f in facts if f.outcome == "answered" and f.score is not None and f.has_session
            and (f.value("startup_ms") is None or f.value("avg_bitrate_kbps") is not None)]
    return metric_rows([f.value("rebuffer_ratio") or 0.0 for f in rows],
                       [f.value("startup_ms") for f in rows],
                       [f.value("avg_bitrate_kbps") for f in rows])
