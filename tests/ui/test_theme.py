"""The Linux console (TERM=linux): 16 colours, eight backgrounds, glyphs its fonts have."""

from __future__ import annotations

import re
from typing import Any

import pytest
from rich.color import ColorType
from textual.pilot import Pilot

from stb_widget.ui.app import SurveyApp
from stb_widget.ui.theme import CONSOLE_THEME, TV_THEME, choose_theme

from .conftest import make_app
from .test_snapshots import SCREENS

# ASCII, Latin-1, Latin Extended-A, basic Cyrillic, the single box-drawing lines and the
# full block: all in the console-setup fonts (Lat15, Lat2, Uni2, CyrKoi) and CP437.
_CONSOLE_GLYPHS = re.compile(r"^[\x20-\x7e\u00a0-\u017f\u0400-\u045f─│┌┐└┘█]*$")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TERM": "linux"}, CONSOLE_THEME.name),
        ({"TERM": "linux-16color"}, CONSOLE_THEME.name),
        ({"TERM": "vt220"}, CONSOLE_THEME.name),
        ({"TERM": "xterm-256color"}, TV_THEME.name),
        ({"TERM": "fbterm"}, TV_THEME.name),
        ({"TERM": "xterm-256color", "TEXTUAL_COLOR_SYSTEM": "standard"}, CONSOLE_THEME.name),
        ({"TERM": "linux", "STB_WIDGET_THEME": "stb-tv"}, TV_THEME.name),
        ({}, TV_THEME.name),
    ],
)
def test_theme_follows_the_terminal(env: dict[str, str], expected: str) -> None:
    assert choose_theme(env) == expected


def _check_console_frame(app: SurveyApp) -> str:
    text = []
    seen: set[int] = set()
    for strip in app.screen._compositor.render_strips():
        for segment in strip:
            style = segment.style
            if style is not None:
                for color, limit in ((style.color, 16), (style.bgcolor, 8)):
                    if color is not None and not color.is_default:
                        assert color.type is ColorType.STANDARD, f"{color} in {segment.text!r}"
                        assert color.number is not None and color.number < limit, (
                            f"{color} in {segment.text!r}"
                        )
                        seen.add(color.number)
        assert _CONSOLE_GLYPHS.match(strip.text), f"glyph not in console fonts: {strip.text!r}"
        text.append(strip.text)
    assert len(seen) >= 3, f"too few ANSI colours drawn: {seen}"
    return "\n".join(text)


@pytest.mark.parametrize("screen", list(SCREENS))
@pytest.mark.parametrize("locale", ["en", "nl", "ru"])
async def test_console_frames_use_16_colours_and_console_glyphs(locale: str, screen: str) -> None:
    app = make_app(locale=locale, env={"TERM": "linux"})
    async with app.run_test() as pilot:
        await SCREENS[screen](pilot)
        assert app.theme == CONSOLE_THEME.name
        text = _check_console_frame(app)
        # The frame shows the screen, not an empty or broken page.
        assert text.strip()


async def test_console_frame_on_a_big_screen() -> None:
    app = make_app(locale="ru", env={"TERM": "linux"})
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.press("1", "0")
        text = _check_console_frame(app)
        assert "█" in text  # block digits


async def test_tv_frame_shows_the_question() -> None:
    app = make_app(env={"TERM": "xterm-256color"})
    async with app.run_test() as pilot:
        p: Pilot[Any] = pilot
        await p.pause()
        assert app.theme == TV_THEME.name
        frame = "\n".join(s.text for s in app.screen._compositor.render_strips())
        assert "How likely are you to recommend IPTV" in frame
        assert "not at all likely" in frame and "extremely likely" in frame
