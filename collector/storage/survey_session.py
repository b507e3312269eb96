"""The session values kept on each survey row (schema 4), and the SQL that keeps them.

``GET /v1/impact`` (and the at-risk list's training read) need, for every answered survey,
a few values of the session it followed. Joining each survey to its session on every
request costs a look-up per survey (SQLite) or a scan of every session (PostgreSQL), so a
survey row keeps them itself, in columns named as in ``sessions``
(:data:`SESSION_VALUES`). They are null while the survey's session is not stored (it names
none, or it has not arrived, or it was deleted); as ``rebuffer_ratio`` is never null on a
session, ``surveys.rebuffer_ratio IS NOT NULL`` means "the session is known".

They are written when a survey and its session meet, in either order (see
:func:`~collector.storage.store_logic.store_new`), cleared when the session is deleted,
and recomputed from the sessions by a full rebuild and by migration 4.
"""

from __future__ import annotations

from typing import Final

#: The session columns a survey row keeps, under the same names: the report's filters
#: that reach a survey through its session (channel, content type), the estimator's QoS
#: values and the response-adjusted NPS's stratum (the rebuffer bucket); from schema 6
#: the video height too, so that every metric of the metric table is on the survey row
#: (the dashboard's response rate by bucket reads the survey rows alone).
SESSION_VALUES: Final = ("channel", "content_type", "rebuffer_ratio", "startup_ms",
                         "avg_bitrate_kbps", "failed", "rb_bucket", "video_height")
#: Null on a survey row means its session is not known (never null on a session).
KNOWN: Final = "rebuffer_ratio"


def _copied(columns: tuple[str, ...]) -> str:
    return ", ".join(f"{c} = s.{c}" for c in columns)


def _cleared(columns: tuple[str, ...]) -> str:
    return ", ".join(f"{c} = NULL" for c in columns)


def fill_sql(table: str, cond: str, sessions: str = "sessions",
             columns: tuple[str, ...] = SESSION_VALUES) -> str:
    """``UPDATE`` setting the session values of the rows of ``table`` (``surveys`` or a
    table of new surveys) that meet ``cond`` from their session in ``sessions`` (a table
    or a parenthesised query, aliased ``s``). The same text in SQLite (3.33 and later) and
    PostgreSQL."""
    return (f"UPDATE {table} SET {_copied(columns)} FROM {sessions} s "
            f"WHERE s.id = {table}.session_id AND {cond}")


def clear_sql(cond: str, columns: tuple[str, ...] = SESSION_VALUES) -> str:
    """``UPDATE surveys`` clearing the session values of the rows that meet ``cond``."""
    return f"UPDATE surveys SET {_cleared(columns)} WHERE {cond}"


def refill_all_sql(columns: tuple[str, ...] = SESSION_VALUES) -> list[str]:
    """Recompute every survey row's session values from the sessions stored: clear those
    whose session is gone, then copy from the session where there is one."""
    return [
        clear_sql(f"{KNOWN} IS NOT NULL AND NOT EXISTS "
                  "(SELECT 1 FROM sessions s WHERE s.id = surveys.session_id)", columns),
        fill_sql("surveys", "true", columns=columns),
    ]
