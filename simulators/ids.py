"""Seeded record ids, so that the same seed gives the same fleet.

The agent draws whether to ask from a hash of the session id; with random ids the same
seed would ask different sessions. These are UUIDv7 (RFC 9562) like the agent's own,
stamped with the box's virtual time, their random bits drawn from the box's seeded
generator (a per-box generator: the agent's process-wide ms counter would make ids
depend on how boxes interleave).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from stb_widget.clock import Clock


def id_maker(rng: random.Random, clock: Clock) -> Callable[[], str]:
    """A ``new_id`` for one box's agent: UUIDv7 strings from ``rng`` and ``clock``."""

    def new_id() -> str:
        ms = int(clock.wall().timestamp() * 1000) & ((1 << 48) - 1)
        value = (ms << 80 | 0x7 << 76 | rng.getrandbits(12) << 64 | 0b10 << 62
                 | rng.getrandbits(62))
        h = f"{value:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    return new_id
