"""Every key path of the question, the pick-list and the thank-you, driven with Pilot."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from textual.pilot import Pilot

from stb_widget.ui.app import SurveyApp
from stb_widget.ui.screens import QuestionScreen, ReasonScreen, ThanksScreen
from stb_widget.ui.widgets import Headline, ReasonList, ScoreScale

from .conftest import SESSION_ID, SURVEY_ID, RecordingSink, make_app


def score(app: SurveyApp) -> int | None:
    return app.screen.query_one(ScoreScale).value


async def settle(pilot: Pilot[Any]) -> None:
    # Workers (the sink) and screen switches take a few turns of the loop.
    for _ in range(3):
        await pilot.pause()


async def test_nothing_is_chosen_at_first() -> None:
    app = make_app()
    async with app.run_test() as pilot:
        await pilot.pause()
        assert isinstance(app.screen, QuestionScreen)
        assert score(app) is None
        assert not app.screen.query(".-selected")


async def test_digit_keys_choose_that_score() -> None:
    app = make_app()
    async with app.run_test() as pilot:
        for digit in "3957":
            await pilot.press(digit)
            assert score(app) == int(digit)
        await pilot.press("0")
        assert score(app) == 0


async def test_one_then_zero_within_a_second_is_ten() -> None:
    now = [100.0]
    app = make_app(clock=lambda: now[0])  # a clock the test moves, however slow the machine
    async with app.run_test() as pilot:
        await pilot.press("1")
        assert score(app) == 1
        now[0] += 0.95
        await pilot.press("0")
        assert score(app) == 10
        assert app.screen.query_one("#score-10").has_class("-selected")
        # The pair is used up: another 0 is 0, not 10 again.
        await pilot.press("0")
        assert score(app) == 0


async def test_one_then_zero_after_a_second_is_zero() -> None:
    app = make_app()
    async with app.run_test() as pilot:
        await pilot.press("1")
        await pilot.pause(1.15)
        await pilot.press("0")
        assert score(app) == 0


async def test_right_from_nothing_starts_at_zero_and_stops_at_ten() -> None:
    app = make_app()
    async with app.run_test() as pilot:
        await pilot.press("right")
        assert score(app) == 0
        await pilot.press(*["right"] * 12)
        assert score(app) == 10  # no wrap to 0


async def test_left_from_nothing_starts_at_ten_and_stops_at_zero() -> None:
    app = make_app()
    async with app.run_test() as pilot:
        await pilot.press("left")
        assert score(app) == 10
        await pilot.press(*["left"] * 12)
        assert score(app) == 0  # no wrap to 10


async def test_arrows_move_from_a_digit() -> None:
    app = make_app()
    async with app.run_test() as pilot:
        await pilot.press("5", "left", "left", "right")
        assert score(app) == 4


async def test_enter_with_nothing_chosen_does_nothing(sink: RecordingSink) -> None:
    app = make_app(sink=sink)
    async with app.run_test() as pilot:
        await pilot.press("enter", "enter", "up", "down")
        await settle(pilot)
        assert isinstance(app.screen, QuestionScreen)
        assert sink.calls == []
        assert score(app) is None
        assert "score" in str(app.screen.query_one("#warn").render()).lower()


async def test_confirm_stores_then_shows_the_pick_list(sink: RecordingSink) -> None:
    app = make_app(sink=sink)
    async with app.run_test() as pilot:
        await pilot.press("8", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ReasonScreen)
        assert sink.kinds() == ["confirmed"]
        record = sink.calls[0][1]
        assert (record.outcome, record.score, record.reason) == ("answered", 8, None)
        assert (record.id, record.session_id, record.locale) == (SURVEY_ID, SESSION_ID, "en")
        assert record.answered_at is not None and record.answered_at >= record.shown_at
        # Nothing chosen in the pick-list at first; OK alone does nothing there either.
        assert app.screen.query_one(ReasonList).index is None
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ReasonScreen)
        assert sink.kinds() == ["confirmed"]


async def test_the_pick_list_waits_for_the_store() -> None:
    gate = asyncio.Event()
    sink = RecordingSink(gate)
    app = make_app(sink=sink)
    async with app.run_test() as pilot:
        await pilot.press("9", "enter")
        await settle(pilot)
        # confirmed() was called and has not returned: the question stays, keys do nothing.
        assert sink.kinds() == ["confirmed"]
        assert isinstance(app.screen, QuestionScreen)
        await pilot.press("3", "escape")
        await settle(pilot)
        assert isinstance(app.screen, QuestionScreen)
        assert score(app) == 9
        gate.set()
        await settle(pilot)
        assert sink.confirmed_returned
        assert isinstance(app.screen, ReasonScreen)


async def test_follow_up_pick(sink: RecordingSink) -> None:
    app = make_app(sink=sink)
    async with app.run_test() as pilot:
        await pilot.press("1", "0", "enter")
        await settle(pilot)
        await pilot.press("down", "down", "down", "up", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ThanksScreen)
        assert app.screen.kind == "promoter"
        assert sink.kinds() == ["confirmed", "finished"]
        final = sink.calls[1][1]
        assert (final.outcome, final.score, final.reason) == ("answered", 10, "buffering")
        assert final.answered_at == sink.calls[0][1].answered_at
        await pilot.press("enter")  # OK closes the thank-you early
        await settle(pilot)
    assert app.return_value == final


async def test_pick_list_up_from_nothing_is_the_last_and_does_not_wrap(sink: RecordingSink) -> None:
    app = make_app(sink=sink)
    async with app.run_test() as pilot:
        await pilot.press("7", "enter")
        await settle(pilot)
        await pilot.press("up")
        assert app.screen.query_one(ReasonList).index == 6
        await pilot.press(*["down"] * 3)
        assert app.screen.query_one(ReasonList).index == 6
        await pilot.press(*["up"] * 9)
        assert app.screen.query_one(ReasonList).index == 0
        await pilot.press("enter")
        await settle(pilot)
    assert sink.calls[-1][1].reason == "picture"


async def test_escape_skips_the_pick_list(sink: RecordingSink) -> None:
    app = make_app(sink=sink)
    async with app.run_test() as pilot:
        await pilot.press("3", "enter")
        await settle(pilot)
        await pilot.press("down", "escape")
        await settle(pilot)
        assert isinstance(app.screen, ThanksScreen)
        assert app.screen.kind == "detractor"
        final = sink.calls[-1][1]
        assert (final.outcome, final.score, final.reason) == ("answered", 3, None)


async def test_escape_dismisses_the_question(sink: RecordingSink) -> None:
    app = make_app(sink=sink)
    async with app.run_test() as pilot:
        await pilot.press("6", "escape")
        await settle(pilot)
    assert sink.kinds() == ["finished"]
    record = sink.calls[0][1]
    assert (record.outcome, record.score, record.answered_at, record.reason) == (
        "dismissed", None, None, None
    )
    assert app.return_value == record


async def test_no_key_for_the_timeout_closes_with_timeout(sink: RecordingSink) -> None:
    app = make_app(sink=sink, timeout_s=0.4)
    async with app.run_test() as pilot:
        await pilot.pause(0.9)
        await settle(pilot)
    assert sink.kinds() == ["finished"]
    assert sink.calls[0][1].outcome == "timeout"
    assert sink.calls[0][1].score is None
    assert app.return_value == sink.calls[0][1]


async def test_a_key_press_restarts_the_timeout(sink: RecordingSink) -> None:
    app = make_app(sink=sink, timeout_s=1.5)
    async with app.run_test() as pilot:
        started = time.monotonic()
        while time.monotonic() - started < 2.5:
            await pilot.pause(0.3)
            await pilot.press("right")
        assert sink.calls == []  # 2.5 s have passed, never 1.5 s without a key
        # Then no key: the timeout fires. Waited for with a margin, not a fixed sleep, so a
        # loaded machine (timers late) cannot fail it; what it proves is unchanged.
        waited = time.monotonic()
        while not sink.calls and time.monotonic() - waited < 15:
            await pilot.pause(0.2)
        await settle(pilot)
        assert time.monotonic() - waited >= 1.5 - 0.3 - 0.05
        assert [r.outcome for _, r in sink.calls] == ["timeout"]
        assert isinstance(app.screen, QuestionScreen)


async def test_an_unanswered_pick_list_times_out_as_skipped(sink: RecordingSink) -> None:
    app = make_app(sink=sink, timeout_s=1.0)
    async with app.run_test() as pilot:
        await pilot.press("9", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ReasonScreen)
        await pilot.pause(1.6)
        await settle(pilot)
        assert sink.kinds() == ["confirmed", "finished"]
        assert sink.calls[-1][1].reason is None
        assert sink.calls[-1][1].outcome == "answered"


async def test_the_thank_you_closes_itself(sink: RecordingSink) -> None:
    app = make_app(sink=sink, thanks_s=1.0)
    async with app.run_test() as pilot:
        await pilot.press("7", "enter")
        await settle(pilot)
        await pilot.press("down", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ThanksScreen)
        assert app.screen.kind == "passive"
        await pilot.pause(1.6)
        await settle(pilot)
    assert app.return_value is not None and app.return_value.reason == "picture"


async def test_ctrl_c_dismisses_like_back(sink: RecordingSink) -> None:
    app = make_app(sink=sink)
    async with app.run_test() as pilot:
        await pilot.press("ctrl+c")
        await settle(pilot)
    assert [r.outcome for _, r in sink.calls] == ["dismissed"]


async def test_unknown_locale_shows_english() -> None:
    app = make_app(locale="de_DE.UTF-8")
    async with app.run_test() as pilot:
        await pilot.pause()
        title = str(app.screen.query_one(Headline).render())
        assert title == "How likely are you to recommend IPTV to a friend or colleague?"
        assert app.catalog.locale == "en"


async def test_dutch_and_russian_questions() -> None:
    for locale, expected in (
        ("nl", "Hoe waarschijnlijk is het dat u IPTV zou aanbevelen aan een vriend of collega?"),
        ("ru", "Насколько вероятно, что вы порекомендуете IPTV другу или коллеге?"),
    ):
        app = make_app(locale=locale)
        async with app.run_test() as pilot:
            await pilot.pause()
            assert str(app.screen.query_one(Headline).render()) == expected


async def test_the_pick_list_shows_its_focus_from_the_first_frame_choosing_nothing() -> None:
    app = make_app(locale="en")
    async with app.run_test() as pilot:
        await pilot.press("8", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ReasonScreen)
        reasons = app.screen.query_one(ReasonList)
        assert reasons.index is None  # nothing chosen ...
        # ... but the list is framed and titled with its keys, a shape, not a colour.
        assert reasons.styles.border_top[0] == "solid"
        assert reasons.border_title == " Up/Down "
        await pilot.press("down")
        await settle(pilot)
        first = app.screen.query_one("#reason-0")
        assert str(first.render()).startswith("> ") and first.has_class("-selected")


async def test_on_a_big_screen_the_question_grows_with_the_digits() -> None:
    app = make_app(locale="en")
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        head = app.screen.query_one(Headline)
        text = str(head.render())
        assert text.startswith("H o w   l i k e l y"), text
        assert head.size.height == 1 and len(text) == 2 * len(head.text) - 1  # twice as wide
    app = make_app(locale="nl")  # a longer question: two lines, a blank line between
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot)
        head = app.screen.query_one(Headline)
        lines = str(head.render()).splitlines()
        assert head.size.height == 3 and lines[1] == "", lines
        assert all(0 < len(line) <= head.size.width for line in lines[::2])
        assert lines[0].startswith("H o e   w a a r s c h i j n l i j k")
    app = make_app(locale="en")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert str(app.screen.query_one(Headline).render()).startswith("How likely")
