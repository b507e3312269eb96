"""One action map for every input: the terminal keyboard, LIRC and evdev.

Each source turns its own key names into an :class:`Action`; the screens only ever see
actions. A *repeat* (a held button) may only move: :func:`accept` drops repeats of
anything else, so a held OK or digit can never answer by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final


class Action(Enum):
    """What a key press means to the survey screens."""

    LEFT = "left"
    RIGHT = "right"
    UP = "up"
    DOWN = "down"
    CONFIRM = "confirm"
    BACK = "back"
    DIGIT_0 = "0"
    DIGIT_1 = "1"
    DIGIT_2 = "2"
    DIGIT_3 = "3"
    DIGIT_4 = "4"
    DIGIT_5 = "5"
    DIGIT_6 = "6"
    DIGIT_7 = "7"
    DIGIT_8 = "8"
    DIGIT_9 = "9"

    @property
    def digit(self) -> int | None:
        """The digit of a digit key, else None."""
        return int(self.value) if self.value.isdigit() else None

    @property
    def moves(self) -> bool:
        """True for the arrows: the only actions a held (repeating) button may send."""
        return self in _MOVES


_MOVES: Final = frozenset({Action.LEFT, Action.RIGHT, Action.UP, Action.DOWN})
_DIGITS: Final = {str(d): Action(str(d)) for d in range(10)}


@dataclass(frozen=True, slots=True)
class RemoteEvent:
    """One button press from a remote; ``repeat`` is True for auto-repeats of a held button."""

    action: Action
    repeat: bool = False


def accept(event: RemoteEvent) -> bool:
    """Whether an event may reach the screens: repeats only move, never confirm or jump."""
    return not event.repeat or event.action.moves


#: Textual key names (what ``pilot.press`` and the terminal produce).
KEYBOARD: Final[dict[str, Action]] = {
    "left": Action.LEFT,
    "right": Action.RIGHT,
    "up": Action.UP,
    "down": Action.DOWN,
    "enter": Action.CONFIRM,
    "escape": Action.BACK,
    # Some remotes' USB receivers send Backspace for Back.
    "backspace": Action.BACK,
    **_DIGITS,
}

#: Linux input key names, shared by LIRC (KEY_NAME in lircd's lines) and evdev.
LINUX_KEYS: Final[dict[str, Action]] = {
    "KEY_LEFT": Action.LEFT,
    "KEY_RIGHT": Action.RIGHT,
    "KEY_UP": Action.UP,
    "KEY_DOWN": Action.DOWN,
    "KEY_OK": Action.CONFIRM,
    "KEY_SELECT": Action.CONFIRM,
    "KEY_ENTER": Action.CONFIRM,
    "KEY_KPENTER": Action.CONFIRM,
    "KEY_BACK": Action.BACK,
    "KEY_EXIT": Action.BACK,
    "KEY_ESC": Action.BACK,
    **{f"KEY_{d}": Action(str(d)) for d in range(10)},
    **{f"KEY_NUMERIC_{d}": Action(str(d)) for d in range(10)},
    **{f"KEY_KP{d}": Action(str(d)) for d in range(10)},
}


def linux_key_action(name: str) -> Action | None:
    """The action of a Linux key name such as ``KEY_OK``; None for keys the survey ignores.

    LIRC remotes configured by hand often use the names without the ``KEY_`` prefix or in
    lower case (``ok``, ``Left``); both are accepted.
    """
    upper = name.strip().upper()
    action = LINUX_KEYS.get(upper)
    if action is None and not upper.startswith("KEY_"):
        action = LINUX_KEYS.get("KEY_" + upper)
    return action
