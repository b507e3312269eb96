"""The ground truth of a simulated fleet, computed independently of the collector *and of
the agent*.

It is taken from what the simulated players and viewers lived (:class:`LivedSession`,
:class:`~simulators.viewer.Shown`: stalls, startup, bitrate and failure as the player
made them, answers as the viewer gave them), never from the records the agent's tracker
made of it: an agent that measured quality wrong would otherwise agree with itself.
Over it, the figures the collector's ``/v1/report`` should show (NPS, NPS by quality
bucket with the contract's edges, Spearman's rank correlation of score against each
metric), and what ``/v1/impact`` should estimate: the planted slopes, and the NPS of
everyone shown (their held scores, answered or not). :func:`agent_vs_lived` compares the
agent's records with what was lived, field by field, within stated tolerances.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from protocol import SessionRecord
from protocol.nps import is_detractor, is_promoter

from .planted import Planted
from .player import Lived

if TYPE_CHECKING:
    from .viewer import Shown

#: Contract section 4's bucket edges: (lo, hi); hi None is open-ended.
REBUFFER_EDGES: Final = ((0.0, 0.0), (0.0, 0.005), (0.005, 0.01), (0.01, 0.02), (0.02, 0.05),
                         (0.05, None))
BITRATE_EDGES: Final = ((0.0, 1000.0), (1000.0, 2500.0), (2500.0, 5000.0), (5000.0, 8000.0),
                        (8000.0, None))
STARTUP_EDGES: Final = ((0.0, 1000.0), (1000.0, 2000.0), (2000.0, 5000.0), (5000.0, None))


def nps(scores: Sequence[int]) -> float | None:
    """100 × (promoters − detractors) / answers; None without answers."""
    if not scores:
        return None
    p = sum(1 for s in scores if is_promoter(s))
    d = sum(1 for s in scores if is_detractor(s))
    return 100.0 * (p - d) / len(scores)


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        avg = (i + j) / 2.0 + 1.0  # ties take the average rank
        for k in range(i, j + 1):
            ranks[order[k]] = avg
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho (Pearson over average ranks); None for n < 3 or a constant side."""
    n = len(x)
    if n < 3:
        return None
    rx, ry = _ranks(x), _ranks(y)
    mx, my = sum(rx) / n, sum(ry) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def _bucket(x: float, edges: Sequence[tuple[float, float | None]]) -> int:
    for i, (lo, hi) in enumerate(edges):
        if i == 0 and x == lo:
            return 0
        if x > lo and (hi is None or x <= hi):
            return i
    return 0


@dataclass(frozen=True, slots=True)
class LivedSession:
    """One session as the viewer lived it, with what the agent's record of it is found by."""

    box_id: str
    #: The box's wall clock at the ``play`` (the record's ``started_at``).
    started_at: datetime
    channel: str
    content_type: str
    lived: Lived


#: Tolerances of :func:`agent_vs_lived`: the record rounds to 1 ms and 1 ms of startup.
TOLERANCES: Final[Mapping[str, float]] = {
    "startup_ms": 1.0,        # ms: rounding of the same instant
    "rebuffer_s": 0.002,      # s: the record keeps 3 decimals
    "avg_bitrate_rel": 0.002,  # relative: the record keeps 3 decimals of kbps
}


def _lived_metric(lv: Lived, metric: str) -> float | None:
    if metric == "rebuffer_ratio":
        return lv.rebuffer_ratio
    if metric == "avg_bitrate_kbps":
        return lv.avg_kbps
    return None if lv.startup_ms is None else float(lv.startup_ms)


def ground_truth(lived: Iterable[LivedSession], shown: Iterable[Shown],
                 planted: Planted) -> dict[str, Any]:
    """The report's headline figures and the planted truth, over what was lived."""
    sessions = list(lived)
    asked = list(shown)
    answered_n = dismissed = timeout = outside = 0
    scores: list[int] = []
    pairs: list[tuple[int, Lived]] = []
    latent: list[int] = []
    for q in asked:
        latent.append(q.latent)
        outside += not q.in_range
        v = q.record
        if v.outcome == "answered" and v.score is not None:
            answered_n += 1
            scores.append(v.score)
            pairs.append((v.score, q.lived))
        elif v.outcome == "dismissed":
            dismissed += 1
        else:
            timeout += 1

    def by(metric: str, edges: Sequence[tuple[float, float | None]]) -> list[dict[str, Any]]:
        groups: list[list[int]] = [[] for _ in edges]
        for score, lv in pairs:
            value = _lived_metric(lv, metric)
            if value is not None:
                groups[_bucket(value, edges)].append(score)
        return [{"lo": lo, "hi": hi, "n": len(g), "nps": nps(g),
                 "mean_score": (sum(g) / len(g)) if g else None}
                for (lo, hi), g in zip(edges, groups, strict=True)]

    def corr(metric: str) -> dict[str, Any]:
        xs = [(v, float(score)) for score, lv in pairs
              if (v := _lived_metric(lv, metric)) is not None]
        return {"spearman": spearman([a for a, _ in xs], [b for _, b in xs]), "n": len(xs)}

    shown_n = len(asked)
    return {
        "source": "lived: the simulated players' quality and the viewers' answers as given",
        "sessions": len(sessions),
        "surveys": {"shown": shown_n, "answered": answered_n, "dismissed": dismissed,
                    "timeout": timeout,
                    "response_rate": answered_n / shown_n if shown_n else None},
        "nps": nps(scores),
        # The NPS of everyone shown the question: the scores they held, answered or not.
        "nps_shown": nps(latent),
        "true_slopes": dict(planted.slopes),
        "shown_outside_planted_range": outside,
        "planted": planted.describe(),
        "by_qos": {"rebuffer_ratio": by("rebuffer_ratio", REBUFFER_EDGES),
                   "avg_bitrate_kbps": by("avg_bitrate_kbps", BITRATE_EDGES),
                   "startup_ms": by("startup_ms", STARTUP_EDGES)},
        "correlation": {m: corr(m) for m in ("rebuffer_ratio", "avg_bitrate_kbps", "startup_ms")},
    }


