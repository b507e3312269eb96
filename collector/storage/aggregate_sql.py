"""The aggregates of a write group, computed by the database from the rows just stored.

Ingest keeps the aggregate tables (see :mod:`collector.storage.aggregates`) in the very
transaction that stores the records, so an acknowledgement means the aggregates are on
disk too. Nothing is counted in Python: each aggregate table gets one
``INSERT ... SELECT ... GROUP BY`` appending the counts of this write group, summed by
hour and whole segment, to the table's delta (``agg_sessions_delta`` ...), over the rows of
this write group, which the caller names as two relations (a dialect's choice, see
:mod:`collector.storage.store_logic`):

* ``{ns}``: the sessions stored by this group (with their ``surveyed`` flag already set);
* ``{nv}``: the surveys stored by this group.

What a group changes, by table:

* ``agg_sessions``: its sessions, plus ``surveyed`` for each session stored earlier whose
  first survey arrives now (read before :data:`FLIP_SURVEYED` sets the flag);
* ``agg_surveys``: its surveys, under their session's channel and content type where the
  session is known; surveys stored earlier whose session arrives now leave channel ``''``
  (counted -1 there) for their session's segment (+1);
* ``agg_bins``: its answered surveys whose session is known, and the moved ones.

Every so many records (:data:`~collector.storage.store_logic.FOLD_RECORDS`) a write group
also *folds* the deltas (:func:`fold_sql`): per table one ``INSERT ... SELECT ... ON
CONFLICT DO UPDATE`` sums the delta rows by hour and segment (``d``), spreads those sums
over every level (see :func:`levels`) and empties the delta. Many groups' deltas share
hours and segments, so a fold writes each aggregate row once where the groups would have
written it once each: on a 30-day backlog a group of 3,200 records touched about 7,500
aggregate rows, a fold of 20,000 records at most the 9,500 that 30 days of the benchmark's
segments have (bench/README.md, issue 14). Reads add the delta rows of
their range (:mod:`collector.storage.report_sql`). On PostgreSQL a fold takes the rows it
folds with ``DELETE ... RETURNING`` (rows other instances append meanwhile wait for the
next fold), one instance folds at a time (an advisory lock the others' groups skip), and
the upserts are sorted by key all the same, one table after the other (sessions, surveys,
bins). One statement per table also keeps PostgreSQL's rule that an upsert touches a row
once.

The SQL is the same text for SQLite and PostgreSQL (bar how a fold takes the delta rows
and whether it sorts) and is generated from the vectors
(:data:`~collector.storage.aggregates.SESSION_VEC`, ``SURVEY_VEC``, ``BIN_VEC``) and the
metric list, so a new metric or level needs no change here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from protocol import REASONS
from protocol.nps import SCORES
from protocol.units import DAY_US, HOUR_US

from ..metrics import METRICS
from .aggregates import (
    BIN_COMBINE,
    BIN_KEY,
    BIN_VEC,
    DELTA,
    DELTA_KEY,
    HOURLY,
    KEY,
    LEVEL_OF,
    METRIC_ID,
    SEGMENT,
    SESSION_VEC,
    SURVEY_VEC,
    WIDE,
    session_conditions,
    unit_sql,
)

#: A level: its number, whether its ``day`` column holds the hour (else the day), and the
#: segment columns it keeps (the others are ``''``).
Level = tuple[int, bool, tuple[str, ...]]


def levels() -> list[Level]:
    """Every level an aggregate key is kept at: the detail (0), the rollup (1), one kept
    segment column each (2 to 6), and the rollup and single columns again by hour."""
    out: list[Level] = [(0, False, SEGMENT), (1, False, ())]
    out += [(LEVEL_OF[c], False, (c,)) for c in SEGMENT]
    out += [(HOURLY + 1, True, ())]
    out += [(HOURLY + LEVEL_OF[c], True, (c,)) for c in SEGMENT]
    return out


def _case(cond: str, then: str = "1") -> str:
    return f"CASE WHEN {cond} THEN {then} ELSE 0 END"


def session_counts(s: str) -> list[str]:
    """Per column of :data:`SESSION_VEC`, what one session row (alias ``s``) adds."""
    conditions = session_conditions(s)
    return [_case(conditions[c]) for c in SESSION_VEC]


#: A survey answered with a score: counted in the histogram and the bins.
ANSWERED: Final = "{v}.outcome = 'answered' AND {v}.score IS NOT NULL"


def survey_counts(v: str) -> list[str]:
    """Per column of :data:`SURVEY_VEC`, what one survey row (alias ``v``) adds."""
    answered = ANSWERED.format(v=v)
    exprs = {"shown": "1"}
    exprs.update({o: _case(f"{v}.outcome = '{o}'") for o in ("answered", "dismissed", "timeout")})
    exprs.update({f"h{i}": _case(f"{answered} AND {v}.score = {i}") for i in SCORES})
    exprs.update({f"r_{r}": _case(f"{answered} AND {v}.reason = '{r}'") for r in REASONS})
    return [exprs[c] for c in SURVEY_VEC]


def bin_counts(v: str, pos: str) -> list[str]:
    """Per column of :data:`BIN_VEC`, what one answered survey adds to its session's bin
    (``pos``: the session's position inside it); ``pmin``/``pmax`` are combined by
    :data:`BIN_COMBINE`, the others summed."""
    exprs = {f"s{i}": _case(f"{v}.score = {i}") for i in SCORES}
    exprs.update({f"t{i}": _case(f"{v}.score = {i}", pos) for i in SCORES})
    exprs.update({"q": f"CAST({pos} AS BIGINT) * {pos}", "pmin": pos, "pmax": pos})
    return [exprs[c] for c in BIN_VEC]


def _combine(table: str, col: str) -> str:
    return BIN_COMBINE.get(col, "sum") if table == "agg_bins" else "sum"


def _upsert_tail(table: str, key: Sequence[str], vec: Sequence[str], dialect: str) -> str:
    def add(c: str) -> str:
        how = _combine(table, c)
        if how == "sum":
            return f"{c} = {table}.{c} + excluded.{c}"
        fn = how if dialect == "sqlite" else {"min": "least", "max": "greatest"}[how]
        return f"{c} = {fn}({table}.{c}, excluded.{c})"

    return f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {', '.join(add(c) for c in vec)}"


def _detail(table: str, key: Sequence[str], vec: Sequence[str], source: str) -> str:
    """``source``'s rows summed by hour and whole segment (and ``key``'s extra columns)."""
    cols = ["hour", *SEGMENT, *(c for c in key if c not in KEY)]
    # The sums as 32-bit integers (a write group's, or a fold's, counts are far below
    # 2**31), so that PostgreSQL sums them over the levels as bigint: its sum of bigints is
    # a numeric, several times slower. Only the sums of squared positions need 64 bits.
    totals = ", ".join(f"{_combine(table, c)}({c}) AS {c}" if c in WIDE else
                       f"CAST({_combine(table, c)}({c}) AS INTEGER) AS {c}" for c in vec)
    return f"SELECT {', '.join(cols)}, {totals} FROM {source} GROUP BY {', '.join(cols)}"


def _to_delta(table: str, key: Sequence[str], vec: Sequence[str], parts: Sequence[str]) -> str:
    """The append of a write group's counts to ``table``'s delta from ``parts``: SELECTs
    answering ``hour``, the segment columns, any extra key columns, then the vector, one
    row per record (or per group)."""
    extra = [c for c in key if c not in KEY]
    return (f"INSERT INTO {DELTA[table]} ({', '.join((*DELTA_KEY, *extra, *vec))}) "
            f"{_detail(table, key, vec, '(' + ' UNION ALL '.join(parts) + ') u')}")


def fold_sql(table: str, dialect: str) -> list[str]:
    """The fold of ``table``'s delta into its levels: the delta rows summed by hour and
    segment (``d``), spread over every level (see :func:`levels`) and upserted, and the
    delta emptied, in the caller's transaction."""
    key, vec = {"agg_sessions": (KEY, SESSION_VEC), "agg_surveys": (KEY, SURVEY_VEC),
                "agg_bins": (BIN_KEY, BIN_VEC)}[table]
    extra = [c for c in key if c not in KEY]
    sums = ", ".join(f"{_combine(table, c)}({c}) AS {c}" for c in vec)
    # 32-bit again where h is summed once more (PostgreSQL: bigint sums, not numeric).
    sums32 = ", ".join(f"{_combine(table, c)}({c}) AS {c}" if c in WIDE else
                       f"CAST({_combine(table, c)}({c}) AS INTEGER) AS {c}" for c in vec)
    by_hour = []
    for lvl, hourly, kept in levels():
        if hourly:
            seg = ", ".join(f"{c if c in kept else repr('')} AS {c}" for c in SEGMENT)
            by_hour.append(f"SELECT {lvl} AS lvl, hour AS day, {seg}{''.join(', ' + c for c in extra)}, "
                           f"{sums32} FROM d GROUP BY {', '.join(['hour', *kept, *extra])}")
    # The detail by day from d; the levels by hour from d (h), and the levels by day that
    # keep one column or none from h's rows (far fewer than d's): each GROUP BY costs about
    # its input rows, and 6 of the 13 now read h instead of d.
    spread = [f"SELECT 0, {unit_sql('hour', 24)}, {', '.join(SEGMENT)}{''.join(', ' + c for c in extra)}, "
              f"{sums} FROM d GROUP BY {', '.join(['2', *SEGMENT, *extra])}",
              "SELECT * FROM h",
              f"SELECT lvl - {HOURLY}, {unit_sql('day', 24)}, {', '.join((*SEGMENT, *extra))}, {sums} "
              f"FROM h GROUP BY {', '.join(['lvl', '2', *SEGMENT, *extra])}"]
    delta = DELTA[table]
    if dialect == "sqlite":
        # One writer: nothing is appended between the fold and the DELETE. Not sorted:
        # no lock order to keep, and sorting thousands of wide rows costs a sixth.
        moved, source, order, empty = "", delta, "", [f"DELETE FROM {delta}"]
    else:
        # Exactly the rows folded go (rows other instances append meanwhile stay for the
        # next fold); the upserts sorted by key, so two folds never wait in a cycle.
        moved = f"moved AS (DELETE FROM {delta} RETURNING *), "
        source, empty = "moved", []
        order = " ORDER BY " + ", ".join(str(i + 1) for i in range(len(key)))
    # WHERE true: SQLite needs it before ON CONFLICT (a parsing ambiguity).
    return [(f"WITH {moved}d AS MATERIALIZED ({_detail(table, key, vec, source)}), "
             f"h AS MATERIALIZED ({' UNION ALL '.join(by_hour)}) "
             f"INSERT INTO {table} ({', '.join((*key, *vec))}) "
             f"SELECT * FROM ({' UNION ALL '.join(spread)}) z WHERE true{order} "
             f"{_upsert_tail(table, key, vec, dialect)}"), *empty]


