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
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from yarl import URL

from ..model import Filters, Row, SessionRow, SurveyRow
from ..storage import Storage
from .analysis import iso_us
from .metrics import Metrics

log = logging.getLogger("collector.webhook")

HOUR_US = 3600 * 1_000_000


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret."""
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one attempt."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


@dataclass(frozen=True, slots=True)
class Message:
    """One alert: its stable id and JSON body."""

    id: str
    body: bytes


class Alerter:
    """Turns newly stored detractor answers into webhook deliveries."""

    def __init__(
        self, *, http: aiohttp.ClientSession, url: str, secret: str, mode: str, threshold: int,
        store: Storage, metrics: Metrics, workers: int = 4,
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

    def start(self) -> None:
        """Start the delivery workers."""
        for i in range(self._n_workers):
            self._spawn(self._worker(), f"webhook-{i}")

    async def stop(self) -> None:
        """Stop delivering; alerts still queued are dropped (and logged)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if not self._queue.empty():
            log.warning("webhook alerts dropped at shutdown", extra={"count": self._queue.qsize()})

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
            if new and isinstance(r, SurveyRow) and r.outcome == "answered"
            and r.score is not None and r.score <= 6
        ]
        if not detractors:
            return
        if self._mode == "detractor":
            sessions = {r.id: r for r in rows if isinstance(r, SessionRow)}
            for r in detractors:
                session = sessions.get(r.session_id) if r.session_id else None
                self._enqueue(self._detractor_message(r, session))
        else:
            # One checker at a time: a burst of uploads adds hours to its set rather
            # than starting a query per upload.
            self._pending_hours.update(r.shown_us - r.shown_us % HOUR_US for r in detractors)
            if not self._checking:
                self._checking = True
                self._spawn(self._check_pending(), "webhook-threshold")

    def _enqueue(self, msg: Message) -> None:
        try:
            self._queue.put_nowait(msg)
        except asyncio.QueueFull:
            self._metrics.alerts["dropped"] += 1
            log.error("webhook queue full; alert dropped", extra={"webhook_id": msg.id})

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
            count = sum(1 for f in facts if f.outcome == "answered" and f.score is not None
                        and f.score <= 6)
            if count < self._threshold:
                continue
            msg_id = f"msg_threshold_{hour // 1_000_000}"
            # Once per hour across every instance on this store: the first to record
            # the hour in nps_meta sends; the others see its mark and stay quiet.
            mark = f"{msg_id}:{random.getrandbits(64):016x}"
            if await self._store.set_meta_once(f"webhook_threshold:{hour}", mark) != mark:
                continue
            body = {
                "type": "nps.detractor_threshold",
                "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "data": {"hour_from": iso_us(hour), "hour_to": iso_us(hour + HOUR_US),
                         "detractors": count, "threshold": self._threshold},
            }
            self._enqueue(Message(msg_id, orjson.dumps(body)))

    # -- delivery -------------------------------------------------------------------------------
    async def _worker(self) -> None:
        while True:
            msg = await self._queue.get()
            try:
                await self.deliver(msg)
            except Exception:
                log.exception("webhook delivery failed unexpectedly", extra={"webhook_id": msg.id})
            finally:
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
                async with self._http.post(self._url, data=msg.body, headers=headers) as resp:
                    await resp.read()
                    if 200 <= resp.status < 300:
                        self._metrics.alerts["delivered"] += 1
                        return True
                    error = f"HTTP {resp.status}"
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
        """Wait until every queued alert is delivered or given up (for tests)."""
        await self._queue.join()
