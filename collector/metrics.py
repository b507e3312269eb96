"""The report's QoS metrics, declared once.

Each :class:`Metric` names a contract metric and says where its value comes from, its
contract buckets, the range of its fine bins and the short prefix of its stored columns.
Everything else derives from :data:`METRICS`: the sessions' per-metric columns (the value,
``<prefix>_bucket``, ``<prefix>_fine``, ``<prefix>_pos``), the bucket counts of the session
aggregates (``<prefix>0`` ...), the report's ``by_qos`` and ``correlation`` blocks, the
export, the OpenAPI schemas and the dashboard's charts.

The order is append-only: ``agg_bins.metric`` stores a metric's index in :data:`METRICS`.
"""

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


@dataclass(frozen=True, slots=True)
class Metric:
    """One QoS metric of the report (contract section 4)."""

    #: The contract's name: the key in ``by_qos`` and ``correlation``, and the sessions'
    #: value column.
    name: str
    #: Unit of the value, as the dashboard shows it: ``ratio`` (shown as a percentage),
    #: ``ms``, ``kbps``, ``px``.
    unit: str
    #: Human title (the dashboard's chart headings).
    title: str
    #: The attribute of :class:`protocol.types.Qos` that gives the value (a field, or a
    #: derived property such as ``rebuffer_ratio``).
    source: str
    #: The contract's bucket edges, ascending; the last is None (open). A first bucket
    #: ``[x, x]`` is written as the edge twice.
    edges: tuple[float | None, ...]
    #: The fine bins' geometric range (first edge above 0, last edge), see
    #: ``collector.fine_bins.FINE_EDGES``.
    fine_range: tuple[float, float]
    #: Short prefix of the stored columns.
    prefix: str
    #: Whether the value is a whole number (its stored column is an integer, and a fine
    #: bin holding at most one integer holds one value exactly).
    integer: bool = False
    #: Whether a session may lack the value (null on the wire, or no frame shown).
    nullable: bool = True
    #: Why a session may lack the value (the dashboard's "unknown" row).
    unknown_why: str = "not sent by the box"

    @property
    def buckets(self) -> tuple[Bucket, ...]:
        """The contract's buckets."""
        out = []
        for lo, hi in itertools.pairwise(self.edges):
            assert lo is not None
            out.append(Bucket(lo, hi))
        return tuple(out)

    @property
    def bucket_column(self) -> str:
        """The sessions' column holding the bucket index."""
        return f"{self.prefix}_bucket"

    @property
    def fine_column(self) -> str:
        """The sessions' column holding the fine bin."""
        return f"{self.prefix}_fine"

    @property
    def pos_column(self) -> str:
        """The sessions' column holding the position inside the fine bin."""
        return f"{self.prefix}_pos"

    @property
    def columns(self) -> tuple[str, str, str, str]:
        """The sessions' columns of this metric: value, bucket, fine bin, position."""
        return self.name, self.bucket_column, self.fine_column, self.pos_column

    @property
    def count_columns(self) -> tuple[str, ...]:
        """The session aggregates' count columns, one per bucket."""
        return tuple(f"{self.prefix}{i}" for i in range(len(self.edges) - 1))


METRICS: Final[tuple[Metric, ...]] = (
    Metric("rebuffer_ratio", "ratio", "Rebuffer ratio", "rebuffer_ratio",
           # The first bucket is exactly 0: [0, 0].
           (0, 0, 0.005, 0.01, 0.02, 0.05, None), (1e-6, 1.0), "rb", nullable=False,
           unknown_why="not measured; every stored session has one"),
    Metric("avg_bitrate_kbps", "kbps", "Average bitrate", "avg_bitrate_kbps",
           (0, 1000, 2500, 5000, 8000, None), (1.0, 200_000.0), "br",
           unknown_why="no picture shown, or the box sent no bitrate"),
    Metric("startup_ms", "ms", "Startup time", "startup_ms",
           (0, 1000, 2000, 5000, None), (1.0, 600_000.0), "su", integer=True,
           unknown_why="no picture shown"),
    Metric("video_height", "px", "Video height", "video_height",
           (0, 576, 720, 1080, None), (1.0, 20_000.0), "vh", integer=True,
           unknown_why="the box's player does not tell"),
)

#: The metrics by name.
BY_NAME: Final[dict[str, Metric]] = {m.name: m for m in METRICS}
#: The metrics' names, in table order.
NAMES: Final[tuple[str, ...]] = tuple(m.name for m in METRICS)
#: The metric whose null value means no frame was shown (the start funnel, section 4).
START: Final = BY_NAME["startup_ms"]
#: A metric every stored session has (its buckets hold every session, and every survey
#: whose session is known).
ALWAYS: Final = next(m.name for m in METRICS if not m.nullable)

assert len(set(NAMES)) == len(NAMES) and len({m.prefix for m in METRICS}) == len(METRICS)

#: The closed upper edges of each metric's buckets, for :func:`bucket_index`.
_HIS: Final[dict[str, tuple[float, ...]]] = {
    m.name: tuple(b.hi for b in m.buckets if b.hi is not None) for m in METRICS
}
_LO: Final[dict[str, float]] = {m.name: m.buckets[0].lo for m in METRICS}


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
