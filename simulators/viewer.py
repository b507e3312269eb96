"""A simulated viewer: when they watch, and what they answer.

The planted effect lives in :mod:`simulators.planted`: a viewer's score is drawn as a
promoter, passive or detractor with chances linear in the quality they lived through
(stalling, startup, bitrate, failure, no picture) and in their region's and household's
mood (:func:`latent_score`). :class:`ViewerPresenter` answers the agent's
real question through the real sink, as the on-screen UI does: ``confirmed()`` the moment
a score is chosen, then ``finished()`` once the reason pick-list closes.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, replace
from typing import Final

from protocol import SurveyRecord
from protocol.nps import DETRACTOR_MAX, is_detractor
from protocol.units import DAY_S, HOUR_S
from stb_widget.clock import Clock
from stb_widget.survey_port import SurveyRequest, SurveySink

from .planted import Planted, regressors
from .player import Habits, Lived

#: Relative chance that a sitting starts in each local hour (0 to 23): a morning bump and
#: the evening prime time.
HOUR_WEIGHTS: Final[tuple[float, ...]] = (
    0.6, 0.3, 0.15, 0.1, 0.1, 0.15, 0.5, 1.2, 1.3, 0.9, 0.8, 0.9,
    1.1, 1.0, 0.9, 1.0, 1.3, 2.0, 3.2, 4.5, 5.5, 5.0, 3.5, 1.6,
)
#: The same weights as running totals: ``choices(..., cum_weights=...)`` draws exactly what
#: ``choices(..., weights)`` would, without adding them up again for every sitting.
_HOUR_CUM: Final = list(itertools.accumulate(HOUR_WEIGHTS))
_HOURS: Final = range(24)
_CONTENT_TYPES: Final = ("live", "vod", "catchup")
_CONTENT_CUM: Final = list(itertools.accumulate((0.7, 0.15, 0.15)))
CHANNELS: Final = ("NPO1", "NPO2", "NPO3", "RTL4", "RTL5", "SBS6", "Veronica", "Ziggo Sport",
                   "Discovery", "NatGeo", "Nickelodeon", "CNN")


@dataclass(frozen=True, slots=True)
class Persona:
    """One household's traits, drawn once per box."""

    #: How much better (or worse) than the region's viewers this household rates, in NPS
    #: points (uniform within the planted ``mood_spread``).
    mood: float
    #: Sittings in front of the TV per day (mean).
    sittings_per_day: float
    habits: Habits
    #: Chance to dismiss the question (Back), and to leave it until it times out.
    dismiss: float
    ignore: float
    #: Chance to skip the reason pick-list once a score is confirmed.
    skip_reason: float

    @classmethod
    def draw(cls, rng: random.Random, mood_spread: float = 0.0) -> Persona:
        """A random household."""
        return cls(
            mood=rng.uniform(-mood_spread, mood_spread),
            sittings_per_day=max(0.3, rng.gammavariate(4.0, 0.6)),
            habits=Habits(
                patience_s=rng.uniform(5.0, 15.0),
                pauses_per_h=rng.uniform(0.0, 1.5),
                seeks_per_h=rng.uniform(0.0, 3.0),
            ),
            dismiss=rng.uniform(0.05, 0.3),
            ignore=rng.uniform(0.02, 0.15),
            skip_reason=rng.uniform(0.1, 0.5),
        )


@dataclass(frozen=True, slots=True)
class Watch:
    """One planned session: when (virtual seconds), how long, what, and how it ends."""

    start_s: float
    content_s: float
    channel: str
    content_type: str
    #: True when the viewer zaps on to the next session of the sitting (no ``stop``).
    zap_on: bool


def day_plan(rng: random.Random, persona: Persona, day_start_s: float,
             utc_offset_h: float) -> list[Watch]:
    """The sessions of one day, in order and never overlapping.

    ``day_start_s``: virtual seconds at 00:00 UTC of that day.
    """
    n = _poisson(rng, persona.sittings_per_day)
    starts = sorted(
        day_start_s + ((rng.choices(_HOURS, cum_weights=_HOUR_CUM)[0] - utc_offset_h) % 24) * HOUR_S
        + rng.uniform(0, HOUR_S)
        for _ in range(n)
    )
    out: list[Watch] = []
    free_at = day_start_s
    for start in starts:
        t = max(start, free_at)
        if t >= day_start_s + DAY_S:
            break
        sessions = 1 + _poisson(rng, 1.2)
        for i in range(sessions):
            if rng.random() < 0.35:
                content = rng.uniform(15.0, 400.0)  # zapping past a channel
            else:
                content = min(4 * float(HOUR_S), rng.lognormvariate(math.log(1800.0), 0.7))
            ctype = rng.choices(_CONTENT_TYPES, cum_weights=_CONTENT_CUM)[0]
            last = i == sessions - 1
            zap_on = not last and rng.random() < 0.6
            out.append(Watch(t, content, rng.choice(CHANNELS), ctype, zap_on))
            # Pauses, stalls and a question stretch a session: leave room before the next.
            t += content * 1.3 + 180.0 + (0.0 if zap_on else rng.uniform(30.0, 600.0))
        free_at = t
    return out


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method: the means here are small.
    limit = math.exp(-mean)
    k, p = 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def latent_score(rng: random.Random, promoter: float, detractor: float) -> int:
    """The 0 to 10 score a viewer holds: a promoter (9, 10) with chance ``promoter``, a
    detractor (0 to 6, mostly 5 and 6) with chance ``detractor``, else a passive (7, 8)."""
    u = rng.random()
    if u < promoter:
        return 10 if rng.random() < 0.45 else 9
    if u < promoter + detractor:
        return rng.choices(range(DETRACTOR_MAX + 1), _DETRACTOR_WEIGHTS)[0]
    return 8 if rng.random() < 0.55 else 7


