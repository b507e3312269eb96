"""The three screens: the question, the follow-up pick-list, and the thank-you.

Every input source ends in :meth:`SurveyScreen.handle` with a
:class:`~stb_widget.ui.keys.RemoteEvent`; the keyboard gets there through the class-level
``BINDINGS`` built from :data:`~stb_widget.ui.keys.KEYBOARD`. Screens report upwards with
messages; the app decides what happens next.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar, Final

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Center, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Static

from protocol import REASONS
from protocol.nps import Category
from protocol.types import Reason

from .catalog import Catalog
from .keys import KEYBOARD, Action, RemoteEvent, accept
from .widgets import Headline, ReasonList, ScorePointer, ScoreScale

#: ``1`` then ``0`` within this many seconds is 10 (the contract says "within a second").
TEN_WINDOW_S: Final = 1.0

class SurveyScreen(Screen[None]):
    """Base of the survey screens: maps keys to actions and runs the idle timer."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(key, f"press('{action.value}')", show=False) for key, action in KEYBOARD.items()
    ]

    DEFAULT_CSS: ClassVar[str] = """
    SurveyScreen {
        align: center middle;
        background: $stb-bg;
        color: $stb-fg;
    }
    SurveyScreen .card {
        width: auto;
        max-width: 100%;
        height: auto;
        padding: 0 1;
    }
    SurveyScreen .title {
        width: 76;
        text-style: bold;
        color: $stb-fg;
        margin-bottom: 1;
    }
    SurveyScreen .hint {
        width: 76;
        color: $stb-muted;
        margin-top: 1;
    }
    SurveyScreen .warn {
        width: 76;
        height: 1;
        color: $stb-warn;
        text-style: bold;
    }
    SurveyScreen.-wide .title, SurveyScreen.-wide .hint, SurveyScreen.-wide .warn {
        width: 131;
    }
    """

    def __init__(self, catalog: Catalog, service: str, *, idle_s: float | None) -> None:
        super().__init__()
        self.catalog = catalog
        self.service = service
        self.idle_s = idle_s
        self._idle: Timer | None = None
        #: Set once the screen has reported its outcome; later input is ignored.
        self.closed = False
        # Presses that came before the screen was built (keys typed while the splash was
        # up); replayed in order once it is.
        self._early: list[RemoteEvent] | None = []

    def on_mount(self) -> None:
        if self.idle_s is not None:
            self._idle = self.set_timer(self.idle_s, self._idle_expired)
        self.call_after_refresh(self._replay_early)

    def _replay_early(self) -> None:
        early, self._early = self._early or [], None
        for event in early:
            self.handle(event)

    def on_key(self, event: events.Key) -> None:
        # Any key counts as the viewer being there, mapped or not.
        self._touch()

    def _touch(self) -> None:
        if self._idle is not None:
            self._idle.reset()

    def _idle_expired(self) -> None:
        if not self.closed:
            self.closed = True
            self.when_idle()

    def when_idle(self) -> None:
        """Called once when no key was pressed for ``idle_s``."""

    def action_press(self, name: str) -> None:
        """A keyboard binding fired."""
        self.handle(RemoteEvent(Action(name)))

    def handle(self, event: RemoteEvent) -> None:
        """One input event from any source (keyboard, LIRC, evdev)."""
        if self.closed or not accept(event):
            return
        if self._early is not None:
            self._early.append(event)
            return
        self._touch()
        self.on_action(event.action)

    def on_action(self, action: Action) -> None:
        """What an accepted action does on this screen."""


