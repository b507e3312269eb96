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
        ms = int(clock.wall().timestamp() * 1000) & 0xFFFF_FFFF_FFFF
        rand_a = rng.getrandbits(12)
        rand_b = rng.getrandbits(62)
        # The five groups straight from the fields (48-bit ms, version 7 and rand_a,
        # variant 0b10 and rand_b): one format instead of a 128-bit int and slices.
        return (f"{ms >> 16:08x}-{ms & 0xFFFF:04x}-{0x7000 | rand_a:04x}-"
                f"{0x8000 | rand_b >> 48:04x}-{rand_b & 0xFFFF_FFFF_FFFF:012x}")

    return new_id
