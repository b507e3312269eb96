"""protocol.nps: the one definition of promoters, passives and detractors."""

from __future__ import annotations

import pytest

from protocol.nps import (
    DETRACTOR_MAX,
    PASSIVE_MIN,
    PROMOTER_MIN,
    SCORES,
    category,
    is_detractor,
    is_promoter,
    tally,
)

# Written out by hand from the NPS definition, not derived from the module's constants.
EXPECTED = ["detractor"] * 7 + ["passive"] * 2 + ["promoter"] * 2


@pytest.mark.parametrize("score", range(11))
def test_category_of_every_score(score: int) -> None:
    assert category(score) == EXPECTED[score]
    assert is_promoter(score) == (EXPECTED[score] == "promoter")
    assert is_detractor(score) == (EXPECTED[score] == "detractor")


def test_scores_are_zero_to_ten() -> None:
    assert list(SCORES) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]


def test_thresholds_are_the_edges() -> None:
    assert (PROMOTER_MIN, PASSIVE_MIN, DETRACTOR_MAX) == (9, 7, 6)


@pytest.mark.parametrize("score", [-1, 11, 100])
def test_category_refuses_a_score_out_of_range(score: int) -> None:
    with pytest.raises(ValueError, match=f"score: must be 0 to 10, got {score}"):
        category(score)


def test_tally_counts_each_category() -> None:
    histogram = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    # detractors 1+..+7 = 28, passives 8+9 = 17, promoters 10+11 = 21
    assert tally(histogram) == (21, 17, 28)
    assert tally([0] * 11) == (0, 0, 0)


def test_tally_refuses_a_histogram_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match="histogram: must have 11 counts, got 10"):
        tally([0] * 10)
