"""Reads for ``GET /v1/at-risk`` (contract section 7), in SQL both backends accept.

Three queries, each bounded so that the answer stays fast at millions of sessions:

* :func:`read_training_rows`: the answered surveys the risk model learns from, joined to
  their sessions, newest first and at most ``max_rows`` of them (walked backwards along
  the surveys' ``shown_us`` index, so the cost does not grow with the history kept);
* :func:`read_ranked_boxes`: the risk model evaluated on each of the window's sessions
  and averaged per box *in the database* (never a row per session in Python), ranked
  there, and only the first ``limit`` boxes sent back;
* :func:`read_box_sums`: section 7's sums over the window for those boxes alone;
* :func:`read_last_answers`: the latest answered survey of each of those boxes.

``style`` is the backend's placeholder style: ``?`` (SQLite) or ``$`` (PostgreSQL).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..model import Filters
from .segments import Fetch
from .sql import placeholders
from .survey_session import KNOWN


@dataclass(frozen=True, slots=True)
class TrainingRow:
    """One answered survey and what its session measured."""

    score: int
    rebuffer_ratio: float
    startup_ms: int | None
    avg_bitrate_kbps: float | None
    failed: bool


@dataclass(frozen=True, slots=True)
class BoxSums:
    """The window's sessions of one box, added up (section 7's figures come from these)."""

    box_id: str
    sessions: int
    rebuffer_s: float
    watch_s: float
    #: Σ startup_ms and the count of sessions with a frame (startup_ms not null).
    startup_ms_sum: int
    framed: int
    #: Σ avg_bitrate_kbps · watch_s and Σ watch_s over the sessions with a bitrate.
    bitrate_watch_sum: float
    bitrate_watch_s: float
    failed: int


@dataclass(frozen=True, slots=True)
class LastAnswer:
    """A box's latest answered survey before the window's end."""

    score: int
    answered_us: int


#: The model's coefficients in this order: intercept, then rebuffer_pct, startup_s,
#: bitrate_mbps, failed, no_start; then the values put in for a session without a
#: startup time or bitrate.
Ranking = tuple[float, float, float, float, float, float, float, float]
#: Decimal places a box's risk is rounded to, in the answer and the ranking, so that the
#: order does not depend on the order the database adds its sessions' probabilities in
#: (see :func:`read_ranked_boxes`). The mean of n probabilities is off by at most about
#: n · 1.1e-16 whatever the order, far below the 5e-13 of a rounding to twelve places for
#: any box's sessions in a window (a risk rounded there can still land either side of a
#: rounding boundary when it lies within that error of one: rare, not impossible).
RISK_DECIMALS: Final = 12


def _f8(value: float, style: str) -> str:
    """A float as an SQL literal: written into the text rather than bound, so that SQLite
    does not convert a parameter on every row (PostgreSQL folds the cast once). ``repr``
    round-trips a double exactly, and the value is the model's, never input."""
    if not math.isfinite(value):
        raise ValueError(f"not a finite coefficient: {value!r}")
    return f"({value!r})" if style == "?" else f"CAST({value!r} AS DOUBLE PRECISION)"


async def read_training_rows(fetch: Fetch, style: str, *, shown_from_us: int, to_us: int,
                             max_rows: int) -> list[TrainingRow]:
    """The latest ``max_rows`` answered surveys shown in ``[shown_from_us, to_us)`` and
    answered before ``to_us`` whose session is stored, newest ``shown_at`` first (ties: the
    larger id first). Sessions that showed a frame but have no bitrate are left out, as
    section 6 leaves them out: their bitrate cannot be put in."""
    ph = placeholders(style, 4).split(", ")
    rows = await fetch(
        # The session's values as the survey row keeps them (schema 4): no join, and a
        # session is stored exactly where its survey row's rebuffer_ratio is not null.
        "SELECT score, rebuffer_ratio, startup_ms, avg_bitrate_kbps, failed FROM surveys "
        f"WHERE shown_us >= {ph[0]} AND shown_us < {ph[1]} AND outcome = 'answered' "
        f"AND answered_us < {ph[2]} AND {KNOWN} IS NOT NULL "
        "AND (startup_ms IS NULL OR avg_bitrate_kbps IS NOT NULL) "
        f"ORDER BY shown_us DESC, id DESC LIMIT {ph[3]}",
        (shown_from_us, to_us, to_us, max_rows),
    )
    return [TrainingRow(int(r[0]), float(r[1]), r[2], r[3], bool(r[4])) for r in rows]


#: The filters matched against each session's batch attributes.
BATCH_ATTRIBUTES: Final = ("region", "model", "firmware")


def _window_where(window: Filters, add: Callable[[Any], str]) -> str:
    """The window's conditions over ``sessions``: ``started_us`` in range, then the
    batch attributes."""
    assert window.from_us is not None and window.to_us is not None
    where = [f"started_us >= {add(window.from_us)}", f"started_us < {add(window.to_us)}"]
    for col in BATCH_ATTRIBUTES:
        value = getattr(window, col)
        if value is not None:
            where.append(f"{col} = {add(value)}")
    return " AND ".join(where)


