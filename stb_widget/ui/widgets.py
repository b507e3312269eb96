"""The prompt's widgets: the 0-10 scale, its pointer, and the reason list.

They hold state and draw it; the screens decide what a key means and set that state
(calls go down). Characters are limited to ASCII, the single box-drawing lines and the
full block, which every Linux console font has.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import ClassVar, Final

from rich.text import Text
from textual.app import ComposeResult
from textual.geometry import Size
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Static

from protocol import nps

#: The scale's keys, 0 to 10 (protocol.nps.SCORES).
SCORES: Final = tuple(nps.SCORES)

# A 3x5 block font, drawn where a cell is large enough (big screens, see ScoreScale CSS).
_BIG_DIGITS: Final = {
    "0": ("███", "█ █", "█ █", "█ █", "███"),
    "1": (" █ ", "██ ", " █ ", " █ ", "███"),
    "2": ("███", "  █", "███", "█  ", "███"),
    "3": ("███", "  █", "███", "  █", "███"),
    "4": ("█ █", "█ █", "███", "  █", "  █"),
    "5": ("███", "█  ", "███", "  █", "███"),
    "6": ("███", "█  ", "███", "█ █", "███"),
    "7": ("███", "  █", "  █", "  █", "  █"),
    "8": ("███", "█ █", "███", "█ █", "███"),
    "9": ("███", "█ █", "███", "  █", "███"),
}


def big_number(number: int) -> str:
    """``number`` in the 3x5 block font, digits one column apart."""
    rows = ["", "", "", "", ""]
    for i, digit in enumerate(str(number)):
        for r in range(5):
            rows[r] += (" " if i else "") + _BIG_DIGITS[digit][r]
    return "\n".join(rows)


class ScoreCell(Widget):
    """One score of the scale; draws its number in block digits when it is big enough."""

    # Unscoped, so that the screen's "-wide" breakpoint class can resize it.
    SCOPED_CSS: ClassVar[bool] = False
    DEFAULT_CSS: ClassVar[str] = """
    ScoreCell {
        width: 6;
        height: 3;
        margin-right: 1;
        border: solid $stb-cell-border;
        background: $stb-cell-bg;
        color: $stb-fg;
        content-align: center middle;
        text-style: bold;
    }
    ScoreCell.-last { margin-right: 0; }
    ScoreCell.-selected {
        background: $stb-focus-bg;
        color: $stb-focus-fg;
        border: solid $stb-accent;
    }
    """

    def __init__(self, score: int) -> None:
        super().__init__(id=f"score-{score}", classes="-last" if score == 10 else "")
        self.score = score

    def render(self) -> Text:
        size = self.content_size
        label = str(self.score)
        if size.height >= 5 and size.width >= 7:
            return Text(big_number(self.score), justify="center")
        return Text(label, justify="center")


class ScoreScale(Widget):
    """The row of scores 0 to 10; ``value`` is the chosen one (None: nothing chosen yet)."""

    # Unscoped, so that the screen's "-wide" breakpoint class can resize it.
    SCOPED_CSS: ClassVar[bool] = False
    DEFAULT_CSS: ClassVar[str] = """
    ScoreScale {
        layout: horizontal;
        width: auto;
        height: auto;
    }
    Screen.-wide ScoreCell {
        width: 11;
        height: 7;
    }
    """

    value: reactive[int | None] = reactive(None)

    def compose(self) -> ComposeResult:
        for score in SCORES:
            yield ScoreCell(score)

    def watch_value(self, old: int | None, new: int | None) -> None:
        if old is not None:
            self.query_one(f"#score-{old}", ScoreCell).remove_class("-selected")
        if new is not None:
            self.query_one(f"#score-{new}", ScoreCell).add_class("-selected")


class ScorePointer(Widget):
    """A row of ``^`` under the chosen score, so the choice shows without colour too."""

    # Unscoped, so that the screen's "-wide" breakpoint class can resize it.
    SCOPED_CSS: ClassVar[bool] = False
    DEFAULT_CSS: ClassVar[str] = """
    ScorePointer {
        width: 76;
        height: 1;
        color: $stb-accent;
        text-style: bold;
    }
    Screen.-wide ScorePointer { width: 131; }
    """

    value: reactive[int | None] = reactive(None)

    def render(self) -> Text:
        if self.value is None:
            return Text("")
        # Matches ScoreCell's width plus its one-cell margin (6+1 or 11+1).
        step = 12 if self.screen.has_class("-wide") else 7
        width = step - 1
        return Text(" " * (self.value * step) + "^" * width)


class Headline(Widget):
    """A screen's question line. On a big screen (the ``-wide`` breakpoint, where the
    scores turn into block digits) it grows with them: a terminal has one font size, so
    the text is set letter-spaced (two columns a letter, three between words) with a blank
    line between its lines, wrapped by word. Elsewhere it is plain bold text."""

    # Unscoped, so that the screen's "-wide" breakpoint class can reach it.
    SCOPED_CSS: ClassVar[bool] = False
    DEFAULT_CSS: ClassVar[str] = """
    Headline {
        width: 76;
        height: auto;
        text-style: bold;
        color: $stb-fg;
        margin-bottom: 1;
    }
    Screen.-wide Headline {
        width: 131;
        margin-bottom: 2;
    }
    """

    def __init__(self, text: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.text = text

    def _spaced(self, width: int) -> str | None:
        """The letter-spaced text for ``width`` columns; None where the screen is not big."""
        if not self.screen.has_class("-wide"):
            return None
        # A word of n letters takes 2n-1 columns spaced; wrap at half the width to fit.
        lines = textwrap.wrap(self.text, width=max(1, (width + 1) // 2 - 1),
                              break_long_words=True)
        return "\n\n".join("   ".join(" ".join(word) for word in line.split(" "))
                            for line in lines)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        spaced = self._spaced(width)
        if spaced is None:
            return super().get_content_height(container, viewport, width)
        return spaced.count("\n") + 1

    def render(self) -> Text:
        spaced = self._spaced(max(1, self.content_size.width))
        return Text(self.text if spaced is None else spaced)


class ReasonList(Widget):
    """The follow-up's options, one a line; ``index`` is the chosen one (None at first).

    Where the focus is shows from the first frame without choosing anything: the list is
    framed, the frame titled with the keys that move in it (``focus_label``); the chosen
    option is marked ``> … <`` and bold as well as coloured, never by colour alone.
    """

    # Unscoped, so that the screen's "-wide" breakpoint class can resize it.
    SCOPED_CSS: ClassVar[bool] = False
    DEFAULT_CSS: ClassVar[str] = """
    ReasonList {
        layout: vertical;
        width: auto;
        min-width: 48;
        height: auto;
        border: solid $stb-accent;
        border-title-color: $stb-accent;
        border-title-style: bold;
        border-title-align: left;
    }
    ReasonList > .reason {
        width: 100%;
        height: 1;
        padding: 0 2;
        color: $stb-fg;
        background: $stb-cell-bg;
    }
    ReasonList > .reason.-selected {
        background: $stb-focus-bg;
        color: $stb-focus-fg;
        text-style: bold;
    }
    Screen.-wide ReasonList > .reason {
        height: 3;
        content-align: left middle;
        margin-bottom: 1;
    }
    """

    index: reactive[int | None] = reactive(None)

    def __init__(self, labels: Sequence[str], *, focus_label: str = "",
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.labels = tuple(labels)
        self.border_title = focus_label

    def compose(self) -> ComposeResult:
        for i, label in enumerate(self.labels):
            yield Static(
                self._line(label, selected=False),
                id=f"reason-{i}",
                classes="reason",
                markup=False,
            )

    @staticmethod
    def _line(label: str, *, selected: bool) -> str:
        return f"> {label} <" if selected else f"  {label}  "

    def watch_index(self, old: int | None, new: int | None) -> None:
        for i, selected in ((old, False), (new, True)):
            if i is None:
                continue
            item = self.query_one(f"#reason-{i}", Static)
            item.set_class(selected, "-selected")
            item.update(self._line(self.labels[i], selected=selected))
