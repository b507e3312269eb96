"""A pseudo-terminal for end-to-end tests: the prompt draws on it, tests type into it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import struct
import termios
import threading
import time


class PtyTerminal:
    """A pty of ``cols`` x ``rows``; a thread collects everything drawn on it."""

    def __init__(self, cols: int = 100, rows: int = 30) -> None:
        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.name = os.ttyname(self.slave)
        self._output = bytearray()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self._output += data

    @property
    def output(self) -> bytes:
        """Everything drawn so far."""
        with self._lock:
            return bytes(self._output)

    def find(self, text: str) -> int:
        """Where ``text`` was first drawn (byte offset), -1 if not yet."""
        return self.output.find(text.encode("utf-8"))

    def wait_for(self, text: str, timeout: float = 20.0, start: int = 0) -> int:
        """Block until ``text`` is drawn after ``start``; its offset."""
        needle = text.encode("utf-8")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            at = self.output.find(needle, start)
            if at >= 0:
                return at
            time.sleep(0.02)
        raise AssertionError(f"{text!r} never appeared; the terminal shows: {self.output[-600:]!r}")

    def type(self, *keys: bytes, gap: float = 0.15) -> None:
        """Type keys, with a gap so that Escape is not taken for the start of a sequence."""
        for key in keys:
            os.write(self.master, key)
            time.sleep(gap)

    def close(self) -> None:
        for fd in (self.slave, self.master):
            with contextlib.suppress(OSError):
                os.close(fd)


ENTER = b"\r"
ESCAPE = b"\x1b"
DOWN = b"\x1b[B"
UP = b"\x1b[A"
LEFT = b"\x1b[D"
RIGHT = b"\x1b[C"
