"""The stores' write algorithms, written once for both databases.

Storing a write group's new records, deleting records (a box, retention) and rebuilding
the aggregates are the same steps on SQLite and PostgreSQL; what differs is how a
statement runs. SQLite runs synchronously on its one writer thread (a whole group is one
hop from the event loop, see :mod:`collector.storage.sqlite_writer`), PostgreSQL runs
asynchronously through asyncpg. So each algorithm here is a *sans-IO generator*: it
yields the operations it needs (:class:`Run`, :class:`RunIds`, :class:`Insert`,
:class:`Forget`) and receives their results, and knows nothing of connections. A store
drives it with :func:`drive_sync` (SQLite, on the writer thread) or :func:`drive_async`
(PostgreSQL) and a small function that performs one operation on its connection.

Wrapping the SQLite side as async instead would put an event-loop hop (and a GIL
hand-over) between statements, which is what the writer thread exists to avoid; writing
each algorithm twice is what this module exists to avoid.

The dialects differ in little that the algorithms see (:class:`Dialect`): placeholders,
how a list of ids is bound, and how the rows of the group just stored are named in SQL:
SQLite names them by ``rowid`` above the largest one before the group (the writer is the
only one, so new rows get larger rowids), PostgreSQL copies them into temporary tables
first and moves them from there (its tables have no rowid, and the temporary tables cost
no extra work in Python).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

from ..model import SessionRow, SurveyRow
from .aggregate_sql import (
    FLIP_SURVEYED,
    MARK_SURVEYED,
    bins_sql,
    day_ranges,
    rebuild_params,
    rebuild_sql,
    sessions_sql,
    surveys_sql,
)
from .aggregates import DELTA, day_of, day_sql
from .survey_session import clear_sql, fill_sql, refill_all_sql

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Run:
    """Run one statement; the answer is its rows if ``fetch``, else nothing."""

    sql: str
    params: Sequence[Any] = ()
    fetch: bool = False
    #: A long statement (a rebuild): no command timeout.
    long: bool = False


@dataclass(frozen=True, slots=True)
class RunIds:
    """Run ``sql`` over a list of ids, bound as the dialect binds a list
    (:meth:`Dialect.in_ids` wrote the condition); the answer is every row it returns."""

    sql: str
    ids: Sequence[str]


@dataclass(frozen=True, slots=True)
class Insert:
    """Insert new records of one kind where the dialect keeps a group's new rows."""

    table: Literal["sessions", "surveys"]
    rows: Sequence[SessionRow] | Sequence[SurveyRow]


@dataclass(frozen=True, slots=True)
class Forget:
    """Ids of records deleted: a dialect that keeps ids elsewhere forgets them."""

    ids: Sequence[Any]


@dataclass(frozen=True, slots=True)
class Mark:
    """Before a group's rows are inserted: the dialect notes where they will start (SQLite:
    the largest rowids) or readies the tables that hold them (PostgreSQL)."""


Op = Run | RunIds | Insert | Forget | Mark
#: An algorithm: yields operations, receives their answers, returns its result.
Steps = Generator[Op, Any, _T]


