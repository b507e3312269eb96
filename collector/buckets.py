"""The contract's QoS buckets, declared once for ingest, the report and the dashboard."""

from __future__ import annotations

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


def bucket_index(metric: str, value: float | None) -> int | None:
    """The index of the bucket ``value`` falls in, or None for a null metric."""
    if value is None or math.isnan(value):
        return None
    buckets = BUCKETS[metric]
    for i, b in enumerate(buckets):
        if i == 0 and value == b.lo:
            return 0
        if value > b.lo and (b.hi is None or value <= b.hi):
            return i
    return None  # below the first edge: metrics are never negative, so unreachable
