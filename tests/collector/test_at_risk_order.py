"""The at-risk ranking's order is the same on every run: risks are rounded to
``RISK_DECIMALS`` places, in the answer and the order alike, so that two boxes whose
means differ only by the order their sessions' probabilities were added in tie and go by
``box_id`` (contract §7: by risk, then box_id).

Two boxes hold the same three sessions, stored in opposite orders; the probabilities are
chosen so that adding them left to right in the two orders gives two different doubles
(as PostgreSQL's plain sum does in its scan order, which its parallel plans vary). The box
whose unrounded mean is the larger gets the larger box id, so an unrounded ranking puts it
first, against the contract's tie-break.
"""

from __future__ import annotations

import math
import random

from collector.fine_bins import metric_columns
from collector.model import Filters
from collector.storage import Storage
from collector.storage.at_risk import RISK_DECIMALS, Ranking, read_ranked_boxes

from .test_scale import T0, session_row

#: Intercept and the slope per percentage point of time stalled; the other terms are 0
#: (left out of the query) and their training means unused.
C0, C_RB = -2.0, 0.7


def probability(rb: float) -> float:
    """A session's probability as the query computes it (same operations, same order)."""
    eta = C0 + (100.0 * C_RB) * rb
    return 1.0 / (1.0 + math.exp(-eta))


def mean_in_order(ps: list[float]) -> float:
    total = 0.0
    for p in ps:
        total += p
    return total / len(ps)


def order_sensitive_triple(rng: random.Random) -> list[float]:
    """Three rebuffer ratios whose probabilities' left-to-right mean differs in the two
    orders (by a last bit or so)."""
    while True:
        rbs = [rng.uniform(0.0, 0.06) for _ in range(3)]
        ps = [probability(x) for x in rbs]
        if mean_in_order(ps) != mean_in_order(ps[::-1]):
            return rbs


async def test_equal_risks_tie_and_go_by_box_id(store: Storage) -> None:
    rng = random.Random(5)
    rbs = order_sensitive_triple(rng)
    ps = [probability(x) for x in rbs]
    forward, backward = mean_in_order(ps), mean_in_order(ps[::-1])
    assert forward != backward and abs(forward - backward) < 1e-15
    # The box whose sessions are stored in the order that sums larger gets the later id.
    boxes = {"stb-a": rbs[::-1], "stb-b": rbs} if forward > backward else {"stb-a": rbs, "stb-b": rbs[::-1]}
    t = T0
    for box, ratios in boxes.items():
        for rb in ratios:
            s = session_row(rng, started_us=t, box=box)
            s = s._replace(failed=False, region="NL-NH", model="X-200",
                           **metric_columns({"rebuffer_ratio": rb, "avg_bitrate_kbps": 5000.0,
                                             "startup_ms": 800, "video_height": 1080}))
            t += 60_000_000
            # One by one, in this order: the rows lie in the tables as the boxes list them.
            assert sum(await store.ingest([s])) == 1
    ranking: Ranking = (C0, C_RB, 0.0, 0.0, 0.0, 0.0, 0.8, 5.0)
    fetch, style = store.sql_reader()
    window = Filters(from_us=T0, to_us=t)
    for _ in range(3):
        ranked = await read_ranked_boxes(fetch, style, window, ranking, 10)
        assert [b for b, _ in ranked] == ["stb-a", "stb-b"]
        assert ranked[0][1] == ranked[1][1] == round(forward, RISK_DECIMALS)