@dataclass(frozen=True, slots=True)
class Dialect:
    """What the algorithms need to know of a database."""

    name: Literal["sqlite", "postgresql"]
    #: Placeholder style: ``?`` or ``$`` (numbered).
    style: str
    #: The group's new sessions and surveys as a relation (``{ns}``, ``{nv}`` in
    #: :mod:`collector.storage.aggregate_sql`).
    new_sessions: str
    new_surveys: str
    #: The table :data:`MARK_SURVEYED` updates and its condition for the group's sessions.
    mark_table: str
    mark_cond: str
    #: A condition on ``surveys v``: the survey is not one of this group's.
    old_survey: str
    #: Statements that move the group's rows from where they were inserted into the
    #: record tables (PostgreSQL's temporary tables), by table.
    publish: dict[str, str]
    #: The literal of a list of ids in a condition (the statement's only parameter).
    in_ids_param: str
    #: Where the group's new surveys can be updated before they count, and the condition
    #: that picks them there (SQLite: ``surveys`` above the rowid mark; PostgreSQL: the
    #: temporary table, before it is published).
    survey_table: str
    survey_cond: str

    def in_ids(self, column: str) -> str:
        """``column`` is one of the ids bound with :class:`RunIds`."""
        return column + self.in_ids_param

    def fill(self, sql: str) -> str:
        """An :mod:`~collector.storage.aggregate_sql` statement with this dialect's names of
        the group's rows."""
        return sql.format(ns=self.new_sessions, nv=self.new_surveys, ns_table=self.mark_table,
                          ns_cond=self.mark_cond, old_v=self.old_survey)

    def group_statements(self) -> tuple[str, str, str, str, str]:
        """(mark surveyed, sessions' aggregates, flip surveyed, surveys', bins'), filled."""
        return (self.fill(MARK_SURVEYED), self.fill(sessions_sql()),
                self.fill(FLIP_SURVEYED), self.fill(surveys_sql()),
                self.fill(bins_sql()))


#: A write group folds the aggregates' deltas into their levels once this many records
#: were stored since the last fold: a fold of many groups' deltas spreads each hour and
#: segment once instead of once a group, and reads add at most about this many delta rows.
FOLD_RECORDS: Final = 20_000


class FoldClock:
    """When a write group folds: once :data:`FOLD_RECORDS` records were stored since the
    last fold, and at the first group after the store opens (deltas an earlier run left)."""

    def __init__(self, every: int = FOLD_RECORDS) -> None:
        self.every = every
        self.since = every

    @property
    def due(self) -> bool:
        """Whether the next write group folds."""
        return self.since >= self.every

    def stored(self, records: int, folded: bool) -> None:
        """A write group committed ``records`` records, folding or not."""
        self.since = 0 if folded else self.since + records


def store_new(d: Dialect, statements: tuple[str, str, str, str, str],
              sessions: Sequence[SessionRow], surveys: Sequence[SurveyRow],
              fold: Sequence[str] = ()) -> Steps[None]:
    """Insert a group's new records and keep the aggregates and surveyed flags, all in the
    caller's transaction; ``statements``: :meth:`Dialect.group_statements` (made once).
    The group's counts go to the aggregates' deltas; ``fold``: the statements that fold
    the deltas into the levels (:func:`~collector.storage.aggregate_sql.fold_statements`),
    run after them, when the store says it is time.

    A survey and its session join in whatever order they arrive: a session whose survey
    is stored (earlier or now) is stored surveyed; an earlier session whose first survey
    arrives now becomes surveyed (its aggregates are read before the flag changes); the
    aggregates of surveys come from the surveys joined to the sessions as stored now.
    """
    if not sessions and not surveys:
        for sql in fold:
            yield Run(sql)
        return
    mark, agg_sessions, flip, agg_surveys, agg_bins = statements
    yield Mark()
    if surveys:
        yield Insert("surveys", surveys)
        # Each survey keeps its session's values where the session was stored earlier
        # (survey_session); a session of this group gives them below.
        yield Run(fill_sql(d.survey_table, d.survey_cond))
        if "surveys" in d.publish:
            yield Run(d.publish["surveys"])
    if sessions:
        yield Insert("sessions", sessions)
        yield Run(mark)
        if "sessions" in d.publish:
            yield Run(d.publish["sessions"])
        # The surveys (stored earlier or now) of this group's surveyed sessions.
        yield Run(fill_sql("surveys", "s.surveyed", d.fill("{ns}")))
    # In the order every writer takes them (see aggregate_sql).
    yield Run(agg_sessions)
    if surveys:
        yield Run(flip)
    yield Run(agg_surveys)
    yield Run(agg_bins)
    for sql in fold:
        yield Run(sql)


def rebuild_days(d: Dialect, ranges: Sequence[tuple[int, int]]) -> Steps[None]:
    """Recompute the aggregates of whole days from the raw rows (in the caller's
    transaction)."""
    statements = rebuild_sql(d.style)
    for d0, d1 in ranges:
        for sql, kind in statements:
            yield Run(sql, rebuild_params(kind, d0, d1), long=True)


