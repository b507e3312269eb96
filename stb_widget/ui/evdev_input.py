"""evdev input: remote receivers that the kernel exposes as ``/dev/input/event*``.

The mapping works on plain ``(type, code, value)`` triples and a built-in table of the
kernel's key codes, so it is testable without python-evdev; only :func:`read_evdev`
needs the optional ``evdev`` extra (``pip install iptv-nps[evdev]``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Final

from .keys import RemoteEvent, linux_key_action

log = logging.getLogger(__name__)

EV_KEY: Final = 0x01
#: ``value`` of an EV_KEY event: released, pressed, auto-repeat.
KEY_UP, KEY_DOWN, KEY_HOLD = 0, 1, 2

# From linux/input-event-codes.h (stable kernel ABI): the keys the survey understands.
KEY_CODES: Final[dict[int, str]] = {
    1: "KEY_ESC",
    **{2 + i: f"KEY_{(i + 1) % 10}" for i in range(10)},  # KEY_1 = 2 ... KEY_0 = 11
    28: "KEY_ENTER",
    71: "KEY_KP7", 72: "KEY_KP8", 73: "KEY_KP9",
    75: "KEY_KP4", 76: "KEY_KP5", 77: "KEY_KP6",
    79: "KEY_KP1", 80: "KEY_KP2", 81: "KEY_KP3", 82: "KEY_KP0",
    96: "KEY_KPENTER",
    103: "KEY_UP",
    105: "KEY_LEFT",
    106: "KEY_RIGHT",
    108: "KEY_DOWN",
    158: "KEY_BACK",
    174: "KEY_EXIT",
    0x160: "KEY_OK",
    0x161: "KEY_SELECT",
    **{0x200 + d: f"KEY_NUMERIC_{d}" for d in range(10)},
}


def evdev_event(type_: int, code: int, value: int) -> RemoteEvent | None:
    """The press an input event stands for; None for releases, other keys and non-key events."""
    if type_ != EV_KEY or value not in (KEY_DOWN, KEY_HOLD):
        return None
    name = KEY_CODES.get(code)
    if name is None:
        return None
    action = linux_key_action(name)
    if action is None:
        return None
    return RemoteEvent(action, repeat=value == KEY_HOLD)


async def read_evdev(path: str, *, grab: bool = True) -> AsyncIterator[RemoteEvent]:
    """Yield the presses of the input device at ``path`` (python-evdev required).

    With ``grab``, the device is taken exclusively while the question is up, so the
    player does not also act on the same buttons. Missing evdev or device: logs and
    yields nothing.
    """
    try:
        import evdev
    except ImportError:
        log.warning("evdev input %s needs the evdev extra (pip install iptv-nps[evdev])", path)
        return
    try:
        device = evdev.InputDevice(path)
    except OSError as exc:
        log.warning("no evdev input (%s: %s)", path, exc)
        return
    try:
        if grab:
            try:
                device.grab()
            except OSError as exc:
                log.info("could not grab %s (%s); reading it shared", path, exc)
        async for raw in device.async_read_loop():
            event = evdev_event(raw.type, raw.code, raw.value)
            if event is not None:
                yield event
    finally:
        device.close()