def fold_statements(dialect: str) -> list[str]:
    """The folds of the three tables, in the order every writer takes them."""
    return [sql for table in DELTA for sql in fold_sql(table, dialect)]


def _part(hour_of: str, seg: Sequence[str], extra: Sequence[str], counts: Sequence[str],
          vec: Sequence[str], source: str, negated: bool = False) -> str:
    signed = [f"-({c})" for c in counts] if negated else counts
    cols = [f"{hour_of} AS hour", *(f"{e} AS {c}" for e, c in zip(seg, SEGMENT, strict=True)),
            *extra, *(f"{e} AS {c}" for e, c in zip(signed, vec, strict=True))]
    return f"SELECT {', '.join(cols)} FROM {source}"


def _seg_of(alias: str, cols: Sequence[str] = SEGMENT) -> list[str]:
    return [f"coalesce({alias}.{c}, '')" for c in cols]


def sessions_sql() -> str:
    """The ``agg_sessions`` delta of a group: its sessions ``{ns}``, and ``surveyed`` for
    each earlier session whose first survey is among ``{nv}`` (run before
    :data:`FLIP_SURVEYED`)."""
    hour = unit_sql("s.started_us", HOUR_US)
    new = _part(hour, _seg_of("s"), (), session_counts("s"), SESSION_VEC, "{ns} s")
    only_surveyed = ["1" if c == "surveyed" else "0" for c in SESSION_VEC]
    flipped = _part(hour, _seg_of("s"), (), only_surveyed, SESSION_VEC,
                    "sessions s WHERE NOT s.surveyed AND s.id IN "
                    "(SELECT session_id FROM {nv} WHERE session_id IS NOT NULL)")
    return _to_delta("agg_sessions", KEY, SESSION_VEC, [new, flipped])