def rebuild_all(d: Dialect) -> Steps[None]:
    """Recompute every aggregate, and the session values kept on the survey rows, from the
    raw rows."""
    for sql in refill_all_sql():
        yield Run(sql, long=True)
    days = yield Run(f"SELECT DISTINCT {day_sql('started_us', d.name)} FROM sessions UNION "
                     f"SELECT DISTINCT {day_sql('shown_us', d.name)} FROM surveys", fetch=True)
    for table in ("agg_sessions", "agg_surveys", "agg_bins"):
        yield Run(f"DELETE FROM {table}")
        yield Run(f"DELETE FROM {DELTA[table]}")
    # Day by day: each statement reads one day's rows through the time indexes.
    yield from rebuild_days(d, [(int(r[0]), int(r[0]) + 1) for r in sorted(days)])


def delete_records(d: Dialect, session_cond: str, survey_cond: str, param: Any) -> Steps[int]:
    """Delete the sessions and surveys matching the conditions (``{p}`` is the table
    alias, the one parameter ``param``) and keep the aggregates, the surveyed flags of
    what remains and any id registry right: the days they touch are recomputed from the
    rows. Answers how many records went."""
    def cond(c: str, alias: str) -> str:
        return c.format(p=alias)

    days: set[int] = set()
    for sql in (
        f"SELECT DISTINCT {day_sql('s.started_us', d.name)} FROM sessions s WHERE {cond(session_cond, 's.')}",
        f"SELECT DISTINCT {day_sql('v.shown_us', d.name)} FROM surveys v WHERE {cond(survey_cond, 'v.')}",
        # Surveys kept whose session goes: they leave its segment and bins.
        f"SELECT DISTINCT {day_sql('v.shown_us', d.name)} FROM surveys v "
        f"JOIN sessions s ON s.id = v.session_id WHERE {cond(session_cond, 's.')}",
    ):
        days.update(int(r[0]) for r in (yield Run(sql, (param,), fetch=True)))
    linked = [r[0] for r in (yield Run(
        f"SELECT DISTINCT v.session_id FROM surveys v WHERE {cond(survey_cond, 'v.')} "
        "AND v.session_id IS NOT NULL", (param,), fetch=True))]
    # Surveys kept whose session goes no longer know its values.
    yield Run(clear_sql(f"session_id IN (SELECT s.id FROM sessions s WHERE {cond(session_cond, 's.')})"),
              (param,))
    gone = [r[0] for r in (yield Run(
        f"DELETE FROM sessions WHERE {cond(session_cond, '')} RETURNING id", (param,), fetch=True))]
    gone += [r[0] for r in (yield Run(
        f"DELETE FROM surveys WHERE {cond(survey_cond, '')} RETURNING id", (param,), fetch=True))]
    if gone:
        yield Forget(gone)
    # Sessions kept that lose their last survey are no longer surveyed.
    if linked:
        for r in (yield RunIds(
            f"UPDATE sessions SET surveyed = false WHERE surveyed AND {d.in_ids('id')} AND NOT "
            "EXISTS (SELECT 1 FROM surveys v WHERE v.session_id = sessions.id) RETURNING started_us",
            linked)):
            days.add(day_of(r[0]))
    yield from rebuild_days(d, day_ranges(days))
    return len(gone)


def drive_sync(steps: Steps[_T], do: Callable[[Op], Any]) -> _T:
    """Run an algorithm with ``do`` performing each operation (synchronously)."""
    answer: Any = None
    try:
        while True:
            answer = do(steps.send(answer))
    except StopIteration as end:
        result: _T = end.value
        return result


async def drive_async(steps: Steps[_T], do: Callable[[Op], Awaitable[Any]]) -> _T:
    """Run an algorithm with ``do`` performing each operation (awaited)."""
    answer: Any = None
    try:
        while True:
            answer = await do(steps.send(answer))
    except StopIteration as end:
        result: _T = end.value
        return result
