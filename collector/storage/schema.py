"""The store's schema, declared once: tables, columns, keys and indexes, from which the
DDL of both SQLite and PostgreSQL is generated.

Each column has a *portable* type (:data:`TYPES` maps it to each dialect's), its
nullability and default; each table its primary key, its indexes and, in PostgreSQL, its
partitioning. Where the dialects differ on purpose it is said here, once:

* PostgreSQL keeps ``sessions`` and ``surveys`` in monthly partitions (of ``started_us``
  and ``shown_us``). A partitioned table can only have unique keys that include the
  partition key, so there the records' primary keys are dropped and uniqueness of ids
  across partitions (and kinds) lives in ``record_ids``, a table only PostgreSQL has.
* SQLite has no ``INCLUDE`` in an index: the included columns join the key instead,
  which gives the same index-only scans.

The ``sessions`` columns derived from a QoS metric (its bucket, fine bin and position in
the fine bin) and the aggregate tables' vectors are generated from the metrics, so a new
metric changes this table by itself. The ``surveys`` table ends with
the session values each survey row keeps (:mod:`collector.storage.survey_session`),
written by the store, not sent. :class:`~collector.model.SessionRow` and
:class:`~collector.model.SurveyRow` are tuples bound as they are, so their field order
must be the tables' column order (less ``surveyed`` and those session values): checked
when this module is imported.

A fresh database is made at the latest schema from here; an older one is brought to it
by the numbered migrations in :mod:`collector.storage.migrations`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Final, Literal

from protocol.timefmt import to_micros

from ..metrics import METRICS, Metric
from ..model import SESSION_HEAD, SessionRow, SurveyRow
from .aggregates import (
    BIN_KEY,
    BIN_VEC,
    DELTA,
    KEY,
    SEGMENT,
    SESSION_VEC,
    SURVEY_VEC,
    WIDE,
)
from .survey_session import SESSION_VALUES

Dialect = Literal["sqlite", "postgresql"]
DIALECTS: Final[tuple[Dialect, ...]] = ("sqlite", "postgresql")

#: Portable column types: (SQLite, PostgreSQL). SQLite stores by affinity, so every
#: integer width is INTEGER there; booleans are 0/1 and UUIDs their text.
TYPES: Final[dict[str, tuple[str, str]]] = {
    "text": ("TEXT", "text"),
    "int16": ("INTEGER", "smallint"),
    "int32": ("INTEGER", "integer"),
    "int64": ("INTEGER", "bigint"),
    "float": ("REAL", "double precision"),
    "bool": ("INTEGER", "boolean"),
    "bytes": ("BLOB", "bytea"),
    "uuid": ("TEXT", "uuid"),
}


@dataclass(frozen=True, slots=True)
class Column:
    """One column: name, portable type (a key of :data:`TYPES`), nullability and default
    (a Python value, written in each dialect's spelling)."""

    name: str
    type: str
    nullable: bool = False
    default: bool | int | None = None

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"column {self.name}: unknown portable type {self.type!r}")

    def ddl(self, dialect: Dialect) -> str:
        """The column's definition in a CREATE TABLE or ADD COLUMN."""
        out = f"{self.name} {TYPES[self.type][DIALECTS.index(dialect)]}"
        if not self.nullable:
            out += " NOT NULL"
        if self.default is not None:
            out += f" DEFAULT {_literal(self.default, dialect)}"
        return out


def _literal(value: bool | int, dialect: Dialect) -> str:
    if isinstance(value, bool):
        return ("true" if value else "false") if dialect == "postgresql" else str(int(value))
    return str(value)


@dataclass(frozen=True, slots=True)
class Index:
    """A plain (non-unique) index; ``include`` columns are carried in the index for
    index-only scans (PostgreSQL ``INCLUDE``, appended to the key in SQLite)."""

    name: str
    columns: tuple[str, ...]
    include: tuple[str, ...] = ()
    #: Only in this dialect (None: both).
    only: Dialect | None = None


@dataclass(frozen=True, slots=True)
class Partition:
    """PostgreSQL range partitioning by ``column``: a partition a month (made by the store
    as times arrive) and a DEFAULT partition for times outside the monthly years."""

    column: str


