"""The uploader: batches of finished records to ``POST /v1/batches`` (contract §3).

One request in flight, over one HTTP client for the agent's life: a
:class:`~stb_widget.http_client.Poster`, on a box the kept-alive
:class:`~stb_widget.http_client.HttpClient`, whose connect and whole-request timeouts
bound each attempt. A batch goes when its oldest record has waited ``upload_delay_s`` or
it is full (500 records or 256 KiB before gzip). Records are deleted only on a 200 whose body is the contract's answer with counts
that add up. Retries use full-jitter exponential backoff, never sooner than Retry-After;
401/403 keep everything and pause; 413 splits the batch.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

from protocol import (
    MAX_BODY_BYTES,
    MAX_RECORDS,
    BoxInfo,
    encode_batch_bodies,
    gzip_body,
)
from protocol.units import DAY_S

from .buffer import RecordStore, Stored
from .clock import Clock, wait_event
from .config import Config
from .errors import NetworkError, StoreError
from .http_client import Poster

log = logging.getLogger(__name__)

#: A batch holds at most this much record JSON before gzip.
MAX_BATCH_BYTES: Final = 256 * 1024
RETRY_STATUSES: Final = frozenset((408, 429, 500, 502, 503, 504))
#: Longest Retry-After honoured; a broken header must not silence a box for weeks.
MAX_RETRY_AFTER_S: Final = float(DAY_S)

Verdict = Literal["ok", "retry", "auth", "too_large", "client_error"]


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one upload attempt came to."""

    verdict: Verdict
    status: int | None
    retry_after: float = 0.0
    detail: str = ""


def parse_retry_after(value: str | None, now_unix: float) -> float:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); 0 if absent or bad."""
    if not value:
        return 0.0
    value = value.strip()
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, float(value)))
    except ValueError:
        pass
    # Imported only here: the email package costs ~0.8 MB resident, and an HTTP-date
    # Retry-After is rare (the collector sends seconds).
    import email.utils

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    return min(MAX_RETRY_AFTER_S, max(0.0, when.timestamp() - now_unix))


def is_ack(doc: Any, n: int) -> bool:
    """Is this the contract's answer to a batch of ``n`` records?"""
    if not isinstance(doc, dict):
        return False
    a, d, rej = doc.get("accepted"), doc.get("duplicates"), doc.get("rejected")
    if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in (a, d)):
        return False
    if not isinstance(rej, list) or not all(isinstance(r, dict) for r in rej):
        return False
    return bool(a + d + len(rej) == n)  # type: ignore[operator]


