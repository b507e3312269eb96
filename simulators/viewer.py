"""A simulated viewer: when they watch, and what they answer.

The planted effect lives in :func:`score_for`: a viewer's score is their own baseline
minus penalties for the quality they lived through (rebuffering above all, then failure,
low bitrate and slow startup), plus noise. :class:`ViewerPresenter` answers the agent's
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
from stb_widget.clock import Clock
from stb_widget.survey_port import SurveyRequest, SurveySink

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

    #: The score this viewer gives a flawless stream, before noise.
    baseline: float
    #: Sittings in front of the TV per day (mean).
    sittings_per_day: float
    habits: Habits
    #: Chance to dismiss the question (Back), and to leave it until it times out.
    dismiss: float
    ignore: float
    #: Chance to skip the reason pick-list once a score is confirmed.
    skip_reason: float

    @classmethod
    def draw(cls, rng: random.Random) -> Persona:
        """A random household."""
        return cls(
            baseline=min(10.0, max(3.0, rng.gauss(8.8, 1.0))),
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
        day_start_s + ((rng.choices(_HOURS, cum_weights=_HOUR_CUM)[0] - utc_offset_h) % 24) * 3600
        + rng.uniform(0, 3600)
        for _ in range(n)
    )
    out: list[Watch] = []
    free_at = day_start_s
    for start in starts:
        t = max(start, free_at)
        if t >= day_start_s + 86_400:
            break
        sessions = 1 + _poisson(rng, 1.2)
        for i in range(sessions):
            if rng.random() < 0.35:
                content = rng.uniform(15.0, 400.0)  # zapping past a channel
            else:
                content = min(4 * 3600.0, rng.lognormvariate(math.log(1800.0), 0.7))
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


def quality_penalty(lived: Lived) -> float:
    """Points taken off the viewer's baseline by what they lived through (the planted effect)."""
    ratio = lived.rebuffer_ratio
    # Rebuffering dominates: about 2 points at 1 %, 4 at 5 %, capped at 5.
    penalty = min(5.0, 1.6 * math.log1p(ratio * 250.0))
    if lived.failed:
        penalty += 2.5
    if lived.exited_before_start:
        penalty += 2.0
    if lived.avg_kbps is not None and lived.avg_kbps < 3000:
        penalty += 1.5 * (3000 - lived.avg_kbps) / 2200
    if lived.startup_ms is not None and lived.startup_ms > 2000:
        penalty += min(1.5, (lived.startup_ms - 2000) / 3000)
    return penalty


def score_for(rng: random.Random, persona: Persona, lived: Lived) -> int:
    """The viewer's 0 to 10 answer: baseline minus the quality penalty, plus noise."""
    raw = persona.baseline - quality_penalty(lived) + rng.gauss(0.0, 1.0)
    return max(0, min(10, round(raw)))


def reason_for(rng: random.Random, lived: Lived, score: int) -> str:
    """A main reason that fits what happened (buffering after stalls, picture at low bitrate)."""
    weights = {
        "buffering": 0.3 + 60.0 * lived.rebuffer_ratio + (2.0 if lived.failed else 0.0)
        + (1.5 if lived.exited_before_start else 0.0),
        "picture": 0.3 + (2.0 if lived.avg_kbps is not None and lived.avg_kbps < 2500 else 0.0),
        "content": 1.2 if score >= 7 else 0.6,
        "price": 0.3 if score >= 7 else 0.8,
        "interface": 0.4,
        "support": 0.1 if score >= 7 else 0.3,
        "other": 0.3,
    }
    names = list(weights)
    return rng.choices(names, [weights[n] for n in names])[0]


class ViewerPresenter:
    """A ``SurveyPresenter`` played by the simulated viewer, on the box's (virtual) clock.

    Set :attr:`lived` to the session just ended before its end event is fed.
    """

    def __init__(self, clock: Clock, rng: random.Random, persona: Persona) -> None:
        self._clock = clock
        self._rng = rng
        self._persona = persona
        self.lived: Lived | None = None
        #: (score or None, outcome, lived) of every question answered, for the ground truth.
        self.answers: list[tuple[SurveyRecord, Lived | None]] = []

    async def present(self, request: SurveyRequest, sink: SurveySink) -> SurveyRecord:
        """Look at the question, then answer, dismiss or walk away, like a viewer would."""
        rng, persona, lived = self._rng, self._persona, self.lived
        shown = self._clock.wall()
        base = SurveyRecord(id=request.survey_id, kind="survey", session_id=request.session_id,
                            shown_at=shown, outcome="timeout", locale=request.locale)
        pick = rng.random()
        if pick < persona.ignore:
            await self._clock.sleep(request.timeout_s)
            final = base
        elif pick < persona.ignore + persona.dismiss:
            await self._clock.sleep(rng.uniform(1.0, 6.0))
            final = replace(base, outcome="dismissed")
        else:
            await self._clock.sleep(rng.uniform(2.0, min(request.timeout_s - 1.0, 20.0)))
            assert lived is not None, "ViewerPresenter.lived not set before the session ended"
            score = score_for(rng, persona, lived)
            answered = replace(base, outcome="answered", score=score,
                               answered_at=self._clock.wall())
            await sink.confirmed(answered)
            await self._clock.sleep(rng.uniform(1.0, 8.0))
            reason = None if rng.random() < persona.skip_reason else reason_for(rng, lived, score)
            final = replace(answered, reason=reason)  # type: ignore[arg-type]
        await sink.finished(final)
        self.answers.append((final, lived))
        return final
