"""Fine bins of the QoS metrics, and a session's per-metric columns.

Each metric's values are also kept in *fine* bins, much narrower than the contract's
buckets, so that the report can compute Spearman's rho from counts (see
``collector.storage.aggregates``, table ``agg_bins``). A session stores, per metric of
:data:`~collector.metrics.METRICS`, four columns (:attr:`~collector.metrics.Metric.columns`):
the value, its contract bucket, its fine bin and its position inside the fine bin.

Those columns are computed for every session record on the event loop, so each metric's
function (:data:`COLUMNS_OF`) is specialised once, at import: its edges bound, one
bisection giving both the fine bin and (every bucket edge being a fine edge) the bucket.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from .metrics import BY_NAME, METRICS, Metric, bucket_index

#: Each fine bin is 5 % wide (geometric): about 800 bins in all, so the aggregates of a day
#: hold a few hundred bin rows whatever the number of records. Treating the values inside
#: a bin as tied would move Spearman's rho by up to a few hundredths where values crowd
#: into a few bins; the report therefore also ranks values inside a bin by their position
#: in it (see :func:`collector.report.bins_spearman`), which brings the error under 0.002
#: on skewed, tied and narrow data (the tests check the contract's 0.01 against scipy).
_RATIO: Final = 1.05
#: A session's value inside its fine bin is kept as a position from 0 to this.
POS_SCALE: Final = 1000


def _edges(start: float, stop: float, coarse: Iterable[float]) -> tuple[float, ...]:
    out = {0.0, *(float(c) for c in coarse)}
    x = start
    while x < stop:
        out.add(x)
        x *= _RATIO
    out.add(stop)
    return tuple(sorted(out))


#: Upper edges of the fine bins: bin ``i`` holds ``FINE_EDGES[i-1] < x <= FINE_EDGES[i]``,
#: bin 0 holds exactly 0, and bin ``len(edges)`` everything above the last edge. Every edge
#: of the contract's buckets is an edge here, so each fine bin lies in one bucket.
FINE_EDGES: Final[dict[str, tuple[float, ...]]] = {
    m.name: _edges(*m.fine_range, (b.hi for b in m.buckets if b.hi is not None))
    for m in METRICS
}


def fine_bin(metric: str, value: float | None) -> int | None:
    """The fine bin of a metric's value (None for a null metric)."""
    if value is None or math.isnan(value):
        return None
    return bisect.bisect_left(FINE_EDGES[metric], value)


def fine_bin_pos(metric: str, value: float | None) -> tuple[int | None, int | None]:
    """The fine bin of ``value`` and where it lies inside it, 0 (lower edge) to 1000
    (upper edge); the position is 0 in the bin of exact zeros and in the open bin above
    the last edge. (None, None) for a null metric."""
    if value is None or math.isnan(value):
        return None, None
    edges = FINE_EDGES[metric]
    fine = bisect.bisect_left(edges, value)
    if fine == 0 or fine >= len(edges):
        return fine, 0
    lo, hi = edges[fine - 1], edges[fine]
    return fine, min(POS_SCALE, max(0, round((value - lo) / (hi - lo) * POS_SCALE)))


def fine_pos(metric: str, value: float | None) -> int | None:
    """Where ``value`` lies inside its fine bin (see :func:`fine_bin_pos`)."""
    return fine_bin_pos(metric, value)[1]


def coarse_of_fine(metric: str, fine: int) -> int:
    """The contract bucket that fine bin ``fine`` lies in."""
    edges = FINE_EDGES[metric]
    if fine >= len(edges):
        return len(BY_NAME[metric].buckets) - 1
    idx = bucket_index(metric, edges[fine])
    assert idx is not None
    return idx


#: A metric's four session columns from its value: (value, bucket, fine bin, position).
Columns = tuple[Any, int | None, int | None, int | None]


def _columns_fn(m: Metric) -> Callable[[Any], Columns]:
    """:func:`bucket_index` and :func:`fine_bin_pos` of one metric in one function, its
    tables bound: one bisection, the bucket read from the fine bin."""
    edges = FINE_EDGES[m.name]
    last = len(edges)
    lo = m.buckets[0].lo
    # The bucket of each fine bin, the open bin above the last edge included.
    bucket_of = tuple(coarse_of_fine(m.name, f) for f in range(last + 1))
    # Each inner bin's lower edge and width, so a position is one subtraction and division.
    lows = (0.0, *edges[:-1])
    widths = (1.0, *(hi - e for e, hi in itertools.pairwise(edges)))
    find = bisect.bisect_left
    isnan = math.isnan

    def columns(value: Any) -> Columns:
        if value is None or isnan(value):
            return value, None, None, None
        fine = find(edges, value)
        # Below the first bucket's lower edge is no bucket (unreachable: metrics are never
        # negative), as bucket_index says.
        bucket = bucket_of[fine] if value >= lo else None
        if fine == 0 or fine >= last:
            return value, bucket, fine, 0
        pos = round((value - lows[fine]) / widths[fine] * POS_SCALE)
        return value, bucket, fine, POS_SCALE if pos > POS_SCALE else 0 if pos < 0 else pos

    return columns


#: Per metric name, its four session columns from its value (see :data:`Columns`).
COLUMNS_OF: Final[dict[str, Callable[[Any], Columns]]] = {m.name: _columns_fn(m) for m in METRICS}


def metric_columns(values: Mapping[str, float | None]) -> dict[str, Any]:
    """A session's per-metric columns by column name (see
    :attr:`collector.metrics.Metric.columns`) from its values by metric name (a metric
    not given is null)."""
    out: dict[str, Any] = {}
    for m in METRICS:
        out.update(zip(m.columns, COLUMNS_OF[m.name](values.get(m.name)), strict=True))
    return out
