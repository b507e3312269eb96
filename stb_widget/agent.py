"""The agent: player events in, session records and questions out, uploads in the back.

Usable as a library (a simulator runs thousands in one process): inject the clock, the
record store, the HTTP client (any :class:`~stb_widget.http_client.Poster`), the
presenter factory and the random source; feed player events with :meth:`Agent.feed`;
stop with :meth:`Agent.stop`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Callable
from types import TracebackType
from typing import Any

from protocol import SurveyRecord

from .buffer import RecordStore, SqliteBuffer
from .clock import Clock, SystemClock, wait_event
from .config import Config
from .errors import StoreError
from .events import PlayerEvent
from .http_client import HttpClient, Poster
from .ids import uuid7
from .policy import SurveyPolicy
from .presenters import PresenterFactory, default_presenter_factory
from .survey_port import PresenterUnavailable, SurveyRequest
from .sync import Uploader
from .tracker import FinishedSession, SessionTracker

log = logging.getLogger(__name__)

#: The reason-code totals are logged every this many sessions (and at shutdown).
_SUMMARY_EVERY = 100


class _Sink:
    """The presenter's sink: the store, remembering what it was told."""

    def __init__(self, store: RecordStore) -> None:
        self._store = store
        self.confirmed_record: SurveyRecord | None = None
        self.finished_record: SurveyRecord | None = None

    async def confirmed(self, record: SurveyRecord) -> None:
        await self._store.confirmed(record)
        self.confirmed_record = record

    async def finished(self, record: SurveyRecord) -> None:
        await self._store.finished(record)
        self.finished_record = record


