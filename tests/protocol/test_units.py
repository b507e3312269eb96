"""protocol.units and the datetime range in protocol.timefmt, against datetime itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from protocol.timefmt import MAX_US, MIN_US, from_micros, to_micros
from protocol.units import DAY_S, DAY_US, HOUR_S, HOUR_US, MINUTE_S, SECOND_US


def test_units_agree_with_timedelta() -> None:
    assert timedelta(minutes=1).total_seconds() == MINUTE_S
    assert timedelta(hours=1).total_seconds() == HOUR_S
    assert timedelta(days=1).total_seconds() == DAY_S
    assert timedelta(seconds=1) // timedelta(microseconds=1) == SECOND_US
    assert timedelta(hours=1) // timedelta(microseconds=1) == HOUR_US
    assert timedelta(days=1) // timedelta(microseconds=1) == DAY_US


def test_the_datetime_range_in_microseconds() -> None:
    # 0001-01-01 is 719162 days before 1970-01-01 (proleptic Gregorian).
    assert MIN_US == -719_162 * 86_400 * 1_000_000
    assert MAX_US == 253_402_300_799_999_999
    assert from_micros(MIN_US) == datetime.min.replace(tzinfo=UTC)
    assert from_micros(MAX_US) == datetime.max.replace(tzinfo=UTC)
    assert to_micros(datetime(1970, 1, 2, tzinfo=UTC)) == 86_400_000_000