#: Earlier sessions whose first survey is among ``{nv}`` are surveyed now.
FLIP_SURVEYED: Final = ("UPDATE sessions SET surveyed = true WHERE NOT surveyed AND id IN "
                        "(SELECT session_id FROM {nv} WHERE session_id IS NOT NULL)")
#: Sessions of the group whose survey was stored earlier (or in this group) are surveyed;
#: ``{ns_table}`` is where the group's sessions are before they count.
MARK_SURVEYED: Final = ("UPDATE {ns_table} SET surveyed = true WHERE {ns_cond} AND EXISTS "
                        "(SELECT 1 FROM surveys v WHERE v.session_id = {ns_table}.id)")

_MOVED: Final = "surveys v JOIN {ns} s ON s.id = v.session_id WHERE {old_v}"
_SURVEY_SEG: Final = ("region", "model", "firmware")


def surveys_sql() -> str:
    """The ``agg_surveys`` delta of a group: its surveys ``{nv}`` under their session's
    segment where known, and the earlier surveys whose session is among ``{ns}`` moved from
    channel ``''`` to it."""
    hour = unit_sql("v.shown_us", HOUR_US)
    joined = [*_seg_of("v", _SURVEY_SEG), *_seg_of("s", ("channel", "content_type"))]
    alone = [*_seg_of("v", _SURVEY_SEG), "''", "''"]
    counts = survey_counts("v")
    parts = [
        _part(hour, joined, (), counts, SURVEY_VEC,
              "{nv} v LEFT JOIN sessions s ON s.id = v.session_id"),
        _part(hour, alone, (), counts, SURVEY_VEC, _MOVED, negated=True),
        _part(hour, joined, (), counts, SURVEY_VEC, _MOVED),
    ]
    return _to_delta("agg_surveys", KEY, SURVEY_VEC, parts)


