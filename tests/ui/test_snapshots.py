"""Snapshots (pytest-textual-snapshot) of each screen, in each language, in both themes.

``stb-tv`` is what xterm-256color, fbterm and kmscon show; ``stb-console`` is what the
Linux console (``TERM=linux``, 16 colours) shows. Update with ``--snapshot-update`` after
checking the new SVGs under ``__snapshots__/`` by eye.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.pilot import Pilot

from .conftest import make_app

Steps = Callable[[Pilot[Any]], Awaitable[None]]


async def _settle(pilot: Pilot[Any]) -> None:
    for _ in range(4):
        await pilot.pause()


def _keys(*keys: str) -> Steps:
    async def run(pilot: Pilot[Any]) -> None:
        for key in keys:
            await pilot.press(key)
            await _settle(pilot)

    return run


SCREENS: dict[str, Steps] = {
    "question": _keys(),
    "question-scored": _keys("7"),
    "question-no-score-yet": _keys("enter"),
    "picklist-opened": _keys("8", "enter"),
    "picklist": _keys("8", "enter", "down", "down"),
    "thanks-promoter": _keys("9", "enter", "down", "enter"),
    "thanks-passive": _keys("7", "enter", "escape"),
    "thanks-detractor": _keys("3", "enter", "down", "enter"),
}
THEMES = {"tv": {"TERM": "xterm-256color"}, "linux": {"TERM": "linux"}}


@pytest.mark.parametrize("screen", list(SCREENS))
@pytest.mark.parametrize("theme", list(THEMES))
@pytest.mark.parametrize("locale", ["en", "nl", "ru"])
def test_screen(snap_compare: Any, locale: str, theme: str, screen: str) -> None:
    app = make_app(locale=locale, env=THEMES[theme])
    assert snap_compare(app, run_before=SCREENS[screen])


@pytest.mark.parametrize("screen", ["question-scored", "picklist-opened", "picklist"])
def test_big_screen(snap_compare: Any, screen: str) -> None:
    """A 1080p console with a 16-pixel-wide font: big cells and block digits."""
    app = make_app(locale="nl", env={"TERM": "linux"})
    assert snap_compare(app, run_before=SCREENS[screen], terminal_size=(160, 45))