class Uploader:
    """Moves records from a :class:`~stb_widget.buffer.RecordStore` to the collector.

    ``run()`` loops until cancelled; it waits on the store's ``changed`` event (set, by
    :meth:`~stb_widget.buffer.RecordStore.wake_when`, only on the first record or on one
    that fills the batch) and on the clock only, never polls.
    """

    def __init__(self, config: Config, store: RecordStore, http: Poster,
                 clock: Clock, rng: random.Random | None = None) -> None:
        self._cfg = config.collector
        self._box_id = config.box_id
        b = config.box
        self._box = (
            BoxInfo(model=b.model or None, firmware=b.firmware or None, region=b.region or None)
            if (b.model or b.firmware or b.region) else None
        )
        self._store = store
        self._http = http
        self._clock = clock
        self._rng = rng or random.Random()
        self._url = self._cfg.url.rstrip("/") + "/v1/batches"
        self._limit = MAX_RECORDS
        self._failures = 0
        #: Counts by outcome: ``ok``, ``http_<status>``, ``network``, ``bad_ack``, records...
        self.stats: Counter[str] = Counter()

    async def run(self) -> None:
        """Upload forever (cancel to stop)."""
        jitter = self._rng.uniform(0, self._cfg.boot_jitter_s)
        if jitter > 0:
            log.info("first upload in %.1f s (boot jitter)", jitter)
            await self._clock.sleep(jitter)
        while True:
            await self._wait_due()
            try:
                await self.upload_once()
            except StoreError as exc:
                # A full or failing disk (e.g. no room to delete what was acknowledged):
                # the records stay and go again later (duplicates at the collector, counted
                # once). Dying here would leave the box mute until a restart.
                cfg = self._cfg
                delay = self._rng.uniform(
                    0, min(cfg.backoff_cap_s, cfg.backoff_base_s * 2.0 ** min(self._failures, 60)))
                self._failures += 1
                self.stats["buffer_error"] += 1
                log.error("upload paused: the buffer failed (%s); retry in %.1f s", exc, delay)
                await self._clock.sleep(delay)

    async def upload_once(self) -> Attempt | None:
        """Send one batch now, then wait as the outcome says (backoff, pause)."""
        records = await self._store.fetch(self._limit, MAX_BATCH_BYTES)
        if not records:
            return None
        result = await self._attempt(records)
        await self._after(result, len(records))
        return result

    async def _wait_due(self) -> None:
        """Return once a batch is due: full, or its oldest record ``upload_delay_s`` old.

        Woken only by what can change that answer: the first record (the store sets
        ``changed`` on it), a record that fills the batch (ditto, by :meth:`wake_when`),
        the oldest record's due time (a timer). Other records stored meanwhile do not
        wake it: they are due after the oldest. (The oldest can only go meanwhile, by
        eviction: the timer then comes early and the loop waits again. A record stored
        after the wall clock stepped back still goes within ``upload_delay_s``, as the
        timer never waits longer than that.)
        """
        store = self._store
        delay = self._cfg.upload_delay_s
        while True:
            store.changed.clear()
            if store.ready_count == 0:
                store.wake_when(1, 1)
                await store.changed.wait()
                continue
            if store.ready_count >= self._limit or store.ready_bytes >= MAX_BATCH_BYTES:
                return
            oldest = store.oldest_ready_wall_us()
            now_us = self._clock.wall().timestamp() * 1e6
            # Capped at the delay: a wall clock stepping back must not hold records longer.
            wait = delay if oldest is None else min(delay, (oldest - now_us) / 1e6 + delay)
            if wait <= 0:
                return
            store.wake_when(self._limit, MAX_BATCH_BYTES)
            await wait_event(self._clock, store.changed, wait)

    async def _after(self, result: Attempt, n: int) -> None:
        cfg = self._cfg
        if result.verdict == "ok":
            self._failures = 0
            self._limit = MAX_RECORDS
            return
        if result.verdict == "too_large" and n > 1:
            self._limit = max(1, n // 2)
            log.warning("collector answered 413 to %d records: splitting, next batch %d",
                        n, self._limit)
            return
        if result.verdict == "auth":
            self._failures = 0
            log.error(
                "UPLOADS PAUSED for %.0f s: the collector refused this box's token (HTTP %s: "
                "%s). Nothing is deleted; check collector.token for box %s.",
                cfg.auth_pause_s, result.status, result.detail, self._box_id,
            )
            await self._clock.sleep(cfg.auth_pause_s)
            return
        ceiling = min(cfg.backoff_cap_s, cfg.backoff_base_s * 2.0 ** min(self._failures, 60))
        self._failures += 1
        delay = max(self._rng.uniform(0, ceiling), result.retry_after)
        log.warning("upload of %d record(s) failed (%s%s); retry in %.1f s", n,
                    f"HTTP {result.status}" if result.status else "network",
                    f": {result.detail}" if result.detail else "", delay)
        await self._clock.sleep(delay)

    async def _attempt(self, stored: list[Stored]) -> Attempt:
        # The stored bodies go into the request as they are, not decoded and encoded
        # again. Every body in the buffer was written by the buffer itself
        # (buffer._encode: orjson.dumps(record_to_json(record))) from a Record the agent
        # built: sessions by the tracker, surveys by the presenter (ui/ipc.py checks a
        # prompt's record with decode_record before it gets here). So full validation
        # per upload would only find a fault in the agent's own code, and that is safe
        # without it: the collector checks each record, rejects a bad one alone on a 200
        # (contract section 3) and the box deletes it with the batch, logged. What must
        # not reach the request is a row that is not one JSON object (a damaged file):
        # spliced in, it would make the whole batch malformed, every time. Such a row is
        # dropped here, at the cost of one orjson.loads (no Record is built).
        bodies: list[bytes] = []
        ids: list[str] = []
        broken: list[str] = []
        for s in stored:
            try:
                doc = orjson.loads(s.body)
            except orjson.JSONDecodeError:
                doc = None
            if isinstance(doc, dict) and isinstance(doc.get("id"), str):
                bodies.append(s.body)
                ids.append(s.id)
            else:
                broken.append(s.id)
        if broken:
            # Cannot happen with records this agent wrote; never let one block the queue.
            log.error("dropping %d unreadable record(s) from the buffer: %s", len(broken), broken)
            self.stats["dropped_unreadable"] += len(broken)
            await self._store.delete(broken)
        if not bodies:
            return Attempt("ok", None)
        body = gzip_body(encode_batch_bodies(self._box_id, self._clock.wall(), self._box, bodies))
        if len(body) > MAX_BODY_BYTES:
            return Attempt("too_large", None, detail="batch over the body limit before sending")
        headers = {
            "Authorization": f"Bearer {self._cfg.token}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        }
        try:
            resp = await self._http.post(self._url, body=body, headers=headers)
        except NetworkError as exc:
            self.stats["network"] += 1
            return Attempt("retry", None, detail=type(exc).__name__ + (f" {exc}" if str(exc) else ""))
        status, text = resp.status, resp.body
        retry_after = parse_retry_after(resp.headers.get("retry-after"),
                                        self._clock.wall().timestamp())
        self.stats[f"http_{status}"] += 1
        self.stats["bytes_sent"] += len(body)
        if status == 200:
            return await self._acknowledged(text, ids)
        detail = _error_detail(text)
        if status in (401, 403):
            return Attempt("auth", status, detail=detail)
        if status == 413:
            return Attempt("too_large", status, detail=detail)
        if status in RETRY_STATUSES:
            return Attempt("retry", status, retry_after, detail)
        return Attempt("client_error", status, retry_after, detail)

    async def _acknowledged(self, text: bytes, ids: list[str]) -> Attempt:
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError:
            doc = None
        if not is_ack(doc, len(ids)):
            self.stats["bad_ack"] += 1
            return Attempt("retry", 200, detail="a 200 that is not the collector's answer "
                           "(captive portal?); nothing deleted")
        for r in doc["rejected"]:
            log.warning("collector rejected record %s: %s", r.get("id"), r.get("error"))
        self.stats["records_accepted"] += doc["accepted"]
        self.stats["records_duplicate"] += doc["duplicates"]
        self.stats["records_rejected"] += len(doc["rejected"])
        await self._store.delete(ids)
        log.info("uploaded %d record(s): %d accepted, %d duplicate, %d rejected",
                 len(ids), doc["accepted"], doc["duplicates"], len(doc["rejected"]))
        return Attempt("ok", 200)


def _error_detail(text: bytes) -> str:
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        return ""
    if isinstance(doc, dict):
        return f"{doc.get('error', '')} {doc.get('detail', '')}".strip()[:300]
    return ""
