"""Time units, defined once: the wire and the stores count time in microseconds since the
Unix epoch, timers and rates in seconds."""

from __future__ import annotations

from typing import Final

__all__ = ["DAY_S", "DAY_US", "HOUR_S", "HOUR_US", "MINUTE_S", "SECOND_US"]

#: Seconds in a minute, an hour and a (UTC, leap-second-free) day.
MINUTE_S: Final = 60
HOUR_S: Final = 60 * MINUTE_S
DAY_S: Final = 24 * HOUR_S
#: Microseconds in a second, an hour and a day.
SECOND_US: Final = 1_000_000
HOUR_US: Final = HOUR_S * SECOND_US
DAY_US: Final = DAY_S * SECOND_US