#: Monthly partitions cover 1900 to 2200; a time outside (a box clock gone very wrong)
#: lands in the DEFAULT partition instead of making a partition of its own.
PARTITION_MIN_US: Final = to_micros(datetime(1900, 1, 1, tzinfo=UTC))
PARTITION_MAX_US: Final = to_micros(datetime(2200, 1, 1, tzinfo=UTC))


@dataclass(frozen=True, slots=True)
class Table:
    """A table: columns in order, primary key, indexes; PostgreSQL partitioning, and the
    one dialect it exists in, if only one."""

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    indexes: tuple[Index, ...] = ()
    partition: Partition | None = None
    only: Dialect | None = None
    #: Derived data that migrations may drop and make again (the aggregates).
    derived: bool = False
    #: PostgreSQL storage parameters (``fillfactor = 50``), written ``WITH (...)``.
    pg_storage: str = ""
    _by_name: dict[str, Column] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"table {self.name}: a column is declared twice")
        known = set(names)
        for idx in self.indexes:
            if not known.issuperset((*idx.columns, *idx.include)):
                raise ValueError(f"index {idx.name}: a column is not in {self.name}")
        if not known.issuperset(self.primary_key):
            raise ValueError(f"table {self.name}: a primary-key column is not in it")
        object.__setattr__(self, "_by_name", {c.name: c for c in self.columns})

    @property
    def column_names(self) -> tuple[str, ...]:
        """The columns' names, in order."""
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        """The column called ``name`` (KeyError naming the table if there is none)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"table {self.name} has no column {name}") from None

    def exists_in(self, dialect: Dialect) -> bool:
        """Whether the table exists in ``dialect``."""
        return self.only is None or self.only == dialect

    def create(self, dialect: Dialect) -> list[str]:
        """CREATE statements of the table, its indexes (and PostgreSQL's DEFAULT partition),
        each idempotent (``IF NOT EXISTS``)."""
        if not self.exists_in(dialect):
            return []
        parts = [c.ddl(dialect) for c in self.columns]
        partitioned = dialect == "postgresql" and self.partition is not None
        if self.primary_key and not partitioned:
            parts.append(f"PRIMARY KEY ({', '.join(self.primary_key)})")
        stmt = f"CREATE TABLE IF NOT EXISTS {self.name} ({', '.join(parts)})"
        if partitioned:
            assert self.partition is not None
            stmt += f" PARTITION BY RANGE ({self.partition.column})"
        if dialect == "postgresql" and self.pg_storage:
            stmt += f" WITH ({self.pg_storage})"
        out = [stmt]
        for idx in self.indexes:
            if idx.only is not None and idx.only != dialect:
                continue
            if dialect == "postgresql":
                cols = f"({', '.join(idx.columns)})"
                if idx.include:
                    cols += f" INCLUDE ({', '.join(idx.include)})"
            else:
                cols = f"({', '.join((*idx.columns, *idx.include))})"
            out.append(f"CREATE INDEX IF NOT EXISTS {idx.name} ON {self.name} {cols}")
        if partitioned:
            assert self.partition is not None
            c = self.partition.column
            # Only times without a monthly partition of their own: an in-range row that
            # finds its month missing (dropped by another instance's purge) fails instead
            # of settling here, where it would block making that month's partition again.
            out.append(
                f"CREATE TABLE IF NOT EXISTS {self.name}_default PARTITION OF {self.name} "
                f"(CONSTRAINT {self.name}_default_outside CHECK ({c} < {PARTITION_MIN_US} "
                f"OR {c} >= {PARTITION_MAX_US})) DEFAULT")
        return out

    def add_column(self, name: str, dialect: Dialect) -> str:
        """ALTER TABLE adding column ``name`` as declared here (on a partitioned table the
        partitions get it too)."""
        return f"ALTER TABLE {self.name} ADD COLUMN {self.column(name).ddl(dialect)}"


# -- the tables ----------------------------------------------------------------------------

def metric_columns(metric: Metric) -> tuple[Column, Column, Column, Column]:
    """A QoS metric's four session columns (:attr:`Metric.columns`): its value, its
    contract bucket, its fine bin and its position in the fine bin (see
    ``collector.storage.aggregates``); all but a never-null value are nullable."""
    name, bucket, fine, pos = metric.columns
    return (Column(name, "int32" if metric.integer else "float", nullable=metric.nullable),
            Column(bucket, "int16", nullable=True), Column(fine, "int32", nullable=True),
            Column(pos, "int16", nullable=True))


_HEAD: Final = {
    c.name: c for c in (
        Column("id", "uuid"), Column("box_id", "text"), Column("received_us", "int64"),
        Column("started_us", "int64"), Column("ended_us", "int64"),
        Column("channel", "text", nullable=True), Column("content_type", "text", nullable=True),
        Column("watch_s", "float"), Column("rebuffer_count", "int32"), Column("rebuffer_s", "float"),
        Column("bitrate_switches", "int32"), Column("failed", "bool"),
        Column("model", "text", nullable=True), Column("firmware", "text", nullable=True),
        Column("region", "text", nullable=True), Column("clock_shift_s", "float"),
        # The record's named fields as received, JSON.
        Column("raw", "bytes"),
    )
}
#: The ``sessions`` columns of schema 1, in its order, frozen: the first metrics' columns
#: lie among the others there. A later metric's four columns follow them, in the metric
#: table's (append-only) order, as its migration appends them; ``surveyed`` comes last.
SCHEMA1_SESSIONS: Final = (
    "id", "box_id", "received_us", "started_us", "ended_us", "channel", "content_type",
    "startup_ms", "watch_s", "rebuffer_count", "rebuffer_s", "avg_bitrate_kbps",
    "bitrate_switches", "failed", "rebuffer_ratio", "rb_bucket", "br_bucket", "su_bucket",
    "model", "firmware", "region", "clock_shift_s", "raw", "rb_fine", "br_fine", "su_fine",
    "rb_pos", "br_pos", "su_pos",
)


def _session_columns() -> tuple[Column, ...]:
    by_name = dict(_HEAD)
    later: list[Column] = []
    for m in METRICS:
        cols = metric_columns(m)
        if m.name in SCHEMA1_SESSIONS:
            by_name.update((c.name, c) for c in cols)
        else:
            later += cols
    return (*(by_name[n] for n in SCHEMA1_SESSIONS), *later, Column("surveyed", "bool", default=False))


def _survey_session_columns() -> tuple[Column, ...]:
    """The session values a survey row keeps (:mod:`.survey_session`): typed as in
    ``sessions``, null while the survey's session is not known."""
    by_name = {c.name: c for c in _session_columns()}
    return tuple(replace(by_name[n], nullable=True, default=None) for n in SESSION_VALUES)


_SEGMENT_COLUMNS = tuple(Column(c, "text") for c in SEGMENT)


def _counts(names: Sequence[str]) -> tuple[Column, ...]:
    return tuple(Column(n, "int64", default=0) for n in names)


def _aggregate(name: str, key: Sequence[str], vec: Sequence[str],
               extra_key: tuple[Column, ...] = ()) -> Table:
    # Nulls are kept as '' in the segment columns, so that the key can be a primary key.
    # Half of each PostgreSQL page left free, so that the counters' upserts can be HOT
    # updates (no new index entry when a row's new version fits on its page).
    return Table(name, (Column("lvl", "int16"), Column("day", "int32"), *_SEGMENT_COLUMNS,
                        *extra_key, *_counts(vec)), primary_key=tuple(key), derived=True,
                 pg_storage="fillfactor = 50")


def _delta(name: str, vec: Sequence[str], extra_key: tuple[Column, ...] = ()) -> Table:
    # Appended by write groups, emptied by folds: no key to keep unique. A group's counts
    # fit 32 bits (PostgreSQL then sums them as bigint, not numeric), bar the wide ones.
    return Table(DELTA[name], (Column("hour", "int32"), *_SEGMENT_COLUMNS, *extra_key,
                               *(Column(c, "int64" if c in WIDE else "int32") for c in vec)),
                 indexes=(Index(f"{DELTA[name]}_hour", ("hour",)),), derived=True)


_BIN_EXTRA: Final = (Column("metric", "int16"), Column("bin", "int32"))

TABLES: Final[tuple[Table, ...]] = (
    Table("nps_meta", (Column("key", "text"), Column("value", "text")), primary_key=("key",)),
    Table("box_tokens", (Column("token_hash", "bytes"), Column("box_id", "text"),
                         Column("issued_us", "int64"), Column("revoked", "bool", default=False)),
          primary_key=("token_hash",), indexes=(Index("box_tokens_box", ("box_id",)),)),
    # t_us is the record's time, for retention.
    Table("record_ids", (Column("id", "uuid"), Column("t_us", "int64")), primary_key=("id",),
          indexes=(Index("record_ids_t", ("t_us",)),), only="postgresql"),
    Table("sessions", _session_columns(),
          primary_key=("id",), partition=Partition("started_us"), indexes=(
        Index("sessions_id", ("id",), only="postgresql"),
        # Covering the report's edge reads (the partial days of a range): an index-only scan.
        Index("sessions_started", ("started_us",),
              include=(*(m.bucket_column for m in METRICS), "failed", "surveyed")),
        # A box's sessions. On SQLite in time order with the values the at-risk model reads
        # (collector.storage.at_risk): the window's risks are averaged per box walking
        # this index in box order, where a walk in time order would sort every session of
        # the window by box, the most of the list's time. PostgreSQL hashes its groups
        # and keeps the narrow index.
        Index("sessions_box", ("box_id",), only="postgresql"),
        Index("sessions_box_window", ("box_id", "started_us"), only="sqlite",
              include=("rebuffer_ratio", "startup_ms", "avg_bitrate_kbps", "failed")),
    )),
    Table("surveys", (
        Column("id", "uuid"), Column("box_id", "text"), Column("received_us", "int64"),
        Column("session_id", "uuid", nullable=True), Column("shown_us", "int64"),
        Column("answered_us", "int64", nullable=True), Column("outcome", "text"),
        Column("score", "int16", nullable=True), Column("reason", "text", nullable=True),
        Column("locale", "text", nullable=True), Column("model", "text", nullable=True),
        Column("firmware", "text", nullable=True), Column("region", "text", nullable=True),
        Column("clock_shift_s", "float"), Column("raw", "bytes"),
        # Schema 4: the session's values, kept on the survey row (see .survey_session).
        *_survey_session_columns(),
    ), primary_key=("id",), partition=Partition("shown_us"), indexes=(
        Index("surveys_shown", ("shown_us",)),
        Index("surveys_session", ("session_id",)),
        Index("surveys_box", ("box_id",)),
    )),
    _aggregate("agg_sessions", KEY, SESSION_VEC),
    _aggregate("agg_surveys", KEY, SURVEY_VEC),
    _aggregate("agg_bins", BIN_KEY, BIN_VEC, extra_key=_BIN_EXTRA),
    _delta("agg_sessions", SESSION_VEC),
    _delta("agg_surveys", SURVEY_VEC),
    _delta("agg_bins", BIN_VEC, extra_key=_BIN_EXTRA),
    # The alert outbox (collector.storage.outbox).
    Table("alert_outbox", (Column("id", "text"), Column("box_id", "text"),
                           Column("created_us", "int64"), Column("body", "bytes")),
          primary_key=("id",), indexes=(Index("alert_outbox_box", ("box_id",)),)),
)

TABLE: Final[dict[str, Table]] = {t.name: t for t in TABLES}


def ddl(dialect: Dialect) -> list[str]:
    """Every CREATE statement of the latest schema in ``dialect``, in order, idempotent."""
    return [stmt for t in TABLES for stmt in t.create(dialect)]


def _check_rows() -> None:
    """The row tuples are bound as they are: their fields must be the columns, in order."""
    if set(_HEAD) != set(SESSION_HEAD):
        raise AssertionError(f"the sessions' head columns {sorted(_HEAD)} are not "
                             f"SESSION_HEAD {sorted(SESSION_HEAD)}")
    sessions = TABLE["sessions"].column_names
    if (*SessionRow._fields, "surveyed") != sessions:
        raise AssertionError(f"SessionRow's fields {SessionRow._fields} are not the sessions "
                             f"table's columns {sessions} (less the last, surveyed)")
    surveys = TABLE["surveys"].column_names
    if (*SurveyRow._fields, *SESSION_VALUES) != surveys:
        raise AssertionError(f"SurveyRow's fields {SurveyRow._fields} are not the surveys "
                             f"table's columns {surveys} (less the session values at the end)")


_check_rows()
