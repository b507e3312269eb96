"""RFC 3339 times: strict parsing to aware UTC datetimes, and formatting with ``Z``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from .units import DAY_S, SECOND_US

#: The shape of an RFC 3339 date-time; the JSON Schema carries it too.
RFC3339_PATTERN = (
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?"
    r"([Zz]|[+-]\d{2}:\d{2})$"
)
_RFC3339 = re.compile(RFC3339_PATTERN)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 date-time into an aware datetime in UTC.

    Raises ``ValueError`` with a short reason for anything else (a date alone, no
    offset, an impossible date).
    """
    m = _RFC3339.fullmatch(text)
    if m is not None and m.group(6) != "60":
        # Fast path: the shape is RFC 3339, and Python reads that shape natively.
        try:
            return datetime.fromisoformat(text).astimezone(UTC)
        except (ValueError, OverflowError):
            pass  # lower-case t/z, or an impossible date: the slow path says which
    if m is None:
        raise ValueError("must be an RFC 3339 date-time such as 2026-11-22T20:15:03.120Z")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac = m.group(7)
    micro = int((frac[1:] + "000000")[:6]) if frac else 0
    offset = m.group(8)
    if second == 60:  # a leap second is a valid RFC 3339 time; Python cannot hold it
        second = 59
        micro = 999999
    try:
        naive = datetime(year, month, day, hour, minute, second, micro)
    except ValueError as exc:
        raise ValueError(f"not a valid date-time ({exc})") from None
    if offset in ("Z", "z"):
        delta = timedelta(0)
    else:
        sign = 1 if offset[0] == "+" else -1
        oh, om = int(offset[1:3]), int(offset[4:6])
        if oh > 23 or om > 59:
            raise ValueError("has an invalid UTC offset")
        delta = sign * timedelta(hours=oh, minutes=om)
    try:
        return (naive - delta).replace(tzinfo=UTC)
    except OverflowError:
        raise ValueError("is out of range") from None


def format_rfc3339(when: datetime) -> str:
    """Format an aware datetime as UTC with ``Z``: milliseconds, or microseconds when needed."""
    utc = when.astimezone(UTC)
    # Not strftime("%Y"): glibc does not pad years before 1000 to four digits.
    base = (f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T"
            f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}")
    if utc.microsecond % 1000 == 0:
        return f"{base}.{utc.microsecond // 1000:03d}Z"
    return f"{base}.{utc.microsecond:06d}Z"


def to_micros(when: datetime) -> int:
    """Microseconds since the Unix epoch, exact (no float rounding)."""
    delta = when - _EPOCH
    return (delta.days * DAY_S + delta.seconds) * SECOND_US + delta.microseconds


def from_micros(us: int) -> datetime:
    """The inverse of :func:`to_micros`."""
    return _EPOCH + timedelta(microseconds=us)


#: 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z in microseconds: the earliest and
#: latest times RFC 3339 (and datetime) can write.
MIN_US = to_micros(datetime.min.replace(tzinfo=UTC))
MAX_US = to_micros(datetime.max.replace(tzinfo=UTC))


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)