def bins_sql() -> str:
    """The ``agg_bins`` delta of a group: each answered survey of ``{nv}`` whose session is
    known, and each earlier answered survey whose session is among ``{ns}``, in its
    session's fine bin of every metric the session has."""
    hour = unit_sql("v.shown_us", HOUR_US)
    joined = [*_seg_of("v", _SURVEY_SEG), *_seg_of("s", ("channel", "content_type"))]
    answered = ANSWERED.format(v="v")
    parts = []
    for metric in METRICS:
        fine, pos = f"s.{metric.fine_column}", f"s.{metric.pos_column}"
        extra = (f"{METRIC_ID[metric.name]} AS metric", f"{fine} AS bin")
        cond = f"{answered} AND {fine} IS NOT NULL"
        for source in (f"{{nv}} v JOIN sessions s ON s.id = v.session_id WHERE {cond}",
                       f"{_MOVED} AND {cond}"):
            parts.append(_part(hour, joined, extra, bin_counts("v", f"coalesce({pos}, 0)"),
                               BIN_VEC, source))
    return _to_delta("agg_bins", BIN_KEY, BIN_VEC, parts)


# -- rebuilding from the raw rows (migration, bulk loads, deletions) ------------------------------

def _sums(exprs: Iterable[str]) -> str:
    return ", ".join(f"sum({e})" for e in exprs)


