"""The buffer's rules, once for both buffers: what to evict, and the cooldown marks.

Pure functions over :class:`Row`, the part of a stored record the rules read. The sqlite
buffer and the in-memory buffer both call them, so their behaviour cannot drift apart.

Eviction (contract of issue 3): records older than ``max_age_days`` go first; then, while
the buffer is over ``max_records`` or ``max_bytes``, the oldest sessions, and answers only
once no session is left.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from protocol.units import DAY_US

from .config import BufferSection


@dataclass(frozen=True, slots=True)
class Row:
    """One stored record as the rules see it (its JSON body is not needed)."""

    #: Insertion order: larger is newer.
    seq: int
    id: str
    kind: str
    #: May be uploaded (an answer confirmed but not yet finished is not).
    ready: bool
    created_us: int
    #: When it became uploadable (wall, µs); None while not ready.
    ready_us: int | None
    #: Its JSON size in bytes.
    size: int


@dataclass(frozen=True, slots=True)
class Evictions:
    """The rows to drop, by cause."""

    aged: tuple[Row, ...] = ()
    full: tuple[Row, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.aged or self.full)

    @property
    def rows(self) -> tuple[Row, ...]:
        """Every row to drop."""
        return self.aged + self.full

    def counts(self) -> Counter[str]:
        """Counts keyed ``age_<kind>`` and ``full_<kind>``, as the buffers report them."""
        out: Counter[str] = Counter()
        for r in self.aged:
            out[f"age_{r.kind}"] += 1
        for r in self.full:
            out[f"full_{r.kind}"] += 1
        return out


def age_cutoff_us(now_us: int, limits: BufferSection) -> int:
    """Rows created before this are too old to keep."""
    return now_us - int(limits.max_age_days * DAY_US)


def may_need_eviction(count: int, nbytes: int, oldest_created_us: int | None,
                      now_us: int, limits: BufferSection) -> bool:
    """Whether :func:`choose_evictions` can find anything, from totals alone.

    ``oldest_created_us`` may be a lower bound (a buffer that does not raise it on deletes
    only calls :func:`choose_evictions` more often, never less).
    """
    if count > limits.max_records or nbytes > limits.max_bytes:
        return True
    return oldest_created_us is not None and oldest_created_us < age_cutoff_us(now_us, limits)


def choose_evictions(rows: Iterable[Row], now_us: int, limits: BufferSection) -> Evictions:
    """The rows to drop so that what is left is within ``limits`` at ``now_us``."""
    cutoff = age_cutoff_us(now_us, limits)
    aged: list[Row] = []
    kept: list[Row] = []
    for r in rows:
        (aged if r.created_us < cutoff else kept).append(r)
    over_n = len(kept) - limits.max_records
    over_b = sum(r.size for r in kept) - limits.max_bytes
    full: list[Row] = []
    if over_n > 0 or over_b > 0:
        # Sessions before answers; within each, the oldest (smallest seq) first.
        for r in sorted(kept, key=lambda r: (r.kind == "survey", r.seq)):
            if over_n <= 0 and over_b <= 0:
                break
            full.append(r)
            over_n -= 1
            over_b -= r.size
    return Evictions(tuple(aged), tuple(full))


@dataclass(frozen=True, slots=True)
class Cooldowns:
    """When the last answered, and the last dismissed or timed-out, question was shown."""

    answered_shown: datetime | None = None
    dismissed_shown: datetime | None = None


def cooldown_key(outcome: str) -> str:
    """The mark a survey with this outcome moves: answered, or anything else."""
    return "answered_shown_us" if outcome == "answered" else "dismissed_shown_us"


def after_survey(marks: Cooldowns, outcome: str, shown_at: datetime) -> Cooldowns:
    """The marks once a survey with ``outcome`` shown at ``shown_at`` is stored.

    A mark only moves forward: storing an older survey (its final form after a newer one,
    or a record replayed) never shortens a cooldown.
    """
    if cooldown_key(outcome) == "answered_shown_us":
        if marks.answered_shown is None or shown_at > marks.answered_shown:
            return Cooldowns(shown_at, marks.dismissed_shown)
        return marks
    if marks.dismissed_shown is None or shown_at > marks.dismissed_shown:
        return Cooldowns(marks.answered_shown, shown_at)
    return marks
