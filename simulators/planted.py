"""What the simulation plants for the analysis to find: the true cost of stream quality.

The viewer's answer is drawn as a category first: a promoter with probability ``p``, a
detractor with probability ``d``, a passive otherwise. Both are **linear** in the five
regressors of contract section 6 (``rebuffer_pct``, ``startup_s``, ``bitrate_mbps``,
``failed``, ``no_start``) plus an additive offset for the box's region and for the
household's mood::

    p = P0 + Σ_k bp_k·x_k + share_p·(region + mood)/100
    d = D0 + Σ_k bd_k·x_k − share_d·(region + mood)/100
    E[y] = 100·(p − d) = 100·(P0 − D0) + Σ_k slope_k·x_k + region + mood

so that ``slope_k = 100·(bp_k − bd_k)``, in NPS points per unit, is exactly what an
ordinary least-squares fit of ``y = 100·(promoter − detractor)`` on the regressors with
region fixed effects estimates (the household's mood is independent of its line, so it
is noise the box-clustered errors account for). Nothing is clipped: :meth:`Planted.check`
proves, at every corner of the realistic range (:data:`RANGE`), that ``p``, ``d`` and
``1 − p − d`` stay in [0, 1], and :meth:`Planted.probabilities` asserts it again for every
question shown, counting (not clipping) a session outside that range.

``no_start`` (no frame ever shown) is planted against a reference session with
:data:`NO_START_REFERENCE`'s startup and bitrate, which is what the contract's estimator
compares it with (the mean started session) up to how far the fleet's mean lies from it.

The confounder: regions differ in both their lines (their mix of network profiles) and
their viewers' mood (an NPS offset); fitting without the region (``unadjusted``) mixes
the two. Non-response: a viewer answers less after a stalled stream
(:meth:`Planted.answer_factor`, a function of the rebuffering only, so that contract
section 6's post-stratification by rebuffer bucket can correct for it).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

#: The regressors of contract section 6, in its order.
REGRESSORS: Final = ("rebuffer_pct", "startup_s", "bitrate_mbps", "failed", "no_start")

#: The realistic range of each regressor on a session that is asked the question (one
#: watched for at least ``survey.min_watch_s``): the simulated players stay inside it
#: (startup is bounded by the viewer's patience, at most ``player.MAX_PATIENCE_S``; the
#: worst lines stall about 17 % of a long session at the very most).
RANGE: Final[Mapping[str, tuple[float, float]]] = {
    "rebuffer_pct": (0.0, 20.0),
    "startup_s": (0.0, 20.0),
    "bitrate_mbps": (0.5, 8.5),  # the ladder (0.8 to 8), with room for rounding
    "failed": (0.0, 1.0),
}

#: The started session ``no_start`` is planted against (about the fleet's mean).
NO_START_REFERENCE: Final[Mapping[str, float]] = {"startup_s": 1.8, "bitrate_mbps": 4.5}

#: Default true slopes, NPS points per unit (see docs/simulators.md for why these sizes).
DEFAULT_SLOPES: Final[Mapping[str, float]] = {
    "rebuffer_pct": -3.0,   # per percentage point of watch time stalled
    "startup_s": -1.0,      # per second of startup
    "bitrate_mbps": 1.0,    # per Mbit/s of average bitrate
    "failed": -25.0,        # a session that ended on an error, against one that did not
    "no_start": -20.0,      # no frame ever shown, against the reference session
}

#: Regions: (mood in NPS points, weights of the network profiles fibre, dsl,
#: wifi_congested, lossy). The regions with the worse lines have the grumpier viewers,
#: so a fit that ignores the region overstates what stalling costs.
CONFOUNDED_REGIONS: Final[Mapping[str, tuple[float, tuple[float, float, float, float]]]] = {
    "NL-NH": (10.0, (0.85, 0.13, 0.02, 0.00)),
    "NL-ZH": (6.0, (0.60, 0.30, 0.08, 0.02)),
    "NL-UT": (2.0, (0.35, 0.40, 0.17, 0.08)),
    "NL-NB": (-4.0, (0.15, 0.40, 0.27, 0.18)),
    "NL-GE": (-10.0, (0.05, 0.25, 0.35, 0.35)),
    "BE-VLG": (-16.0, (0.00, 0.10, 0.35, 0.55)),
}


class PlantedRangeError(ValueError):
    """The planted model would need a probability outside [0, 1] in the realistic range."""


@dataclass(frozen=True, slots=True)
class Planted:
    """The planted truth: slopes, region moods and lines, household moods, non-response."""

    #: NPS points per unit of each regressor (:data:`REGRESSORS`).
    slopes: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_SLOPES))
    #: Promoter and detractor probabilities of a flawless session (all regressors 0)
    #: in a region of mood 0 for a household of mood 0.
    p0: float = 0.62
    d0: float = 0.18
    #: Share of an effect carried by the promoters (the rest by the detractors).
    share_p: float = 0.5
    #: Regions differ in lines and mood (else: every region the same lines, mood 0).
    confounder: bool = True
    #: Households' mood: uniform in [-mood_spread, mood_spread] NPS points.
    mood_spread: float = 2.0
    #: Viewers answer less after stalled streams (else: as often whatever they lived).
    non_response: bool = True
    #: With ``non_response``, the chance to answer is multiplied by
    #: ``1 / (1 + rebuffer_pct / non_response_pct)``: half as often at this stalling.
    non_response_pct: float = 2.0

    def region_mood(self, region: str) -> float:
        """The region's offset in NPS points (0 without the confounder)."""
        if not self.confounder:
            return 0.0
        return CONFOUNDED_REGIONS[region][0]

    def region_lines(self, region: str) -> tuple[float, float, float, float] | None:
        """The region's weights of the network profiles; None: the fleet-wide shares."""
        if not self.confounder:
            return None
        return CONFOUNDED_REGIONS[region][1]

    def _moods(self) -> tuple[float, float]:
        regions = [m for m, _ in CONFOUNDED_REGIONS.values()] if self.confounder else [0.0]
        return min(regions) - self.mood_spread, max(regions) + self.mood_spread

    def _pd(self, x: Mapping[str, float], offset: float) -> tuple[float, float]:
        share_p = self.share_p
        p = self.p0 + share_p * offset / 100.0
        d = self.d0 - (1.0 - share_p) * offset / 100.0
        if x.get("no_start"):
            # Planted against the reference started session.
            x = {**NO_START_REFERENCE, "no_start": 1.0}
        for name in REGRESSORS:
            v = x.get(name, 0.0)
            if v:
                slope = self.slopes[name] / 100.0
                p += share_p * slope * v
                d -= (1.0 - share_p) * slope * v
        return p, d

    def check(self) -> None:
        """Raise :class:`PlantedRangeError` unless ``p``, ``d`` and ``1 − p − d`` stay in
        [0, 1] at every corner of :data:`RANGE` (and for ``no_start``), with every mood.

        The probabilities are linear, so the corners bound them everywhere inside.
        """
        lo, hi = self._moods()
        names = list(RANGE)
        corners: list[dict[str, float]] = [
            dict(zip(names, c, strict=True)) for c in itertools.product(*(RANGE[n] for n in names))
        ]
        corners += [{"no_start": 1.0}]
        for x in corners:
            for offset in (lo, hi):
                p, d = self._pd(x, offset)
                if min(p, d, 1.0 - p - d) < 0.0:
                    raise PlantedRangeError(
                        f"planted effects {dict(self.slopes)} need promoter {p:.3f}, detractor "
                        f"{d:.3f} at {x} with a mood of {offset:+g} points: outside [0, 1]; "
                        "choose smaller effects")

    @staticmethod
    def in_range(x: Mapping[str, float]) -> bool:
        """Is this session inside the realistic range (where nothing is clipped)?"""
        return all(RANGE[n][0] <= x[n] <= RANGE[n][1] for n in RANGE if n in x)

    def probabilities(self, x: Mapping[str, float], region: str,
                      mood: float) -> tuple[float, float, bool]:
        """(promoter, detractor, inside the range) for a session lived as ``x``.

        Outside the realistic range (never seen in the fleets measured; counted in the
        summary) the regressors are brought to its edge, the only place anything is
        clipped; inside it the model is exactly linear.
        """
        inside = self.in_range(x)
        if not inside:
            x = {n: min(RANGE[n][1], max(RANGE[n][0], v)) if n in RANGE else v
                 for n, v in x.items()}
        p, d = self._pd(x, self.region_mood(region) + mood)
        if min(p, d, 1.0 - p - d) < -1e-12:  # check() rules it out; never clip silently
            raise PlantedRangeError(f"promoter {p}, detractor {d} at {x}, region {region}")
        return p, d, inside

    def answer_factor(self, rebuffer_pct: float) -> float:
        """How much less often a viewer answers after a stream stalled this much."""
        if not self.non_response:
            return 1.0
        return 1.0 / (1.0 + rebuffer_pct / self.non_response_pct)

    def with_slopes(self, **slopes: float) -> Planted:
        """A copy with some slopes changed (checked)."""
        out = replace(self, slopes={**self.slopes, **slopes})
        out.check()
        return out

    def describe(self) -> dict[str, Any]:
        """The planted truth as JSON (for ``box-sim fleet --json``)."""
        return {
            "slopes_nps_points": dict(self.slopes),
            "regressors": list(REGRESSORS),
            "promoter_flawless": self.p0,
            "detractor_flawless": self.d0,
            "no_start_reference": dict(NO_START_REFERENCE),
            "range": {k: list(v) for k, v in RANGE.items()},
            "confounder": self.confounder,
            "region_mood_nps_points": {r: self.region_mood(r) for r in CONFOUNDED_REGIONS},
            "region_lines": ({r: list(w) for r, (_, w) in CONFOUNDED_REGIONS.items()}
                             if self.confounder else None),
            "household_mood_spread_nps_points": self.mood_spread,
            "non_response": self.non_response,
            "non_response_half_at_rebuffer_pct": (self.non_response_pct
                                                  if self.non_response else None),
        }


def regressors(*, rebuffer_ratio: float, startup_ms: int | None, avg_kbps: float | None,
               failed: bool) -> dict[str, float]:
    """Contract section 6's regressors of one session (no_start where no frame was shown)."""
    if startup_ms is None:
        return {"rebuffer_pct": 100.0 * rebuffer_ratio, "failed": float(failed), "no_start": 1.0}
    return {
        "rebuffer_pct": 100.0 * rebuffer_ratio,
        "startup_s": startup_ms / 1000.0,
        "bitrate_mbps": (avg_kbps or 0.0) / 1000.0,
        "failed": float(failed),
        "no_start": 0.0,
    }
