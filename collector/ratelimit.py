"""Per-box rate limiting: a token bucket per box id, in this process's memory.

Each box may make ``burst`` upload requests at once and ``rate_per_min`` a minute after
that; a request beyond that is answered 429 with ``Retry-After`` (the seconds until the
bucket holds a token again, rounded up). The buckets live in one collector instance's
memory: with N instances behind a load balancer a box may get up to N times the rate,
and a restart forgets them. That is enough for what the limit is for, keeping one broken
or hostile box from taking the write path from the others; it is not an accounting.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

#: Above this many tracked boxes, the buckets that are full again are forgotten (a full
#: bucket is the same as no bucket), so memory follows the boxes active right now.
PRUNE_ABOVE = 100_000


class BoxRateLimiter:
    """Token buckets keyed by box id."""

    def __init__(self, rate_per_min: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_min <= 0 or burst < 1:
            raise ValueError("rate_per_min must be > 0 and burst >= 1")
        self._rate = rate_per_min / 60.0  # tokens per second
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # box -> (tokens, at)
        self.limited = 0  # requests refused so far, for /metrics and tests

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, box_id: str) -> int:
        """Take one token for ``box_id``: 0 where the request may go on, else the seconds
        (at least 1) to put in ``Retry-After``."""
        now = self._clock()
        tokens, at = self._buckets.get(box_id, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        if tokens >= 1.0:
            self._buckets[box_id] = (tokens - 1.0, now)
            if len(self._buckets) > PRUNE_ABOVE:
                self._prune(now)
            return 0
        self._buckets[box_id] = (tokens, now)
        self.limited += 1
        return max(1, math.ceil((1.0 - tokens) / self._rate))

    def _prune(self, now: float) -> None:
        full = [box for box, (tokens, at) in self._buckets.items()
                if tokens + (now - at) * self._rate >= self._burst]
        for box in full:
            del self._buckets[box]