_DETRACTOR_WEIGHTS: Final = (1.0, 0.5, 0.7, 1.0, 1.5, 3.0, 4.0)


def lived_regressors(lived: Lived) -> dict[str, float]:
    """Contract section 6's regressors of what the viewer lived through."""
    return regressors(rebuffer_ratio=lived.rebuffer_ratio, startup_ms=lived.startup_ms,
                      avg_kbps=lived.avg_kbps, failed=lived.failed)


def reason_for(rng: random.Random, lived: Lived, score: int) -> str:
    """A main reason that fits what happened (buffering after stalls, picture at low bitrate)."""
    weights = {
        "buffering": 0.3 + 60.0 * lived.rebuffer_ratio + (2.0 if lived.failed else 0.0)
        + (1.5 if lived.exited_before_start else 0.0),
        "picture": 0.3 + (2.0 if lived.avg_kbps is not None and lived.avg_kbps < 2500 else 0.0),
        "content": 0.6 if is_detractor(score) else 1.2,
        "price": 0.8 if is_detractor(score) else 0.3,
        "interface": 0.4,
        "support": 0.3 if is_detractor(score) else 0.1,
        "other": 0.3,
    }
    names = list(weights)
    return rng.choices(names, [weights[n] for n in names])[0]


@dataclass(frozen=True, slots=True)
class Shown:
    """One question as the viewer lived it: what they were shown it after, and what they did."""

    record: SurveyRecord
    lived: Lived
    #: The score the viewer held, answered or not (the planted model's draw).
    latent: int
    #: The session was inside the planted model's realistic range (nothing clipped).
    in_range: bool


class ViewerPresenter:
    """A ``SurveyPresenter`` played by the simulated viewer, on the box's (virtual) clock.

    Set :attr:`lived` to the session just ended before its end event is fed.
    """

    def __init__(self, clock: Clock, rng: random.Random, persona: Persona,
                 planted: Planted | None = None, region: str = "NL-UT") -> None:
        self._clock = clock
        self._rng = rng
        self._persona = persona
        self._planted = planted or Planted()
        self._region = region
        self.lived: Lived | None = None
        #: Every question shown, as the viewer lived it: the ground truth's answers.
        self.shown: list[Shown] = []

    async def present(self, request: SurveyRequest, sink: SurveySink) -> SurveyRecord:
        """Look at the question, then answer, dismiss or walk away, like a viewer would.

        The score the viewer holds is drawn first, whether they answer or not (the NPS of
        everyone shown); whether they answer depends on the stalling they just lived
        through (the planted non-response), never on that score.
        """
        rng, persona, lived = self._rng, self._persona, self.lived
        assert lived is not None, "ViewerPresenter.lived not set before the session ended"
        x = lived_regressors(lived)
        promoter, detractor, inside = self._planted.probabilities(x, self._region, persona.mood)
        latent = latent_score(rng, promoter, detractor)
        shown = self._clock.wall()
        base = SurveyRecord(id=request.survey_id, kind="survey", session_id=request.session_id,
                            shown_at=shown, outcome="timeout", locale=request.locale)
        answers = (1.0 - persona.ignore - persona.dismiss) * self._planted.answer_factor(
            x["rebuffer_pct"])
        # Those who do not answer walk away (timeout) or press Back in the persona's ratio.
        ignore = (1.0 - answers) * persona.ignore / (persona.ignore + persona.dismiss)
        pick = rng.random()
        if pick < ignore:
            await self._clock.sleep(request.timeout_s)
            final = base
        elif pick < 1.0 - answers:
            await self._clock.sleep(rng.uniform(1.0, 6.0))
            final = replace(base, outcome="dismissed")
        else:
            await self._clock.sleep(rng.uniform(2.0, min(request.timeout_s - 1.0, 20.0)))
            answered = replace(base, outcome="answered", score=latent,
                               answered_at=self._clock.wall())
            await sink.confirmed(answered)
            await self._clock.sleep(rng.uniform(1.0, 8.0))
            reason = None if rng.random() < persona.skip_reason else reason_for(rng, lived, latent)
            final = replace(answered, reason=reason)  # type: ignore[arg-type]
        await sink.finished(final)
        self.shown.append(Shown(final, lived, latent, inside))
        return final
