"""Fault options of a simulated fleet: outages, lossy lines, power cuts, clock skew."""

from __future__ import annotations

import random
from dataclasses import dataclass

from protocol.units import DAY_S, HOUR_S

from .transport import Outage


def parse_outage(text: str) -> Outage:
    """``START_H:DURATION_H`` (hours after the simulation start) as an :class:`Outage`."""
    try:
        start, duration = (float(part) for part in text.split(":"))
    except ValueError:
        raise ValueError(f"outage {text!r}: expected START_H:DURATION_H, e.g. 30:4") from None
    if start < 0 or duration <= 0:
        raise ValueError(f"outage {text!r}: start must be >= 0 and duration > 0")
    return Outage(start * float(HOUR_S), duration * float(HOUR_S))


@dataclass(frozen=True, slots=True)
class Faults:
    """What goes wrong in a fleet.

    ``loss``: on lossy lines (the ``lossy`` profile, and every box when ``loss_all``), the
    chance that a request or its answer is lost. ``power_cuts_per_day``: mean power cuts
    per durable (sqlite) box per day; each strikes in the middle of a buffer write.
    ``clock_skew_s``: each box's wall clock is off by up to this much, either way.
    """

    outages: tuple[Outage, ...] = ()
    loss: float = 0.0
    loss_all: bool = False
    power_cuts_per_day: float = 0.0
    clock_skew_s: float = 0.0
    #: How long a box stays dark after a power cut (virtual seconds).
    reboot_s: float = 120.0

    def skew_for(self, rng: random.Random) -> float:
        """One box's clock error, seconds."""
        return rng.uniform(-self.clock_skew_s, self.clock_skew_s) if self.clock_skew_s else 0.0

    def cut_times(self, rng: random.Random, horizon_s: float) -> list[float]:
        """Virtual times at which one box's power is cut (a Poisson process)."""
        out: list[float] = []
        if self.power_cuts_per_day <= 0:
            return out
        rate = self.power_cuts_per_day / DAY_S
        t = rng.expovariate(rate)
        while t < horizon_s:
            out.append(t)
            t += rng.expovariate(rate)
        return out
