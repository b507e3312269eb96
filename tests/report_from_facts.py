"""The report computed from raw session groups and survey facts, for tests and benches.

The facts are binned exactly as ingest bins them and fed through the collector's own
:func:`collector.report.compute_report_data`, so the answer is the stores' answer: tests
use it to check that the aggregates equal what the raw rows give (the aggregate path
against the row path), not to check the contract's rules (``tests/reference.py`` does that).
"""

from __future__ import annotations

from typing import Any

from collector.buckets import METRICS
from collector.model import SurveyFact
from collector.report import _PREFIX, compute_report_data
from collector.storage.aggregates import (
    SESSION_VEC,
    Deltas,
    Joined,
    ReportData,
    SurveyFacts,
    fine_bin,
    fine_pos,
)


def _fact_metric(f: SurveyFact, metric: str) -> float | None:
    value: float | None = getattr(f, metric)
    return value


def compute_report(groups: list[Any], facts: list[SurveyFact]) -> dict[str, Any]:
    """The report from session groups (``Storage.session_groups``) and survey facts."""
    data = ReportData()
    for g in groups:
        row = [0] * len(SESSION_VEC)
        row[0] = g.count
        row[1] = g.count if g.surveyed else 0
        row[2] = g.count if g.failed else 0
        for metric, idx in zip(METRICS, (g.rb_bucket, g.br_bucket, g.su_bucket), strict=True):
            if idx is not None:
                row[SESSION_VEC.index(f"{_PREFIX[metric]}{idx}")] = g.count
        data.add_sessions(row)
    deltas = Deltas()
    for f in facts:
        joined = None
        if f.has_session:
            fines = [fine_bin(m, _fact_metric(f, m)) for m in METRICS]
            joined = Joined(None, None, fines[0], fines[1], fines[2],
                            *(fine_pos(m, _fact_metric(f, m)) for m in METRICS))
        deltas.survey(SurveyFacts(0, None, None, None, f.outcome, f.score, f.reason), joined)
    for key, vec in deltas.surveys.items():
        if key[0] == 1:
            data.add_surveys(vec)
    for key, vec in deltas.bins.items():
        if key[0] == 1:
            data.add_bin(METRICS[key[-2]], key[-1], vec)
    return compute_report_data(data)
