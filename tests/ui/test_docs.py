"""The README's screenshots are the snapshot tests' SVGs; they must not drift apart."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOTS = Path(__file__).with_name("__snapshots__") / "test_snapshots"
SCREENSHOTS = {
    "survey-question-en.svg": "test_screen[en-tv-question].svg",
    "survey-question-scored-en.svg": "test_screen[en-tv-question-scored].svg",
    "survey-picklist-nl.svg": "test_screen[nl-tv-picklist].svg",
    "survey-thanks-promoter-en.svg": "test_screen[en-tv-thanks-promoter].svg",
    "survey-thanks-detractor-en.svg": "test_screen[en-tv-thanks-detractor].svg",
    "survey-question-linux-ru.svg": "test_screen[ru-linux-question-scored].svg",
    "survey-question-big-nl.svg": "test_big_screen[question-scored].svg",
}


@pytest.mark.parametrize(("shot", "snapshot"), SCREENSHOTS.items())
def test_screenshot_matches_its_snapshot(shot: str, snapshot: str) -> None:
    assert (ROOT / "docs" / "screenshots" / shot).read_bytes() == (SNAPSHOTS / snapshot).read_bytes(), (
        f"copy {snapshot} to docs/screenshots/{shot}"
    )


def test_the_doc_shows_every_screenshot() -> None:
    doc = (ROOT / "docs" / "survey-ui.md").read_text("utf-8")
    shown = set(re.findall(r"\(screenshots/(survey-[^)]+\.svg)\)", doc))
    assert shown == set(SCREENSHOTS)
