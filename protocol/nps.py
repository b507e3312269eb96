"""The NPS categories of a 0-10 score, defined once for the box and the collector.

Promoters score 9-10, passives 7-8, detractors 0-6. Code that needs the rule in another
form (an SQL condition, a numpy mask, a histogram) builds it from the thresholds here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

__all__ = [
    "DETRACTOR",
    "DETRACTOR_MAX",
    "PASSIVE",
    "PASSIVE_MIN",
    "PROMOTER",
    "PROMOTER_MIN",
    "SCORES",
    "SCORE_MAX",
    "SCORE_MIN",
    "Category",
    "category",
    "is_detractor",
    "is_promoter",
    "tally",
]

#: The lowest and highest score a viewer can give.
SCORE_MIN: Final = 0
SCORE_MAX: Final = 10
#: Every score, lowest first (a histogram's columns).
SCORES: Final = range(SCORE_MIN, SCORE_MAX + 1)
#: The lowest promoter score.
PROMOTER_MIN: Final = 9
#: The lowest passive score.
PASSIVE_MIN: Final = 7
#: The highest detractor score (one below the lowest passive).
DETRACTOR_MAX: Final = PASSIVE_MIN - 1

Category = Literal["promoter", "passive", "detractor"]
PROMOTER: Final[Category] = "promoter"
PASSIVE: Final[Category] = "passive"
DETRACTOR: Final[Category] = "detractor"


def category(score: int) -> Category:
    """The NPS category of ``score`` (0 to 10); ``ValueError`` for anything else."""
    if not SCORE_MIN <= score <= SCORE_MAX:
        raise ValueError(f"score: must be {SCORE_MIN} to {SCORE_MAX}, got {score}")
    if score >= PROMOTER_MIN:
        return PROMOTER
    return PASSIVE if score >= PASSIVE_MIN else DETRACTOR


def is_promoter(score: int) -> bool:
    """Whether ``score`` is a promoter's (9 or 10)."""
    return score >= PROMOTER_MIN


def is_detractor(score: int) -> bool:
    """Whether ``score`` is a detractor's (0 to 6)."""
    return score <= DETRACTOR_MAX


def tally(histogram: Sequence[int]) -> tuple[int, int, int]:
    """(promoters, passives, detractors) of a score histogram: ``histogram[s]`` answers
    scored ``s``, for s = 0 to 10."""
    if len(histogram) != len(SCORES):
        raise ValueError(f"histogram: must have {len(SCORES)} counts, got {len(histogram)}")
    promoters = sum(histogram[PROMOTER_MIN:])
    detractors = sum(histogram[:DETRACTOR_MAX + 1])
    return promoters, sum(histogram) - promoters - detractors, detractors