def agent_vs_lived(lived: Iterable[LivedSession],
                   stored: Mapping[str, Mapping[str, SessionRecord]],
                   *, watch_slack_s: float = 1.0) -> dict[str, Any]:
    """Compare each session record an agent stored with what its viewer lived.

    Matched by box and ``started_at``. Within :data:`TOLERANCES`, and ``watch_s`` within
    ``watch_slack_s`` (a session zapped away from ends at the next ``play``, which the
    virtual clock places on its next whole tick), the record and the lived session must
    agree on startup, stalls (count and time), bitrate, failure and channel. Answers the
    counts and the first mismatches; ``agree`` is True when every session matched.
    """
    index: dict[tuple[str, datetime], SessionRecord] = {
        (box, r.started_at): r for box, records in stored.items() for r in records.values()}
    matched = 0
    missing = 0
    by_field: dict[str, int] = {}
    examples: list[dict[str, Any]] = []
    for ls in lived:
        rec = index.pop((ls.box_id, ls.started_at), None)
        if rec is None:
            missing += 1
            continue
        matched += 1
        bad = _differences(ls, rec, watch_slack_s)
        for name in bad:
            by_field[name] = by_field.get(name, 0) + 1
        if bad and len(examples) < 5:
            examples.append({"box_id": ls.box_id, "started_at": ls.started_at.isoformat(),
                             "fields": bad})
    mismatched = sum(by_field.values())
    return {
        "matched": matched,
        "lived_without_record": missing,
        "records_without_lived": len(index),
        "mismatched_fields": by_field,
        "examples": examples,
        "tolerances": {**TOLERANCES, "watch_s": watch_slack_s},
        "agree": mismatched == 0 and missing == 0 and not index,
    }


def _differences(ls: LivedSession, rec: SessionRecord,
                 watch_slack_s: float) -> dict[str, list[Any]]:
    lv, q = ls.lived, rec.qos
    bad: dict[str, list[Any]] = {}
    if (lv.startup_ms is None) != (q.startup_ms is None) or (
            lv.startup_ms is not None and q.startup_ms is not None
            and abs(lv.startup_ms - q.startup_ms) > TOLERANCES["startup_ms"]):
        bad["startup_ms"] = [lv.startup_ms, q.startup_ms]
    if not (-0.002 <= q.watch_s - lv.watch_s <= watch_slack_s + 0.002):
        bad["watch_s"] = [lv.watch_s, q.watch_s]
    if lv.rebuffer_count != q.rebuffer_count:
        bad["rebuffer_count"] = [lv.rebuffer_count, q.rebuffer_count]
    if abs(lv.rebuffer_s - q.rebuffer_s) > TOLERANCES["rebuffer_s"]:
        bad["rebuffer_s"] = [lv.rebuffer_s, q.rebuffer_s]
    if (lv.avg_kbps is None) != (q.avg_bitrate_kbps is None) or (
            lv.avg_kbps is not None and q.avg_bitrate_kbps is not None
            and abs(q.avg_bitrate_kbps - lv.avg_kbps) > TOLERANCES["avg_bitrate_rel"] * lv.avg_kbps):
        bad["avg_bitrate_kbps"] = [lv.avg_kbps, q.avg_bitrate_kbps]
    if lv.failed != q.failed:
        bad["failed"] = [lv.failed, q.failed]
    if lv.video_height != q.video_height:
        bad["video_height"] = [lv.video_height, q.video_height]
    if ls.channel != rec.channel or ls.content_type != rec.content_type:
        bad["channel"] = [ls.channel, rec.channel]
    return bad
