"""TextualPresenter end to end: a real prompt process on a pseudo-terminal."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from protocol import SurveyRecord, utcnow
from stb_widget.survey_port import PresenterUnavailable, SurveyRequest
from stb_widget.ui.presenter import TextualPresenter

from .conftest import SESSION_ID, SURVEY_ID
from .ptyterm import DOWN, ENTER, ESCAPE, PtyTerminal


@pytest.fixture
def term() -> Iterator[PtyTerminal]:
    terminal = PtyTerminal()
    yield terminal
    terminal.close()


def request(tty: str, locale: str = "en", timeout_s: float = 30.0) -> SurveyRequest:
    return SurveyRequest(SURVEY_ID, SESSION_ID, locale, "IPTV", timeout_s, tty=tty)


class OrderSink:
    """Notes where the terminal's output stood at each call, and holds ``confirmed``."""

    def __init__(self, term: PtyTerminal, hold_s: float = 0.0) -> None:
        self.term = term
        self.hold_s = hold_s
        self.log: list[tuple[str, int, SurveyRecord]] = []

    async def confirmed(self, record: SurveyRecord) -> None:
        self.log.append(("confirmed", len(self.term.output), record))
        await asyncio.sleep(self.hold_s)  # a slow disk: the pick-list must wait
        self.log.append(("stored", len(self.term.output), record))

    async def finished(self, record: SurveyRecord) -> None:
        self.log.append(("finished", len(self.term.output), record))


async def wait_for(term: PtyTerminal, text: str, start: int = 0) -> int:
    return await asyncio.to_thread(term.wait_for, text, 30.0, start)


async def type_keys(term: PtyTerminal, *keys: bytes) -> None:
    await asyncio.to_thread(term.type, *keys)


async def test_answer_pick_and_thanks_through_the_subprocess(term: PtyTerminal) -> None:
    sink = OrderSink(term, hold_s=0.8)
    shown: list[float] = []
    presenter = TextualPresenter(
        lirc_socket=None, thanks_s=0.5, on_shown=lambda: shown.append(1.0)
    )
    before = utcnow()
    task = asyncio.create_task(presenter.present(request(term.name), sink))
    await wait_for(term, "How likely are you to recommend IPTV")
    seen = utcnow()
    assert presenter.pid is not None
    await type_keys(term, b"9", ENTER)
    at_pick_list = await wait_for(term, "What matters most to you?")
    # The answer was stored (confirmed() returned) before the pick-list was drawn.
    kinds = [kind for kind, _, _ in sink.log]
    assert kinds[:2] == ["confirmed", "stored"]
    assert sink.log[1][1] <= at_pick_list
    await type_keys(term, DOWN, DOWN, ENTER)
    await wait_for(term, "Thank you! We are glad you enjoy IPTV.", at_pick_list)
    record = await asyncio.wait_for(task, 30)
    assert shown == [1.0]
    assert [kind for kind, _, _ in sink.log] == ["confirmed", "stored", "finished"]
    confirmed, final = sink.log[0][2], sink.log[2][2]
    assert (confirmed.outcome, confirmed.score, confirmed.reason) == ("answered", 9, None)
    assert final == record
    assert (record.id, record.session_id, record.locale) == (SURVEY_ID, SESSION_ID, "en")
    assert (record.outcome, record.score, record.reason) == ("answered", 9, "buffering")
    assert record.answered_at == confirmed.answered_at
    # shown_at is when the question first appeared (the splash), before it was answered.
    assert confirmed.answered_at is not None
    assert before <= record.shown_at <= seen <= confirmed.answered_at
    assert presenter.pid is None
    # The prompt left the alternate screen: the console is usable again.
    assert b"\x1b[?1049l" in term.output


async def test_dismiss_through_the_subprocess(term: PtyTerminal) -> None:
    sink = OrderSink(term)
    task = asyncio.create_task(
        TextualPresenter(lirc_socket=None).present(request(term.name, "nl"), sink)
    )
    await wait_for(term, "Hoe waarschijnlijk")
    await type_keys(term, b"4", ESCAPE)
    record = await asyncio.wait_for(task, 30)
    assert (record.outcome, record.score, record.locale) == ("dismissed", None, "nl")
    assert [kind for kind, _, _ in sink.log] == ["finished"]


async def test_timeout_through_the_subprocess(term: PtyTerminal) -> None:
    sink = OrderSink(term)
    record = await asyncio.wait_for(
        TextualPresenter(lirc_socket=None).present(request(term.name, "ru", 1.0), sink), 30
    )
    assert record.outcome == "timeout"
    assert "Насколько вероятно" in term.output.decode("utf-8", "replace")


async def test_cancelling_ends_the_prompt_and_restores_the_terminal(term: PtyTerminal) -> None:
    presenter = TextualPresenter(lirc_socket=None)
    task = asyncio.create_task(presenter.present(request(term.name), OrderSink(term)))
    await wait_for(term, "How likely")
    pid = presenter.pid
    assert pid is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # noqa: ASYNC222 (WNOHANG: never blocks) reaped, no zombie
    assert b"\x1b[?1049l" in term.output


async def test_no_such_terminal(term: PtyTerminal) -> None:
    with pytest.raises(PresenterUnavailable, match="cannot open"):
        await TextualPresenter().present(request("/dev/no-such-tty"), OrderSink(term))


async def test_not_a_terminal(term: PtyTerminal) -> None:
    with pytest.raises(PresenterUnavailable, match="not a terminal"):
        await TextualPresenter().present(request(os.devnull), OrderSink(term))


def test_agent_terminal_missing() -> None:
    # tty = "" with stdin, stdout and stderr all redirected: no terminal.
    code = (
        "import asyncio\n"
        "from stb_widget.survey_port import SurveyRequest, PresenterUnavailable\n"
        "from stb_widget.ui.presenter import TextualPresenter\n"
        "r = SurveyRequest('0193a1b2-0000-7000-8000-000000000001', None, 'en', 'IPTV', 5)\n"
        "try:\n"
        "    asyncio.run(TextualPresenter().present(r, None))\n"
        "except PresenterUnavailable as e:\n"
        "    print('unavailable:', e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=True,
    )
    assert out.stdout.startswith("unavailable: no terminal")


def test_importing_the_presenter_does_not_import_textual() -> None:
    code = (
        "import sys, stb_widget.ui.presenter, stb_widget.ui.ask\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