def rebuild_sql(style: str) -> list[tuple[str, str]]:
    """Statements that recompute the aggregates of days ``[d0, d1)`` from the raw rows, in
    order. Each takes two parameters, by its flag: ``day`` ``(d0, d1)``, ``hour``
    ``(24 d0, 24 d1)`` or ``us`` ``(d0 * DAY_US, d1 * DAY_US)``; ``style`` is ``?`` or
    ``$`` (numbered)."""
    def ph(i: int) -> str:
        return "?" if style == "?" else f"${i}"

    seg_s = ", ".join(_seg_of("s"))
    seg_v = ", ".join([*_seg_of("v", _SURVEY_SEG), *_seg_of("s", ("channel", "content_type"))])
    n_key = len(KEY)
    answered = ANSWERED.format(v="v")
    stmts: list[tuple[str, str]] = []
    for table in ("agg_sessions", "agg_surveys", "agg_bins"):
        stmts.append((f"DELETE FROM {table} WHERE lvl < {HOURLY} AND day >= {ph(1)} AND day < {ph(2)}", "day"))
        stmts.append((f"DELETE FROM {table} WHERE lvl >= {HOURLY} AND day >= {ph(1)} AND day < {ph(2)}", "hour"))
        # The days' deltas not yet folded: their records are among the rows counted now.
        stmts.append((f"DELETE FROM {DELTA[table]} WHERE hour >= {ph(1)} AND hour < {ph(2)}", "hour"))
    group = ", ".join(str(i) for i in range(2, n_key + 1))
    # The detail by day (level 0) and, to derive the hourly levels from, by hour (level
    # HOURLY, removed at the end: no report reads the detail by hour).
    for lvl, unit in ((0, DAY_US), (HOURLY, HOUR_US)):
        stmts.append((
            f"INSERT INTO agg_sessions ({', '.join((*KEY, *SESSION_VEC))}) "
            f"SELECT {lvl}, {unit_sql('s.started_us', unit)}, {seg_s}, {_sums(session_counts('s'))} "
            f"FROM sessions s WHERE s.started_us >= {ph(1)} AND s.started_us < {ph(2)} GROUP BY {group}", "us"))
        stmts.append((
            f"INSERT INTO agg_surveys ({', '.join((*KEY, *SURVEY_VEC))}) "
            f"SELECT {lvl}, {unit_sql('v.shown_us', unit)}, {seg_v}, {_sums(survey_counts('v'))} "
            f"FROM surveys v LEFT JOIN sessions s ON s.id = v.session_id "
            f"WHERE v.shown_us >= {ph(1)} AND v.shown_us < {ph(2)} GROUP BY {group}", "us"))
        for metric in METRICS:
            col, pos = metric.fine_column, f"coalesce(s.{metric.pos_column}, 0)"
            totals = ", ".join(f"{_combine('agg_bins', c)}({e})"
                               for c, e in zip(BIN_VEC, bin_counts("v", pos), strict=True))
            stmts.append((
                f"INSERT INTO agg_bins ({', '.join((*BIN_KEY, *BIN_VEC))}) "
                f"SELECT {lvl}, {unit_sql('v.shown_us', unit)}, {seg_v}, {METRIC_ID[metric.name]}, s.{col}, "
                f"{totals} FROM surveys v JOIN sessions s ON s.id = v.session_id "
                f"WHERE {answered} AND s.{col} IS NOT NULL "
                f"AND v.shown_us >= {ph(1)} AND v.shown_us < {ph(2)} GROUP BY {group}, {n_key + 1}, {n_key + 2}", "us"))
    for table, vec, extra in (("agg_sessions", SESSION_VEC, ()), ("agg_surveys", SURVEY_VEC, ()),
                              ("agg_bins", BIN_VEC, ("metric", "bin"))):
        key_cols = (*KEY, *extra)
        sums = ", ".join(f"{_combine(table, c)}({c})" for c in vec)
        extra_sel = "".join(f", {c}" for c in extra)
        for lvl, hourly, kept in levels():
            if lvl == 0:
                continue
            base = HOURLY if hourly else 0
            seg_sel = ", ".join(c if c in kept else "''" for c in SEGMENT)
            group_by = ", ".join(["day", *kept, *extra])
            stmts.append((
                f"INSERT INTO {table} ({', '.join((*key_cols, *vec))}) "
                f"SELECT {lvl}, day, {seg_sel}{extra_sel}, {sums} FROM {table} "
                f"WHERE lvl = {base} AND day >= {ph(1)} AND day < {ph(2)} GROUP BY {group_by}",
                "hour" if hourly else "day"))
        stmts.append((f"DELETE FROM {table} WHERE lvl = {HOURLY} AND day >= {ph(1)} AND day < {ph(2)}", "hour"))
    return stmts


#: A :func:`rebuild_sql` statement's range kind: what a day is in its units.
_PER_DAY: Final = {"day": 1, "hour": 24, "us": DAY_US}


def rebuild_params(kind: str, d0: int, d1: int) -> tuple[int, int]:
    """The two parameters of a :func:`rebuild_sql` statement (``KeyError`` for a kind it
    does not make)."""
    per_day = _PER_DAY[kind]
    return d0 * per_day, d1 * per_day


def day_ranges(days: Iterable[int]) -> list[tuple[int, int]]:
    """Runs of consecutive days as ``[d0, d1)`` ranges."""
    out: list[tuple[int, int]] = []
    for d in sorted(set(days)):
        if out and out[-1][1] == d:
            out[-1] = (out[-1][0], d + 1)
        else:
            out.append((d, d + 1))
    return out