class Agent:
    """One box's agent.

    ``store`` defaults to the sqlite buffer in ``config.data_dir`` (opened by
    :meth:`start`); ``http`` to an :class:`~stb_widget.http_client.HttpClient` the agent
    owns (one kept-alive connection, the configured timeouts) and closes on stop;
    ``presenters`` to the lazy Textual presenter; ``upload=False`` runs no uploader
    (records stay buffered).
    """

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        store: RecordStore | None = None,
        http: Poster | None = None,
        presenters: PresenterFactory | None = None,
        rng: random.Random | None = None,
        upload: bool = True,
        new_id: Callable[[], str] | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self._store = store
        self._owns_store = store is None
        self._http = http
        #: The client the agent made (and so closes); None where ``http`` was given.
        self._own_http: HttpClient | None = None
        self._presenters = presenters or default_presenter_factory(config.survey)
        self._rng = rng or random.Random()
        self._upload = upload
        # ``new_id`` (optional) makes record ids: a simulator passes a seeded one so that the
        # same seed draws the same sessions for a question (the draw hashes the session id).
        self._new_id = new_id
        self.tracker = SessionTracker(self.clock, new_id)
        self.policy = SurveyPolicy(config.survey, config.box_id, self.clock)
        self.uploader: Uploader | None = None
        self._upload_task: asyncio.Task[None] | None = None
        self._question: asyncio.Task[None] | None = None
        # A session due a question waits ``survey.settle_s`` for the player to stay idle;
        # a ``play`` meanwhile sets this (the session was a zap: no question over the
        # next channel). One at a time: a session can only end after a play.
        self._zap = asyncio.Event()
        self._settling: str | None = None
        self._no_display_logged = False
        #: Sessions recorded, questions shown by outcome.
        self.counts: Counter[str] = Counter()

    @property
    def store(self) -> RecordStore:
        """The record store (after :meth:`start`)."""
        assert self._store is not None, "Agent.start() first"
        return self._store

    async def start(self) -> None:
        """Open the store and the HTTP client; start the uploader."""
        if self._store is None:
            self._store = await SqliteBuffer.open(
                self.config.db_path, self.config.buffer, self.clock
            )
        if self._upload:
            if self._http is None:
                collector = self.config.collector
                self._http = self._own_http = HttpClient(
                    timeout_s=collector.timeout_s, connect_timeout_s=collector.connect_timeout_s)
            self.uploader = Uploader(self.config, self._store, self._http, self.clock, self._rng)
            self._upload_task = asyncio.create_task(self.uploader.run(), name="uploader")

    async def feed(self, event: PlayerEvent) -> None:
        """Apply one player event; a session that ends is stored (one write) and maybe asked
        (once the player stayed idle ``survey.settle_s``)."""
        if event.kind == "play" and self._settling is not None:
            self._zap.set()
        done = self.tracker.feed(event)
        if done is not None:
            await self._ended(done)

    @property
    def question_up(self) -> bool:
        """Is a question due (waiting for the player to settle), being prepared or on screen?"""
        return self._question is not None and not self._question.done()

    async def wait_question(self) -> None:
        """Wait until the current question (if any) is over; for tests and simulators."""
        if self._question is not None:
            await asyncio.gather(self._question, return_exceptions=True)

    async def _ended(self, done: FinishedSession) -> None:
        store = self.store
        try:
            await store.add_session(done.record)
        except StoreError as exc:
            # A full or broken disk must not stop the agent (nor the player's feed).
            log.error("session %s lost: %s", done.record.id, exc)
            self.counts["sessions_lost"] += 1
            return
        self.counts["sessions"] += 1
        if self.counts["sessions"] % _SUMMARY_EVERY == 0:
            log.info("after %d sessions: asked %s; not asked %s", self.counts["sessions"],
                     {k: v for k, v in self.counts.items() if k.startswith("asked_")},
                     dict(self.policy.reasons))
        reason = self.policy.decide(done, store.cooldowns(), self.question_up)
        if reason is None:
            self._zap.clear()
            self._settling = done.record.id
            self._question = asyncio.create_task(self._settle_then_ask(done), name="question")

    async def _settle_then_ask(self, done: FinishedSession) -> None:
        settle_s = self.config.survey.settle_s
        try:
            # settle_s = 0 turns the wait off: ask at once, whatever follows.
            zapped = settle_s > 0 and await wait_event(self.clock, self._zap, settle_s)
        finally:
            self._settling = None
        if zapped:
            self.policy.count("zapped", done.record.id)
            return
        await self._ask(done)

    async def _ask(self, done: FinishedSession) -> None:
        session_id = done.record.id
        try:
            presenter = self._presenters()
        except Exception:
            log.exception("cannot load the question presenter")
            self.policy.count("presenter_error", session_id)
            return
        if presenter is None:
            self._no_display(session_id)
            return
        survey = self.config.survey
        request = SurveyRequest(
            survey_id=(self._new_id() if self._new_id is not None
                       else uuid7(int(self.clock.wall().timestamp() * 1000))),
            session_id=session_id,
            locale=survey.locale,
            service_name=survey.service_name,
            timeout_s=survey.timeout_s,
            tty=survey.tty,
        )
        sink = _Sink(self.store)
        record: SurveyRecord | None = None
        try:
            record = await presenter.present(request, sink)
        except PresenterUnavailable:
            self._no_display(session_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the question presenter failed")
            self.policy.count("presenter_error", session_id)
        finally:
            # Whatever happened, a confirmed answer must become uploadable.
            final = sink.finished_record or record or sink.confirmed_record
            if sink.finished_record is None and final is not None:
                await self._finish(final)
        if final is not None:
            self.counts[f"asked_{final.outcome}"] += 1
            log.info("question after session %s: %s", session_id, final.outcome)

    async def _finish(self, record: SurveyRecord) -> None:
        """Make a confirmed answer uploadable. Where the disk is full the answer stays
        stored as confirmed; keep trying (the question stays "up" meanwhile, so no other
        is asked) rather than leave it unsent until the next restart."""
        delay = 1.0
        while True:
            try:
                await asyncio.shield(self.store.finished(record))
                return
            except StoreError as exc:
                log.error("answer %s is stored but not yet uploadable (%s); retry in %.0f s",
                          record.id, exc, delay)
                await self.clock.sleep(delay)
                delay = min(delay * 2, 300.0)

    def _no_display(self, session_id: str) -> None:
        if not self._no_display_logged:
            log.warning("no terminal to draw the question on (survey.tty=%r): sessions due a "
                        "question are counted as no_display", self.config.survey.tty)
            self._no_display_logged = True
        self.policy.count("no_display", session_id)

    async def stop(self) -> None:
        """End the open session (not a failure), stop uploading, close what we opened."""
        if self._settling is not None:
            self.policy.count("shutdown", self._settling)
        done = self.tracker.close()
        if done is not None and self._store is not None:
            await self._store.add_session(done.record)
            self.counts["sessions"] += 1
            self.policy.count("shutdown", done.record.id)
        await self._shut_down()

    async def kill(self) -> None:
        """Die as a power cut would (for simulators): the open session is lost, the
        uploader and any question are cancelled mid-step, nothing more is written, and
        the store is closed where the agent opened it (an unfinished transaction is
        rolled back, as sqlite does after a crash).
        """
        self.tracker = SessionTracker(self.clock, self._new_id)
        await self._shut_down()

    async def _shut_down(self) -> None:
        """Cancel the question and the uploader, then close what the agent opened."""
        for task in (self._question, self._upload_task):
            if task is not None and not task.done():
                task.cancel()
        for task in (self._question, self._upload_task):
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)
        self._upload_task = None
        if self._own_http is not None:
            await self._own_http.close()
            self._own_http = self._http = None
        if self._owns_store and self._store is not None:
            await self._store.close()
            self._store = None

    def stats(self) -> dict[str, Any]:
        """Counters for logs and tests: sessions, reasons not asked, evictions, uploads."""
        return {
            "counts": dict(self.counts),
            "not_asked": dict(self.policy.reasons),
            "evictions": dict(self._store.evictions) if self._store else {},
            "uploads": dict(self.uploader.stats) if self.uploader else {},
        }

    async def __aenter__(self) -> Agent:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
