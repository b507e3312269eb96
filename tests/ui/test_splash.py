"""The first frame, drawn with escape codes before Textual loads."""

from __future__ import annotations

import re

import pytest

from stb_widget.ui.catalog import load_catalog
from stb_widget.ui.splash import frame
from stb_widget.ui.terminal import CONSOLE, TV

_SGR = re.compile(r"\x1b\[([0-9;]*)m")
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")
_CONSOLE_GLYPHS = re.compile(r"^[\x20-\x7e\u00a0-\u017f\u0400-\u045f─│┌┐└┘█\r\n]*$")


@pytest.mark.parametrize("theme", [TV, CONSOLE])
@pytest.mark.parametrize("locale", ["en", "nl", "ru"])
def test_splash_shows_the_question(locale: str, theme: str) -> None:
    catalog = load_catalog(locale)
    out = frame(catalog, "IPTV", theme, 80, 24)
    text = _ESCAPES.sub("", out)
    first_words = catalog.text("question", service="IPTV").split()[:4]
    assert " ".join(first_words) in text
    assert catalog.text("low_label") in text and catalog.text("high_label") in text
    assert all(f" {n} " in text for n in range(10)) and " 10 " in text
    assert _CONSOLE_GLYPHS.match(text)
    if theme == CONSOLE:
        # Only the 16 ANSI colours, and dark backgrounds: the Linux console.
        for params in _SGR.findall(out):
            for code in (int(p) for p in params.split(";") if p):
                assert code in (0, 1, 22) or 30 <= code <= 37 or 40 <= code <= 47 or 90 <= code <= 97


def test_splash_is_centred() -> None:
    out = frame(load_catalog("en"), "IPTV", TV, 120, 40)
    rows = [int(r) for r, _ in re.findall(r"\x1b\[(\d+);(\d+)H", out)]
    cols = {int(c) for _, c in re.findall(r"\x1b\[(\d+);(\d+)H", out)}
    assert cols == {(120 - 76) // 2 + 1}
    assert abs((rows[0] - 1) - (40 - rows[-1])) <= 1
