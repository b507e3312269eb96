"""The contract's QoS buckets, declared once for ingest, the report and the dashboard."""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Bucket:
    """``lo < x <= hi`` (the first bucket of a metric also takes ``x == lo``); ``hi`` None is open."""

    lo: float
    hi: float | None


def _buckets(*edges: float | None) -> tuple[Bucket, ...]:
    out = []
    for lo, hi in itertools.pairwise(edges):
        assert lo is not None
        out.append(Bucket(lo, hi))
    return tuple(out)


METRICS: Final = ("rebuffer_ratio", "avg_bitrate_kbps", "startup_ms")

BUCKETS: Final[dict[str, tuple[Bucket, ...]]] = {
    # rebuffer_ratio's first bucket is exactly 0: [0, 0].
    "rebuffer_ratio": _buckets(0, 0, 0.005, 0.01, 0.02, 0.05, None),
    "avg_bitrate_kbps": _buckets(0, 1000, 2500, 5000, 8000, None),
    "startup_ms": _buckets(0, 1000, 2000, 5000, None),
}


#: The closed upper edges of each metric's buckets, for :func:`bucket_index`.
_HIS: Final[dict[str, tuple[float, ...]]] = {
    m: tuple(b.hi for b in bs if b.hi is not None) for m, bs in BUCKETS.items()
}
_LO: Final[dict[str, float]] = {m: bs[0].lo for m, bs in BUCKETS.items()}


def bucket_index(metric: str, value: float | None) -> int | None:
    """The index of the bucket ``value`` falls in, or None for a null metric."""
    if value is None or math.isnan(value):
        return None
    lo = _LO[metric]
    if value == lo:
        return 0
    if value < lo:
        return None  # below the first edge: metrics are never negative, so unreachable
    # The first bucket whose upper edge is >= value (edges ascend; the last is open).
    return bisect.bisect_left(_HIS[metric], value)
