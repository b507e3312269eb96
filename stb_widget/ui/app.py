"""The survey app: question, then (if answered) pick-list and thank-you; returns the record.

The app builds the :class:`~protocol.SurveyRecord` and hands it to a
:class:`~stb_widget.survey_port.SurveySink`: ``confirmed`` the moment a score is
confirmed (the next screen waits until it returns), ``finished`` with the final record.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.message import Message

from protocol import SurveyRecord, utcnow
from protocol.nps import category
from protocol.types import Outcome

from ..survey_port import SurveyRequest, SurveySink
from .catalog import Catalog, load_catalog
from .keys import Action, RemoteEvent
from .screens import QuestionScreen, ReasonScreen, SurveyScreen, ThanksScreen
from .theme import THEMES, choose_theme

log = logging.getLogger(__name__)

#: A remote-control input: called once, yields button presses until it ends.
RemoteSource = Callable[[], AsyncIterator[RemoteEvent]]

#: How long the thank-you stays up (seconds).
THANKS_S = 4.0


class SurveyApp(App[SurveyRecord], inherit_bindings=False):
    """Asks ``request``'s question once; the app's return value is the final record."""

    ENABLE_COMMAND_PALETTE = False
    # Big screens (a TV console at 1080p) get big cells and block digits.
    HORIZONTAL_BREAKPOINTS = [(0, "-normal"), (140, "-wide")]  # noqa: RUF012 (typed by App)
    # Ctrl+C and Ctrl+Q (a keyboard on a test bench) count as closing the question.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+c", "abandon", show=False, priority=True),
        Binding("ctrl+q", "abandon", show=False, priority=True),
    ]

    class RemoteInput(Message):
        """A press from a remote-control source (posted by its worker)."""

        def __init__(self, event: RemoteEvent) -> None:
            super().__init__()
            self.event = event

    def __init__(
        self,
        request: SurveyRequest,
        sink: SurveySink,
        *,
        theme: str | None = None,
        thanks_s: float = THANKS_S,
        remotes: Sequence[RemoteSource] = (),
        on_shown: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        env: Mapping[str, str] | None = None,
        shown_at: datetime | None = None,
    ) -> None:
        super().__init__()
        self.request = request
        self.sink = sink
        self.catalog: Catalog = load_catalog(request.locale)
        self.thanks_s = thanks_s
        self.remotes = tuple(remotes)
        self._on_shown = on_shown
        self._clock = clock
        for t in THEMES.values():
            self.register_theme(t)
        self.theme = theme or choose_theme(os.environ if env is None else env)
        #: When the question appeared: given where a splash showed it before the app
        #: started, else when the app mounts.
        self.shown_at = shown_at or utcnow()
        self._shown_given = shown_at is not None
        #: The answered record once a score is confirmed (reason still None).
        self.answered: SurveyRecord | None = None
        #: The final record once it is known.
        self.final: SurveyRecord | None = None

    def get_default_screen(self) -> QuestionScreen:
        # The question is the base screen, not pushed over an empty one: keys pressed
        # while Textual was loading (the splash was up) then reach it.
        return QuestionScreen(
            self.catalog,
            self.request.service_name,
            timeout_s=self.request.timeout_s,
            clock=self._clock,
        )

    def on_mount(self) -> None:
        if not self._shown_given:
            self.shown_at = utcnow()
        for source in self.remotes:
            self.run_worker(self._pump(source), group="remotes", exit_on_error=False)
        if self._on_shown is not None:
            self.call_after_refresh(self._on_shown)

    async def _pump(self, source: RemoteSource) -> None:
        async for event in source():
            self.post_message(self.RemoteInput(event))

    def on_survey_app_remote_input(self, message: RemoteInput) -> None:
        screen = self.screen
        if isinstance(screen, SurveyScreen):
            screen.handle(message.event)

    def _record(
        self, outcome: Outcome, score: int | None = None, answered_at: datetime | None = None
    ) -> SurveyRecord:
        return SurveyRecord(
            id=self.request.survey_id,
            kind="survey",
            session_id=self.request.session_id,
            shown_at=self.shown_at,
            answered_at=answered_at,
            outcome=outcome,
            score=score,
            # The language the viewer actually saw (an unknown locale shows English).
            locale=self.catalog.locale,
        )

    def on_question_screen_confirmed(self, message: QuestionScreen.Confirmed) -> None:
        record = self._record(outcome="answered", score=message.score, answered_at=utcnow())
        self.answered = record
        self.run_worker(self._store_then_ask_reason(record), group="sink", exit_on_error=False)

    async def _store_then_ask_reason(self, record: SurveyRecord) -> None:
        try:
            await self.sink.confirmed(record)
        except Exception:
            # Without a stored answer there is nothing to follow up; the score still stands.
            log.exception("storing the confirmed answer failed")
            self.final = record
            self.exit(record, return_code=1)
            return
        # Pushed over the question (the base screen, which cannot be switched away).
        await self.push_screen(
            ReasonScreen(self.catalog, self.request.service_name, idle_s=self.request.timeout_s)
        )

    def on_question_screen_dismissed(self, message: QuestionScreen.Dismissed) -> None:
        self._close_unanswered("dismissed")

    def on_question_screen_timed_out(self, message: QuestionScreen.TimedOut) -> None:
        self._close_unanswered("timeout")

    def _close_unanswered(self, outcome: Outcome) -> None:
        record = self._record(outcome=outcome)
        self.final = record
        self.run_worker(self._finish(record, thank=False), group="sink", exit_on_error=False)

    def on_reason_screen_closed(self, message: ReasonScreen.Closed) -> None:
        assert self.answered is not None
        record = dataclasses.replace(self.answered, reason=message.reason)
        self.final = record
        self.run_worker(self._finish(record, thank=True), group="sink", exit_on_error=False)

    async def _finish(self, record: SurveyRecord, *, thank: bool) -> None:
        try:
            await self.sink.finished(record)
        except Exception:
            log.exception("handing over the final record failed")
        if thank and record.score is not None:
            await self.switch_screen(
                ThanksScreen(
                    self.catalog,
                    self.request.service_name,
                    kind=category(record.score),
                    show_s=self.thanks_s,
                )
            )
        else:
            self.exit(record)

    def on_thanks_screen_closed(self, message: ThanksScreen.Closed) -> None:
        self.exit(self.final)

    def action_abandon(self) -> None:
        """Ctrl+C/Ctrl+Q: like Back on the current screen."""
        screen = self.screen
        if isinstance(screen, SurveyScreen):
            screen.handle(RemoteEvent(Action.BACK))
        else:
            self.exit(self.final)
