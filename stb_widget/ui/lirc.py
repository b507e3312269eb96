"""LIRC input: reads lircd's socket, whose lines are ``<code> <repeat> <KEY_NAME> <remote>``.

``repeat`` is a hexadecimal count, 0 for the press itself and 1, 2, ... while the button
is held. Repeats are passed on marked as such; :func:`~stb_widget.ui.keys.accept` lets
only moves through, so a held OK never confirms. Lines lircd sends in reply to commands
(``BEGIN`` ... ``END``) and anything else that does not parse are skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Final

from .keys import RemoteEvent, linux_key_action

log = logging.getLogger(__name__)

#: Where lircd listens on current distributions.
DEFAULT_LIRCD_SOCKET: Final = "/run/lirc/lircd"


def parse_lircd_line(line: str) -> RemoteEvent | None:
    """The event of one lircd line, or None for lines that mean nothing to the survey."""
    parts = line.split()
    if len(parts) < 3:
        return None
    code, repeat_hex, name = parts[0], parts[1], parts[2]
    try:
        int(code, 16)
        repeat = int(repeat_hex, 16)
    except ValueError:
        return None
    action = linux_key_action(name)
    if action is None:
        return None
    return RemoteEvent(action, repeat=repeat > 0)


async def read_lircd(path: str = DEFAULT_LIRCD_SOCKET) -> AsyncIterator[RemoteEvent]:
    """Yield the presses lircd reports on ``path`` until it closes the socket.

    Where lircd is not running, logs once and yields nothing: the terminal keyboard and
    other sources still work.
    """
    try:
        reader, writer = await asyncio.open_unix_connection(path)
    except OSError as exc:
        log.info("no LIRC input (%s: %s)", path, exc)
        return
    try:
        while line := await reader.readline():
            event = parse_lircd_line(line.decode("utf-8", "replace"))
            if event is not None:
                yield event
    finally:
        writer.close()