def _adder(style: str, params: list[Any]) -> Callable[[Any], str]:
    def add(value: Any) -> str:
        # Numbered in both dialects (SQLite's ``?NNN``), so the text's order never matters.
        params.append(value)
        return f"{style}{len(params)}"

    return add


#: The least share of the stored sessions' time span that a window must cover for SQLite
#: to average the risks walking ``sessions_box_window`` in box order, every stored session
#: of the index read, rather than the window's sessions in time order and then sorted by
#: box. At 10 M sessions over 30 days, measured: reading the whole index took about 0.11 µs
#: a stored session; sorting cost about 1.3 µs a window's session; so the walk in box order
#: pays from about 8 % of the span (bench/README.md, "At-risk list at scale").
BOX_ORDER_SHARE: Final = 0.1


def _box_order(window: Filters, span: tuple[int | None, int | None]) -> bool:
    """Whether SQLite should walk the boxes in order for ``window``: no batch filter (the
    box index does not carry the attributes, so a filter would look up every stored
    session) and a window covering at least :data:`BOX_ORDER_SHARE` of the stored
    sessions' span ``(min started_us, max started_us)``."""
    lo, hi = span
    if lo is None or hi is None or any(getattr(window, c) is not None for c in BATCH_ATTRIBUTES):
        return False
    assert window.from_us is not None and window.to_us is not None
    covered = min(window.to_us, hi + 1) - max(window.from_us, lo)
    return covered >= BOX_ORDER_SHARE * (hi + 1 - lo)


async def read_ranked_boxes(fetch: Fetch, style: str, window: Filters, ranking: Ranking,
                            limit: int) -> list[tuple[str, float]]:
    """(box_id, risk) of the first ``limit`` boxes with a session in ``window``
    (``from_us``/``to_us`` by ``started_us``; ``region``, ``model``, ``firmware`` against
    each session's batch attributes), riskiest first, then by ``box_id`` in code-point
    order. The risk is rounded to :data:`RISK_DECIMALS` decimal places before it is
    ranked, so that boxes whose means differ only by the rounding of their additions
    (whose order PostgreSQL's parallel plans vary) tie and go by ``box_id``.

    A box's risk is the mean over its window's sessions of the logistic model
    ``ranking`` gives each session (see :mod:`collector.at_risk`): computed and ranked
    in the database, so only ``limit`` rows leave it however many boxes the window
    holds. Nothing else is aggregated here: on every session of the window, each
    aggregate costs (twice the time with the figures' nine); the figures are read for
    the listed boxes alone (:func:`read_box_sums`).

    ``fetch`` should be the store's reader for large reads (``sql_reader(large=True)``):
    PostgreSQL's per-box hash table outgrows the default ``work_mem`` at a few hundred
    thousand boxes and spills to disk.
    """
    params: list[Any] = []
    add = _adder(style, params)
    where = _window_where(window, add)
    source = "sessions"
    if style == "?":
        span = await fetch("SELECT (SELECT min(started_us) FROM sessions), "
                           "(SELECT max(started_us) FROM sessions)", ())
        if _box_order(window, (span[0][0], span[0][1])):
            source = "sessions INDEXED BY sessions_box_window"

    def k(value: float) -> str:
        # Constants typed as doubles: in PostgreSQL ``startup_ms / 1000.0`` would be
        # numeric arithmetic, many times slower per row than double precision.
        return _f8(value, style)

    # Each session's regressors as the model was trained on them: a session without a
    # frame (or without a bitrate) takes the training mean, its loss being no_start's.
    # The coefficients are folded into the constants (c·startup_ms/1000 is written
    # startup_ms·(c/1000), and no_start's coefficient joins the mean put in for a
    # session without a frame) and a regressor the fit dropped (coefficient 0) is left
    # out: every operation costs its evaluation on each session of the window (the
    # folded form took a third off PostgreSQL's query at 10 M). Folding moves the sum in
    # its last bits only, far below the rounding to RISK_DECIMALS.
    c0, c_rb, c_su, c_br, c_failed, c_no_start, su_mean, br_mean = (float(v) for v in ranking)
    terms = [k(c0)]
    if c_rb != 0.0:
        terms.append(f"{k(100.0 * c_rb)} * rebuffer_ratio")
    if c_su != 0.0 or c_no_start != 0.0:
        terms.append(f"coalesce(startup_ms * {k(c_su / 1000.0)}, {k(c_su * su_mean + c_no_start)})")
    if c_br != 0.0:
        terms.append(f"coalesce(avg_bitrate_kbps * {k(c_br / 1000.0)}, {k(c_br * br_mean)})")
    if c_failed != 0.0:
        terms.append(f"failed * {k(c_failed)}" if style == "?"
                     else f"(CASE WHEN failed THEN {k(c_failed)} ELSE {k(0.0)} END)")
    eta = " + ".join(terms)
    # PostgreSQL raises on exp()'s overflow and underflow: clamped there (beyond ±500 the
    # probability is 0 or 1 to within 1e-217 anyway), by GREATEST and LEAST, which
    # evaluate the model once. SQLite's exp() gives infinity or 0, and 1 / (1 + ∞) is 0.
    arg = f"-({eta})" if style == "?" else f"-GREATEST({k(-500.0)}, LEAST({k(500.0)}, {eta}))"
    # Code points: SQLite's BINARY collation compares UTF-8 bytes, which orders as code
    # points; PostgreSQL needs the "C" collation for that whatever the database's is.
    order_id = "box_id" if style == "?" else 'box_id COLLATE "C"'
    # Rounded to RISK_DECIMALS places, in the answer and in the order alike: a mean of
    # doubles depends in its last bits on the order they are added, which PostgreSQL's
    # parallel aggregation changes from run to run; rounded, risks that differ by that
    # alone are equal and ordered by box_id, the same on every run.
    rounded = (f"round(risk, {RISK_DECIMALS})" if style == "?"
               else f"CAST(round(CAST(risk AS numeric), {RISK_DECIMALS}) AS DOUBLE PRECISION)")
    rows = await fetch(
        f"WITH b AS (SELECT box_id, avg({k(1.0)} / ({k(1.0)} + exp({arg}))) AS risk "
        f"FROM {source} WHERE {where} GROUP BY box_id) "
        f"SELECT box_id, {rounded} AS r FROM b ORDER BY r DESC, {order_id} LIMIT {add(limit)}",
        params,
    )
    return [(str(r[0]), float(r[1])) for r in rows]


