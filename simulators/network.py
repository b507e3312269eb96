"""Network profiles: what a box's line does to the stream (startup, stalls, bitrate, failures).

Figures are plausible orders of magnitude for managed IPTV, not measurements: fibre starts
in well under a second and almost never stalls; DSL runs lower rungs and stalls now and
then; a congested Wi-Fi link stalls often and switches bitrate a lot. In the evening peak
(19:00 to 23:00 local) every profile stalls more and gets less throughput.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: The bitrate ladder of the simulated streams (kbps), lowest first.
LADDER: Final[tuple[float, ...]] = (800.0, 1800.0, 3000.0, 5400.0, 8000.0)
#: The picture height of each rung of :data:`LADDER`, in pixels (sent with the bitrate).
HEIGHTS: Final[tuple[int, ...]] = (432, 576, 720, 1080, 2160)


@dataclass(frozen=True, slots=True)
class NetworkProfile:
    """How one kind of line behaves."""

    name: str
    #: Median startup (play to first frame), ms; lognormal with ``startup_sigma``.
    startup_ms: float
    startup_sigma: float
    #: Median sustainable throughput, kbps (lognormal, drawn per session).
    throughput_kbps: float
    throughput_sigma: float
    #: Stalls per hour of playing (Poisson), off-peak.
    stalls_per_h: float
    #: Mean stall length, s (exponential).
    stall_s: float
    #: Bitrate switches per hour (Poisson) while playing.
    switches_per_h: float
    #: Chance that a session ends on a playback error.
    failure: float
    #: Multiplier on stalls and failures in the evening peak; throughput is divided by it.
    peak_factor: float
    #: Share of boxes with this line.
    weight: float


PROFILES: Final[dict[str, NetworkProfile]] = {
    p.name: p
    for p in (
        NetworkProfile("fibre", 700, 0.35, 40_000, 0.4, 0.05, 2.0, 0.3, 0.002, 1.5, 0.35),
        NetworkProfile("dsl", 1500, 0.45, 6_000, 0.5, 0.4, 3.5, 1.5, 0.008, 2.5, 0.35),
        NetworkProfile("wifi_congested", 2600, 0.6, 3_500, 0.7, 2.5, 5.0, 5.0, 0.02, 2.5, 0.2),
        NetworkProfile("lossy", 3500, 0.7, 2_500, 0.8, 6.0, 7.0, 6.0, 0.05, 2.0, 0.1),
    )
}

#: Local hours of the evening peak.
PEAK_HOURS: Final = range(19, 23)


def is_peak(local_hour: int) -> bool:
    """Is this local hour in the evening peak?"""
    return local_hour in PEAK_HOURS
