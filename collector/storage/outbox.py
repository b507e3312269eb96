"""The alert outbox: alerts kept in the store, in the transaction that stores the upload
raising them, until a receiver has taken them.

An alert held only in memory was lost when the collector died between the commit and
the delivery, and the box's resent batch (all duplicates by then) raised nothing again.
Kept in the upload's own transaction, an alert exists exactly when its records do: a
crash before the commit loses both (the box resends, the records are new, the alert is
raised), a crash after it keeps both (the alert is sent after the restart). The
dashboard's alerter reads the outbox, delivers, and deletes an alert only after a 2xx:
at least once (receivers deduplicate on ``webhook-id``, which is the alert's id).

Threshold alerts (one per hour) go in with the hour's mark in ``nps_meta``, in one
transaction (:meth:`~collector.storage.base.Storage.outbox_put_once`). One box cannot
fill the outbox: at most ``OutboxPolicy.per_box`` of its alerts wait at
once; the rest are dropped and counted (``nps_webhook_deliveries_total{result="dropped"}``).

The table is declared with the others in :mod:`collector.storage.schema`; both stores
call :func:`write_sqlite` / :func:`write_postgres` inside their write transaction.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import TokenRefusedError
from ..model import Row

if TYPE_CHECKING:
    import asyncpg

    from .group_commit import Upload

log = logging.getLogger("collector.webhook")


class OutboxAlert(NamedTuple):
    """One alert waiting for delivery: its id (the ``webhook-id``), box and JSON body."""

    id: str
    box_id: str
    body: bytes


#: Turns one upload's rows and, per row, whether it was stored as new into its alerts.
#: Runs inside the write transaction (on SQLite's writer thread): it must be quick and
#: touch nothing but its arguments.
AlertRule = Callable[[Sequence[Row], Sequence[bool]], list[OutboxAlert]]


@dataclass(frozen=True, slots=True)
class OutboxPolicy:
    """What the store keeps in its outbox: set on the store before the first upload."""

    rule: AlertRule
    #: The most alerts of one box waiting at once.
    per_box: int
    #: Told, on the event loop after the commit, how many alerts the cap dropped.
    dropped: Callable[[int], None]


#: The oldest pending alerts first (placeholders differ: ``?`` or ``$1``).
PENDING_SQL = "SELECT id, box_id, body FROM alert_outbox ORDER BY created_us, id LIMIT {p}"
#: One alert in; ``{conflict}``/``{tail}``: each database's way to keep an id held.
OUTBOX_INSERT = ("INSERT {conflict} INTO alert_outbox (id, box_id, created_us, body) "
                 "VALUES ({p}){tail}")


def raised(policy: OutboxPolicy | None, uploads: Sequence[Upload],
           results: Sequence[list[bool] | TokenRefusedError]) -> list[OutboxAlert]:
    """The alerts a group's stored uploads raise (refused uploads raise none)."""
    if policy is None:
        return []
    out: list[OutboxAlert] = []
    for u, res in zip(uploads, results, strict=True):
        if not isinstance(res, TokenRefusedError) and any(res):
            try:
                out.extend(policy.rule(u.rows, res))
            except Exception:
                # Never fail the group commit over an alert: the records of every upload
                # in it matter more than one upload's alerts, which are lost (and logged).
                log.exception("alert rule failed; this upload's alerts are not raised",
                              extra={"box_id": u.auth.box_id if u.auth else None})
    return out


def _capped(policy: OutboxPolicy, alerts: list[OutboxAlert],
            pending: dict[str, int]) -> tuple[list[tuple[str, str, int, bytes]], int]:
    """The alerts within each box's cap, as rows to insert, and how many were dropped."""
    now_us = time.time_ns() // 1000
    rows: list[tuple[str, str, int, bytes]] = []
    seen: set[str] = set()
    dropped = 0
    for a in alerts:
        if a.id in seen:
            continue
        seen.add(a.id)
        if pending.get(a.box_id, 0) >= policy.per_box:
            dropped += 1
            continue
        pending[a.box_id] = pending.get(a.box_id, 0) + 1
        rows.append((a.id, a.box_id, now_us, a.body))
    return rows, dropped


def write_sqlite(db: sqlite3.Connection, policy: OutboxPolicy | None, uploads: Sequence[Upload],
                 results: Sequence[list[bool] | TokenRefusedError]) -> int:
    """Keep a group's alerts, inside the caller's transaction; answer how many the per-box
    cap dropped."""
    alerts = raised(policy, uploads, results)
    if not alerts or policy is None:
        return 0
    boxes = sorted({a.box_id for a in alerts})
    pending: dict[str, int] = {}
    for i in range(0, len(boxes), 500):
        chunk = boxes[i:i + 500]
        pending.update(db.execute(
            "SELECT box_id, count(*) FROM alert_outbox WHERE box_id IN "
            f"({','.join('?' * len(chunk))}) GROUP BY box_id", chunk).fetchall())
    rows, dropped = _capped(policy, alerts, pending)
    db.executemany(OUTBOX_INSERT.format(p="?, ?, ?, ?", conflict="OR IGNORE", tail=""), rows)
    return dropped


async def write_postgres(conn: asyncpg.Connection, policy: OutboxPolicy | None,
                         uploads: Sequence[Upload],
                         results: Sequence[list[bool] | TokenRefusedError]) -> int:
    """Keep a group's alerts, inside the caller's transaction; answer how many the per-box
    cap dropped."""
    alerts = raised(policy, uploads, results)
    if not alerts or policy is None:
        return 0
    boxes = sorted({a.box_id for a in alerts})
    pending: dict[str, int] = {str(r[0]): int(r[1]) for r in await conn.fetch(
        "SELECT box_id, count(*) FROM alert_outbox WHERE box_id = ANY($1::text[]) GROUP BY box_id",
        boxes)}
    rows, dropped = _capped(policy, alerts, pending)
    if rows:
        await conn.executemany(OUTBOX_INSERT.format(
            p="$1, $2, $3, $4", conflict="", tail=" ON CONFLICT (id) DO NOTHING"), rows)
    return dropped


def pending_rows(rows: Sequence[Any]) -> list[OutboxAlert]:
    """Rows of :data:`PENDING_SQL` as alerts."""
    return [OutboxAlert(str(r[0]), str(r[1]), bytes(r[2])) for r in rows]