async def read_box_sums(fetch: Fetch, style: str, window: Filters,
                        box_ids: Sequence[str]) -> dict[str, BoxSums]:
    """The window's sessions of each of ``box_ids`` added up (through the sessions' box
    index: a few rows per box, whatever the window holds of other boxes).

    On PostgreSQL the ids are joined from ``unnest`` rather than matched by ``= ANY``: from
    its sixth run a prepared statement may take a generic plan, and the generic plan of
    ``box_id = ANY($n)`` scanned the window's partitions (200 to 330 ms at 10 M sessions,
    against 4 ms), where the join's stays a look-up per box (the same in
    :func:`read_last_answers`)."""
    if not box_ids:
        return {}
    params: list[Any] = []
    add = _adder(style, params)
    where = _window_where(window, add)
    if style == "?":
        source = "sessions"
        where += f" AND box_id IN ({', '.join(add(b) for b in box_ids)})"
    else:
        source = f"unnest({add(list(box_ids))}::text[]) AS listed(box) JOIN sessions ON box_id = listed.box"
    rows = await fetch(
        "SELECT box_id, count(*), sum(rebuffer_s), sum(watch_s), sum(startup_ms), "
        "count(startup_ms), sum(avg_bitrate_kbps * watch_s), "
        "sum(CASE WHEN avg_bitrate_kbps IS NULL THEN 0 ELSE watch_s END), "
        f"sum(CASE WHEN failed THEN 1 ELSE 0 END) FROM {source} WHERE {where} "
        "GROUP BY box_id",
        params,
    )
    return {str(r[0]): BoxSums(str(r[0]), int(r[1]), float(r[2]), float(r[3]), int(r[4] or 0),
                               int(r[5]), float(r[6] or 0.0), float(r[7]), int(r[8]))
            for r in rows}


async def read_last_answers(fetch: Fetch, style: str, box_ids: Sequence[str],
                            to_us: int) -> dict[str, LastAnswer]:
    """Per box, its latest answered survey with ``answered_at`` before ``to_us``, ties
    going to the larger id; boxes without one are absent."""
    if not box_ids:
        return {}
    if style == "?":
        sql = ("SELECT box_id, id, score, answered_us FROM surveys WHERE outcome = 'answered' "
               f"AND answered_us < ? AND box_id IN ({placeholders('?', len(box_ids))})")
        params: list[Any] = [to_us, *box_ids]
    else:
        sql = ("SELECT box_id, id, score, answered_us FROM unnest($2::text[]) AS listed(box) "
               "JOIN surveys ON box_id = listed.box WHERE outcome = 'answered' AND answered_us < $1")
        params = [to_us, list(box_ids)]
    best: dict[str, tuple[int, str, int]] = {}
    for r in await fetch(sql, params):
        # Ids are stored lower-case (SQLite) or as uuid (PostgreSQL, whose text form is
        # lower-case): compared as text they order the same on both.
        key = (int(r[3]), str(r[1]), int(r[2]))
        box = str(r[0])
        if box not in best or key[:2] > best[box][:2]:
            best[box] = key
    return {box: LastAnswer(score, us) for box, (us, _, score) in best.items()}
