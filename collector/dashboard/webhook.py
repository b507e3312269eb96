"""Detractor alerts: signed per the Standard Webhooks specification, sent in the
background with retries and exponential backoff.

The signature is ``v1,<base64 HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.<body>">``
keyed with the base64-decoded part of the ``whsec_`` secret. ``webhook-id`` stays the
same across retries, so a receiver can drop repeats; the timestamp and signature are
made afresh for each attempt. The secret never reaches a log line.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from yarl import URL

from protocol.nps import is_detractor
from protocol.units import HOUR_US, SECOND_US

from ..model import Filters, Row, SessionRow, SurveyRow
from ..storage import Storage
from ..storage.outbox import OutboxAlert, OutboxPolicy
from .analysis import iso_us
from .metrics import Metrics

log = logging.getLogger("collector.webhook")

def _detractor_answer(outcome: str, score: int | None) -> bool:
    """Whether a survey is an answer from a detractor: what every alert counts."""
    return outcome == "answered" and score is not None and is_detractor(score)


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret."""
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one attempt."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


@dataclass(frozen=True, slots=True)
class Message:
    """One alert: its stable id and JSON body; ``outbox``: kept in the store's outbox
    (deleted there once delivered)."""

    id: str
    body: bytes
    outbox: bool = False


class Alerter:
    """Turns newly stored detractor answers into webhook deliveries."""

    def __init__(
        self, *, http: aiohttp.ClientSession, url: str, secret: str, mode: str, threshold: int,
        store: Storage, metrics: Metrics, workers: int = 4, per_box_pending: int = 100,
    ) -> None:
        self._http = http
        self._url = url
        self._key = secret_key(secret)
        self._mode = mode
        self._threshold = threshold
        self._store = store
        self._metrics = metrics
        self._queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=10_000)
        self._n_workers = workers
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending_hours: set[int] = set()
        self._checking = False
        #: Retries: base delay, doubled each attempt (with jitter), capped; then give up.
        self.base_delay_s = 1.0
        self.max_delay_s = 300.0
        self.max_attempts = 8
        # Only the scheme, host and path: a URL may carry a token in its query.
        self._log_url = str(URL(url).with_query(None).with_user(None).with_fragment(None))
        #: Every alert goes through the store's outbox (see ``collector.storage.outbox``):
        #: detractor alerts written by the store with the upload, threshold alerts with
        #: the hour's mark; this process delivers and deletes them.
        if mode == "detractor":
            store.outbox = OutboxPolicy(self._detractor_alerts, per_box_pending,
                                        self._count_dropped)
        self._wake = asyncio.Event()
        #: Outbox alerts queued or being delivered, and those given up for now (retried
        #: from the outbox after ``max_delay_s``).
        self._inflight: set[str] = set()
        self._parked: dict[str, float] = {}
        #: Alerts delivered lately: a read of the outbox that began before one was deleted
        #: still lists it, and must not send it again.
        self._done: deque[str] = deque(maxlen=10_000)
        #: How often the outbox is read again without a new upload (alerts parked, or
        #: written by another instance).
        self.outbox_poll_s = 5.0

    def start(self) -> None:
        """Start the delivery workers, and the outbox reader (which first sends whatever
        an earlier run left pending)."""
        for i in range(self._n_workers):
            self._spawn(self._worker(), f"webhook-{i}")
        self._spawn(self._read_outbox(), "webhook-outbox")

    async def stop(self) -> None:
        """Stop delivering; outbox alerts stay in the store for the next start, other
        alerts still queued are dropped (and logged)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        lost = sum(1 for m in self._drain_queue() if not m.outbox)
        if lost:
            log.warning("webhook alerts dropped at shutdown", extra={"count": lost})

    def _drain_queue(self) -> list[Message]:
        out = []
        while not self._queue.empty():
            out.append(self._queue.get_nowait())
        return out

    def _count_dropped(self, n: int) -> None:
        self._metrics.alerts["dropped"] += n
        log.error("webhook alerts dropped: a box is over its pending alerts",
                  extra={"count": n})

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- from uploads to messages ---------------------------------------------------------------
    def on_ingest(self, rows: Sequence[Row], fresh: Sequence[bool]) -> None:
        """Called after an upload is stored: new detractor answers raise alerts.

        Only rows stored as new count, so a batch sent again alerts nobody twice."""
        detractors = [
            r for r, new in zip(rows, fresh, strict=True)
            if new and isinstance(r, SurveyRow) and _detractor_answer(r.outcome, r.score)
        ]
        if not detractors:
            return
        if self._mode == "detractor":
            self._wake.set()  # the store holds them already: go and read them
        else:
            # One checker at a time: a burst of uploads adds hours to its set rather
            # than starting a query per upload.
            self._pending_hours.update(r.shown_us - r.shown_us % HOUR_US for r in detractors)
            if not self._checking:
                self._checking = True
                self._spawn(self._check_pending(), "webhook-threshold")

    @classmethod
    def _detractor_alerts(cls, rows: Sequence[Row], fresh: Sequence[bool]) -> list[OutboxAlert]:
        """The outbox rule: one alert per detractor answer stored as new (so a batch sent
        again alerts nobody twice). Runs in the store's write transaction."""
        sessions: dict[str, SessionRow] | None = None
        out: list[OutboxAlert] = []
        for r, new in zip(rows, fresh, strict=True):
            if new and isinstance(r, SurveyRow) and _detractor_answer(r.outcome, r.score):
                if sessions is None:
                    sessions = {s.id: s for s in rows if isinstance(s, SessionRow)}
                msg = cls._detractor_message(r, sessions.get(r.session_id) if r.session_id else None)
                out.append(OutboxAlert(msg.id, r.box_id, msg.body))
        return out

    async def _read_outbox(self) -> None:
        """Feed the workers from the store's outbox: at start (what an earlier run left),
        after each upload that raised an alert, and every ``outbox_poll_s``."""
        while True:
            self._wake.clear()
            try:
                await self._queue_pending()
            except Exception:
                log.exception("webhook outbox could not be read; will retry")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.outbox_poll_s)

    async def _queue_pending(self) -> None:
        now = time.monotonic()
        self._parked = {k: t for k, t in self._parked.items() if t > now}
        room = self._queue.maxsize - self._queue.qsize()
        if room <= 0:
            return
        skip = len(self._inflight) + len(self._parked)
        pending = await self._store.outbox_pending(room + skip)
        done = set(self._done)
        for alert in pending:
            if alert.id in self._inflight or alert.id in self._parked or alert.id in done:
                continue
            if self._queue.full():
                break
            self._inflight.add(alert.id)
            self._queue.put_nowait(Message(alert.id, alert.body, outbox=True))

    @staticmethod
    def _detractor_message(r: SurveyRow, session: SessionRow | None) -> Message:
        body: dict[str, Any] = {
            "type": "nps.detractor",
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "data": {
                "survey_id": r.id, "box_id": r.box_id, "session_id": r.session_id,
                "score": r.score, "reason": r.reason, "shown_at": iso_us(r.shown_us),
                "region": r.region, "model": r.model, "firmware": r.firmware,
                # The session's quality where it came in the same upload (it usually
                # does: a box uploads a survey with the session it followed).
                "session": None if session is None else {
                    "channel": session.channel, "content_type": session.content_type,
                    "started_at": iso_us(session.started_us), "startup_ms": session.startup_ms,
                    "watch_s": session.watch_s, "rebuffer_count": session.rebuffer_count,
                    "rebuffer_ratio": session.rebuffer_ratio,
                    "avg_bitrate_kbps": session.avg_bitrate_kbps, "failed": session.failed,
                },
            },
        }
        return Message("msg_" + r.id.replace("-", "").lower(), orjson.dumps(body))

    async def _check_pending(self) -> None:
        try:
            while self._pending_hours:
                hours = sorted(self._pending_hours)
                self._pending_hours.clear()
                await self._check_thresholds(hours)
        except Exception:
            log.exception("webhook threshold check failed")
        finally:
            self._checking = False

    async def _check_thresholds(self, hours: list[int]) -> None:
        for hour in hours:
            facts = await self._store.survey_facts(Filters(from_us=hour, to_us=hour + HOUR_US))
            count = sum(1 for f in facts if _detractor_answer(f.outcome, f.score))
            if count < self._threshold:
                continue
            msg_id = f"msg_threshold_{hour // SECOND_US}"
            body = {
                "type": "nps.detractor_threshold",
                "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "data": {"hour_from": iso_us(hour), "hour_to": iso_us(hour + HOUR_US),
                         "detractors": count, "threshold": self._threshold},
            }
            # Once per hour across every instance on this store: the hour's mark in
            # nps_meta and the alert in the outbox are written in one transaction, by
            # the first instance to get there; the others see the mark and stay quiet.
            if await self._store.outbox_put_once(
                    f"webhook_threshold:{hour}", OutboxAlert(msg_id, "", orjson.dumps(body))):
                self._wake.set()

    # -- delivery -------------------------------------------------------------------------------
    async def _worker(self) -> None:
        while True:
            msg = await self._queue.get()
            try:
                delivered = await self.deliver(msg)
                if msg.outbox:
                    if delivered:
                        self._done.append(msg.id)
                        try:
                            await self._store.outbox_delete(msg.id)
                        except Exception:
                            self._done.remove(msg.id)  # still in the outbox: send it again
                            raise
                    else:  # kept in the outbox: tried again later, never given up for good
                        self._parked[msg.id] = time.monotonic() + self.max_delay_s
            except Exception:
                log.exception("webhook delivery failed unexpectedly", extra={"webhook_id": msg.id})
            finally:
                self._inflight.discard(msg.id)
                self._queue.task_done()

    async def deliver(self, msg: Message) -> bool:
        """Send one message, retrying with exponential backoff; answer whether it landed."""
        for attempt in range(1, self.max_attempts + 1):
            ts = int(time.time())
            headers = {
                "content-type": "application/json",
                "webhook-id": msg.id,
                "webhook-timestamp": str(ts),
                "webhook-signature": sign(self._key, msg.id, ts, msg.body),
            }
            error: str
            try:
                # Never follow a redirect: a 301/302/303 would turn the signed POST into a
                # GET that answers 200 (the alert counted as delivered, and lost), and a
                # 307/308 would send the signed alert to whatever host Location names.
                # A redirect is a failed attempt, retried like any other.
                async with self._http.post(self._url, data=msg.body, headers=headers,
                                           allow_redirects=False) as resp:
                    await resp.read()
                    if 200 <= resp.status < 300:
                        self._metrics.alerts["delivered"] += 1
                        return True
                    error = f"HTTP {resp.status}"
                    if 300 <= resp.status < 400:
                        error += " (redirect, not followed)"
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = type(exc).__name__
            self._metrics.alerts["retried" if attempt < self.max_attempts else "failed"] += 1
            if attempt == self.max_attempts:
                log.error("webhook gave up", extra={"webhook_id": msg.id, "url": self._log_url,
                                                   "attempts": attempt, "error": error})
                return False
            # Full jitter keeps many instances from retrying in step.
            delay = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
            delay = delay / 2 + random.uniform(0, delay / 2)
            log.warning("webhook attempt failed; retrying", extra={
                "webhook_id": msg.id, "url": self._log_url, "attempt": attempt,
                "error": error, "retry_in_s": round(delay, 3)})
            await asyncio.sleep(delay)
        return False  # pragma: no cover

    async def drain(self) -> None:
        """Wait until every queued alert, and every alert in the outbox, is delivered or
        given up for now (for tests)."""
        while True:
            await self._queue.join()
            pending = await self._store.outbox_pending(self._queue.maxsize)
            if self._queue.empty() and all(a.id in self._parked for a in pending):
                return
            self._wake.set()
            await asyncio.sleep(0.01)