class QuestionScreen(SurveyScreen):
    """The 0-10 question. Reports :class:`Confirmed`, :class:`Dismissed` or :class:`TimedOut`."""

    class Confirmed(Message):
        """The viewer confirmed ``score``."""

        def __init__(self, score: int) -> None:
            super().__init__()
            self.score = score

    class Dismissed(Message):
        """The viewer closed the question (Back)."""

    class TimedOut(Message):
        """No key for the whole timeout."""

    def __init__(
        self,
        catalog: Catalog,
        service: str,
        *,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(catalog, service, idle_s=timeout_s)
        self._clock = clock
        #: When a ``1`` was typed, for ``1`` ``0`` = 10.
        self._one_at: float | None = None

    def compose(self) -> ComposeResult:
        t = self.catalog.text
        with Center(), Vertical(classes="card"):
            yield Headline(t("question", service=self.service), id="question")
            yield ScoreScale(id="scale")
            yield ScorePointer(id="pointer")
            with Vertical(id="ends"):
                yield Static(t("low_label"), id="low", markup=False)
                yield Static(t("high_label"), id="high", markup=False)
            yield Static(t("question_hint"), classes="hint", markup=False)
            yield Static("", id="warn", classes="warn", markup=False)

    DEFAULT_CSS: ClassVar[str] = """
    QuestionScreen #ends {
        width: 76;
        height: 1;
        layout: horizontal;
        color: $stb-fg;
    }
    QuestionScreen.-wide #ends { width: 131; }
    QuestionScreen #low { width: 1fr; }
    QuestionScreen #high { width: 1fr; text-align: right; }
    """

    @property
    def value(self) -> int | None:
        """The chosen score, None while nothing is chosen."""
        return self.query_one(ScoreScale).value

    def _choose(self, score: int) -> None:
        self.query_one(ScoreScale).value = score
        self.query_one(ScorePointer).value = score
        self.query_one("#warn", Static).update("")

    def on_action(self, action: Action) -> None:
        value = self.value
        digit = action.digit
        if digit is not None:
            now = self._clock()
            if digit == 0 and self._one_at is not None and now - self._one_at <= TEN_WINDOW_S:
                self._choose(10)
                self._one_at = None
            else:
                self._choose(digit)
                self._one_at = now if digit == 1 else None
            return
        self._one_at = None
        if action is Action.RIGHT:
            # From nothing, Right enters the scale at its left end and Left at its right
            # end, as if the cursor came in from that side.
            self._choose(0 if value is None else min(value + 1, 10))
        elif action is Action.LEFT:
            self._choose(10 if value is None else max(value - 1, 0))
        elif action is Action.CONFIRM:
            if value is None:
                self.query_one("#warn", Static).update(self.catalog.text("need_score"))
                return
            self.closed = True
            self.post_message(self.Confirmed(value))
        elif action is Action.BACK:
            self.closed = True
            self.post_message(self.Dismissed())

    def when_idle(self) -> None:
        self.post_message(self.TimedOut())


class ReasonScreen(SurveyScreen):
    """The follow-up pick-list. Reports :class:`Closed` with a reason, or None if skipped."""

    class Closed(Message):
        """The pick-list closed: ``reason`` picked, or None (Back, or no key for a while)."""

        def __init__(self, reason: Reason | None) -> None:
            super().__init__()
            self.reason = reason

    def compose(self) -> ComposeResult:
        t = self.catalog.text
        with Center(), Vertical(classes="card"):
            yield Headline(t("reason_title"), id="reason-title")
            yield ReasonList([t(f"reason.{r}") for r in REASONS],
                             focus_label=f" {t('reason_focus')} ", id="reasons")
            yield Static(t("reason_hint"), classes="hint", markup=False)
            yield Static("", id="warn", classes="warn", markup=False)

    @property
    def index(self) -> int | None:
        """The highlighted option, None while nothing is chosen."""
        return self.query_one(ReasonList).index

    def on_action(self, action: Action) -> None:
        reasons = self.query_one(ReasonList)
        last = len(REASONS) - 1
        index = reasons.index
        if action is Action.DOWN:
            reasons.index = 0 if index is None else min(index + 1, last)
        elif action is Action.UP:
            reasons.index = last if index is None else max(index - 1, 0)
        elif action is Action.CONFIRM:
            if index is None:
                self.query_one("#warn", Static).update(self.catalog.text("need_reason"))
                return
            self.closed = True
            self.post_message(self.Closed(REASONS[index]))
        elif action is Action.BACK:
            self.closed = True
            self.post_message(self.Closed(None))

    def when_idle(self) -> None:
        # A viewer who walked away skipped the follow-up; the score stands.
        self.post_message(self.Closed(None))


class ThanksScreen(SurveyScreen):
    """A short thank-you fitting the score; closes itself after ``idle_s`` or on OK/Back."""

    class Closed(Message):
        """The thank-you is done."""

    DEFAULT_CSS: ClassVar[str] = """
    ThanksScreen .title {
        border: solid $stb-accent;
        padding: 1 2;
        text-align: center;
    }
    """

    def __init__(self, catalog: Catalog, service: str, *, kind: Category, show_s: float) -> None:
        super().__init__(catalog, service, idle_s=show_s)
        self.kind = kind

    def compose(self) -> ComposeResult:
        t = self.catalog.text
        with Center(), Vertical(classes="card"):
            yield Static(
                t(f"thanks_{self.kind}", service=self.service),
                id="thanks",
                classes="title",
                markup=False,
            )
            yield Static(t("thanks_hint"), classes="hint", markup=False)

    def on_action(self, action: Action) -> None:
        if action in (Action.CONFIRM, Action.BACK):
            self.closed = True
            self.post_message(self.Closed())

    def when_idle(self) -> None:
        self.post_message(self.Closed())
