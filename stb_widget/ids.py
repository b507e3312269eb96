"""UUIDv7 record ids (RFC 9562): time-ordered, so the collector's indexes stay compact."""

from __future__ import annotations

import os
import threading
import time

_lock = threading.Lock()
_last_ms = 0
_last_seq = 0


def uuid7(unix_ms: int | None = None) -> str:
    """A new UUIDv7 string in the 8-4-4-4-12 form.

    Within one millisecond the 12-bit ``rand_a`` field is a counter (RFC 9562 method 1),
    so ids made in one process sort in the order they were made (up to 2048 a ms).
    ``unix_ms`` lets a simulator stamp ids with its virtual time.
    """
    global _last_ms, _last_seq
    ms = int(time.time() * 1000) if unix_ms is None else unix_ms
    with _lock:
        if ms == _last_ms and _last_seq < 0xFFF:
            # Same millisecond: count up, so ids made in one process keep their order.
            _last_seq += 1
        else:
            # A new millisecond (or a clock that stepped back, or a simulator's other
            # virtual clock): a fresh random start; the 62 random bits keep ids unique.
            _last_seq = int.from_bytes(os.urandom(2), "big") & 0x7FF
        _last_ms = ms
        seq = _last_seq
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
