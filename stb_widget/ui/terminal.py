"""What the terminal can show, decided without importing Textual (the prompt's first
frame is drawn before Textual loads)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

#: The truecolor theme (xterm-256color, fbterm, kmscon) and the 16-colour one (TERM=linux).
TV: Final = "stb-tv"
CONSOLE: Final = "stb-console"

# Terminals that cannot show more than the 16 ANSI colours (or whose palette is the
# VGA one, where mapped truecolour loses its contrast).
_SIXTEEN_COLOUR_TERMS: Final = ("linux", "vt100", "vt102", "vt220", "ansi", "cons25", "con")


def choose_theme(env: Mapping[str, str]) -> str:
    """The theme for this terminal: ``STB_WIDGET_THEME`` if set, else by ``TERM``.

    ``TERM=linux`` (the kernel console) and other 16-colour terminals, or
    ``TEXTUAL_COLOR_SYSTEM=standard``, get the console theme; fbterm, kmscon and
    xterm-like terminals the TV theme.
    """
    forced = env.get("STB_WIDGET_THEME", "")
    if forced in (TV, CONSOLE):
        return forced
    if env.get("TEXTUAL_COLOR_SYSTEM", "") in ("standard", "windows"):
        return CONSOLE
    term = env.get("TERM", "")
    if term.startswith(_SIXTEEN_COLOUR_TERMS) and "256" not in term:
        return CONSOLE
    return TV
