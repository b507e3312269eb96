"""The response rate by bucket's read of the surveys not answered (schema 6: from the
survey rows alone, each bucket a CASE written from the metric table), on both backends:
equal to a count over the rows sent with tests/reference.py's buckets, including values on
the buckets' edges and just past them, under every filter of the report's tests."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

from collector.dashboard.analysis import qos_responses, unanswered_counts
from collector.fine_bins import metric_columns
from collector.metrics import METRICS, NAMES
from collector.model import Filters, Row, SessionRow, SurveyRow
from collector.report import compute_report_data
from collector.storage import Storage
from collector.storage.sql import bucket_sql
from tests import reference as contract
from tests.collector.test_scale import (
    FILTERS,
    T0,
    dataset,
    ingest_shuffled,
    session_row,
    survey_row,
)
from tests.report_from_rows import response_counts

#: Values on each metric's bucket edges, and the doubles just below and above them.
EDGE_VALUES: dict[str, list[float]] = {
    m.name: sorted({v for e in m.edges if e is not None
                    for v in (float(e), math.nextafter(e, -math.inf), math.nextafter(e, math.inf))
                    if v >= 0 and (not m.integer or v == int(v))})
    for m in METRICS
}


def edge_rows(seed: int) -> list[Row]:
    """Sessions whose every metric lies on or next to a bucket edge, each with a survey not
    answered (and one in three answered), over the test data set's days."""
    rng = random.Random(seed)
    rows: list[Row] = []
    n = max(len(v) for v in EDGE_VALUES.values())
    for i in range(3 * n):
        values: dict[str, Any] = {m: EDGE_VALUES[m][(i + j) % len(EDGE_VALUES[m])]
                                  for j, m in enumerate(NAMES)}
        for m in BY_INT:
            values[m] = int(values[m])
        s = session_row(rng, started_us=T0 + rng.randrange(5 * 86_400_000_000))
        s = s._replace(**metric_columns(values))
        v = survey_row(rng, s, shown_us=s.ended_us + 1)
        rows += [s, v._replace(outcome="dismissed", score=None, answered_us=None, reason=None)
                 if i % 3 else v]
    return rows


BY_INT = [m.name for m in METRICS if m.integer]


def expected_unanswered(rows: list[Row], f: Filters) -> dict[str, list[int]]:
    """Per metric and bucket, the surveys of ``f`` not answered whose session was sent and
    has the metric, counted from the rows sent (the first copy of each id, as stored)."""
    sessions: dict[str, SessionRow] = {}
    surveys: dict[str, SurveyRow] = {}
    for r in rows:
        if isinstance(r, SessionRow):
            sessions.setdefault(r.id, r)
        else:
            surveys.setdefault(r.id, r)
    out = {m: [0] * len(contract.BUCKET_EDGES[m]) for m in NAMES}
    for v in surveys.values():
        s = sessions.get(v.session_id) if v.session_id else None
        if v.outcome == "answered" and v.score is not None:
            continue
        if (f.from_us is not None and v.shown_us < f.from_us) or (f.to_us is not None and v.shown_us >= f.to_us):
            continue
        if any(getattr(f, k) is not None and getattr(f, k) != getattr(v, k) for k in ("region", "model", "firmware")):
            continue
        if any(getattr(f, k) is not None and (s is None or getattr(f, k) != getattr(s, k))
               for k in ("channel", "content_type")):
            continue
        if s is None:
            continue
        for m in NAMES:
            i = contract.bucket_of(m, getattr(s, m))
            if i is not None:
                out[m][i] += 1
    return out


async def test_bucket_sql_is_the_metric_tables_buckets(store: Storage) -> None:
    """Each metric's CASE gives :func:`tests.reference.bucket_of`'s bucket for values on,
    below and above every edge, and NULL for a null value, in the database's own types."""
    fetch: Callable[..., Any] = store._fetch  # type: ignore[attr-defined]
    for m in METRICS:
        values = [*EDGE_VALUES[m.name], 0.3, 123.0, 1e9]
        values = [int(x) if m.integer else x for x in values if not m.integer or x == int(x)]
        cast = "INTEGER" if m.integer else ("REAL" if store.sql_reader()[1] == "?" else "double precision")
        for x in [*values, None]:
            param = "?" if store.sql_reader()[1] == "?" else "$1"
            rows = await fetch(f"SELECT {bucket_sql(m, 't.x')} FROM (SELECT CAST({param} AS {cast}) AS x) t",
                               [x])
            assert rows[0][0] == contract.bucket_of(m.name, x), (m.name, x)


async def test_unanswered_read_from_survey_rows_equals_the_rows_sent(store: Storage) -> None:
    rows = dataset(61, 700) + edge_rows(62)
    # The data set must hold what the read tells apart, or the test proves little.
    assert sum(isinstance(r, SurveyRow) and r.outcome != "answered" for r in rows) > 100
    await ingest_shuffled(store, rows, 63)
    for f in FILTERS:
        got = await unanswered_counts(store, f)
        assert got == expected_unanswered(rows, f), f
        # With the report's answered counts: shown and answered by bucket as the join of
        # every survey to its session counts them.
        report = compute_report_data(await store.report_data(f))
        assert qos_responses(report, got) == await response_counts(store, f), f
    total = await unanswered_counts(store, Filters())
    assert all(sum(total[m]) > 0 for m in NAMES)
