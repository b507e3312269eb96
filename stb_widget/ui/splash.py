"""The prompt's first frame, written with plain escape codes before Textual is imported.

Loading Textual takes a few hundred milliseconds on a box; the viewer should not look at
the film's last frame meanwhile. The splash draws the question as Textual will (same
words, scale, colours, centred the same way), switches off echo so that early presses
are not printed over it (they wait in the terminal's input queue for Textual), and is
then simply drawn over. :func:`restore` undoes it whatever happens next.
"""

from __future__ import annotations

import os
import termios
import textwrap
from typing import Any, Final

from .catalog import Catalog
from .terminal import CONSOLE

_WIDTH: Final = 76
# Colours of the two themes (see theme.py): background, text, cell, cell border, muted.
_TV: Final = ("48;2;11;26;46", "38;2;255;255;255", "48;2;31;53;84", "38;2;127;149;178",
              "38;2;200;211;224")
_CONSOLE: Final = ("40", "97", "44", "37", "37")


def frame(catalog: Catalog, service: str, theme: str, cols: int, rows: int) -> str:
    """The escape codes of the splash for a ``cols`` x ``rows`` terminal."""
    bg, fg, cell_bg, border, muted = _CONSOLE if theme == CONSOLE else _TV
    base = f"\x1b[0;{bg};{fg}m"
    lines: list[str] = []
    for text in textwrap.wrap(catalog.text("question", service=service), _WIDTH):
        lines.append(f"\x1b[1m{text}{base}")
    lines.append("")
    cell = f"\x1b[{cell_bg};{border}m"
    lines.append(" ".join(f"{cell}┌────┐{base}" for _ in range(11)))
    lines.append(" ".join(f"{cell}│\x1b[1;{fg[0:]}m{n:^4}\x1b[22;{border}m│{base}" for n in range(11)))
    lines.append(" ".join(f"{cell}└────┘{base}" for _ in range(11)))
    lines.append("")
    low, high = catalog.text("low_label"), catalog.text("high_label")
    lines.append(low + " " * max(1, _WIDTH - len(low) - len(high)) + high)
    lines.append("")
    for text in textwrap.wrap(catalog.text("question_hint"), _WIDTH):
        lines.append(f"\x1b[{muted}m{text}{base}")
    lines.append("")  # the warning line under the hint
    top = max(0, (rows - len(lines)) // 2)
    left = max(0, (cols - _WIDTH) // 2)
    out = ["\x1b[?1049h\x1b[?25l", base, "\x1b[2J"]
    for i, line in enumerate(lines):
        out.append(f"\x1b[{top + i + 1};{left + 1}H{line}")
    out.append("\x1b[0m")
    return "".join(out)


def show(fd: int, catalog: Catalog, service: str, theme: str) -> list[Any] | None:
    """Draw the splash on terminal ``fd``; returns the terminal's settings for :func:`restore`."""
    try:
        saved: list[Any] = termios.tcgetattr(fd)
        quiet = termios.tcgetattr(fd)
        # The same modes Textual will set (its LinuxDriver), so that a key pressed now
        # reaches it as it would later: no echo, no line editing, Enter stays "\r".
        quiet[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN | termios.ISIG)
        quiet[0] &= ~(termios.IXON | termios.IXOFF | termios.ICRNL | termios.INLCR | termios.IGNCR)
        quiet[6][termios.VMIN] = 1
        termios.tcsetattr(fd, termios.TCSANOW, quiet)
        cols, rows = os.get_terminal_size(fd)
    except (OSError, termios.error):
        return None  # not a terminal: no splash; Textual will find out for itself
    os.write(fd, frame(catalog, service, theme, cols, rows).encode("utf-8"))
    return saved


def restore(fd: int, saved: list[Any] | None) -> None:
    """Put the terminal's settings back and show the cursor (Textual restores the rest)."""
    if saved is None:
        return
    try:
        termios.tcsetattr(fd, termios.TCSANOW, saved)
        os.write(fd, b"\x1b[?25h")
    except (OSError, termios.error):
        pass
