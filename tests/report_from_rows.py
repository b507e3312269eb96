"""The collector's report computed from raw rows, for tests and benches: the session groups
and survey facts are read straight from the records and binned exactly as ingest bins
them, so the answer must equal the report the store's aggregates give."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from collector.buckets import METRICS
from collector.model import Filters, SurveyFact
from collector.report import compute_report_data
from collector.storage import Storage
from collector.storage.aggregates import (
    _PMAX,
    _PMIN,
    _SURVEY_POS,
    BUCKET_COLUMN,
    SESSION_VEC,
    SURVEY_VEC,
    bucket_vec_name,
    fine_bin_pos,
)
from collector.storage.report_sql import ReportData
from collector.storage.sql import where_sessions

__all__ = ["SessionGroup", "compute_report", "session_groups"]


@dataclass(frozen=True, slots=True)
class SessionGroup:
    """A count of sessions sharing bucket indices, failure and surveyed flags."""

    rb_bucket: int | None
    br_bucket: int | None
    su_bucket: int | None
    failed: bool
    surveyed: bool
    count: int


async def session_groups(store: Storage, filters: Filters) -> list[SessionGroup]:
    """Counts of the matching sessions by bucket indices, failure and surveyed flags."""
    fetch, style = store.sql_reader()
    where, params = where_sessions(filters, style)
    cols = ", ".join(BUCKET_COLUMN[m] for m in METRICS)
    rows = await fetch(f"SELECT {cols}, failed, surveyed, count(*) FROM sessions {where} "
                       "GROUP BY 1, 2, 3, 4, 5", params)
    return [SessionGroup(r[0], r[1], r[2], bool(r[3]), bool(r[4]), r[5]) for r in rows]


def compute_report(groups: list[Any], facts: list[SurveyFact]) -> dict[str, Any]:
    """The report from session groups and survey facts."""
    data = ReportData()
    for g in groups:
        row = [0] * len(SESSION_VEC)
        row[0] = g.count
        row[1] = g.count if g.surveyed else 0
        row[2] = g.count if g.failed else 0
        for metric, idx in zip(METRICS, (g.rb_bucket, g.br_bucket, g.su_bucket), strict=True):
            if idx is not None:
                row[SESSION_VEC.index(bucket_vec_name(metric, idx))] = g.count
        data.add_sessions(row)
    for f in facts:
        vec = [0] * len(SURVEY_VEC)
        vec[_SURVEY_POS["shown"]] = 1
        if f.outcome in ("answered", "dismissed", "timeout"):
            vec[_SURVEY_POS[f.outcome]] = 1
        answered = f.outcome == "answered" and f.score is not None
        if answered:
            vec[_SURVEY_POS[f"h{f.score}"]] = 1
            if f"r_{f.reason}" in _SURVEY_POS:
                vec[_SURVEY_POS[f"r_{f.reason}"]] = 1
        data.add_surveys(vec)
        if not (answered and f.has_session):
            continue
        assert f.score is not None
        for metric in METRICS:
            fine, pos = fine_bin_pos(metric, getattr(f, metric))
            if fine is None:
                continue
            counts = [0] * (_PMAX + 1)
            counts[f.score] = 1
            counts[11 + f.score] = pos or 0
            counts[22] = (pos or 0) ** 2
            counts[_PMIN] = counts[_PMAX] = pos or 0
            data.add_bin(metric, fine, counts)
    return compute_report_data(data)
