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
    "survey-picklist-opened-en.svg": "test_screen[en-tv-picklist-opened].svg",
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


def test_the_wire_format_doc_matches_the_protocol_types() -> None:
    """docs/wire-format.md's tables are generated from protocol/types.py; a changed type
    without a regenerated doc fails here."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "protocol.wiredoc", "--check",
                          str(ROOT / "docs" / "wire-format.md")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    from protocol.spec import wire_fields
    from protocol.types import Qos, SessionRecord, SurveyRecord

    doc = (ROOT / "docs" / "wire-format.md").read_text("utf-8")
    for cls in (Qos, SessionRecord, SurveyRecord):
        for name, _ in wire_fields(cls):
            assert f"| `{name}` |" in doc, name


def test_no_doc_sends_readers_outside_the_repository() -> None:
    """A clone has no ../shared/: every doc stands alone, and every relative link in
    docs/ and the README resolves inside the repository."""
    docs = [p for p in sorted(ROOT.rglob("*.md"))
            if not any(part.startswith(".") or part in ("node_modules", "build")
                       for part in p.relative_to(ROOT).parts)]
    assert ROOT / "docs" / "event-feed.md" in docs
    for path in docs:
        text = path.read_text("utf-8")
        assert "../shared" not in text, f"{path.name} points at ../shared"
        assert "CONTRACT.md" not in text, f"{path.name} names CONTRACT.md, absent from a clone"
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (path.parent / target).exists(), f"{path.name}: broken link {target}"
