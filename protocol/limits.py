"""The wire format's limits, shared by the box (which must stay under them) and the collector."""

from __future__ import annotations

PROTOCOL_VERSION = 1
MAX_RECORDS = 500
#: A request body as it travels (gzip or not).
MAX_BODY_BYTES = 1024 * 1024
#: A request body after decompression.
MAX_INFLATED_BYTES = 8 * 1024 * 1024
#: A box id: 1 to 64 characters of this set.
BOX_ID_PATTERN = r"^[A-Za-z0-9._:\-]{1,64}$"
#: Longest accepted string in a record or in the box attributes. The contract names no
#: bound; this one keeps a broken or hostile box from filling the store with megabytes.
MAX_STRING = 1024
#: Largest JSON integer read as a number: exact in every JSON reader and in a double.
MAX_INT = 2**53 - 1
#: Largest accepted count (and ``startup_ms``): contract section 3 says "below 2^31", so
#: every count fits the 32-bit integer columns of any database behind the collector.
MAX_COUNT = 2**31 - 1
#: Largest accepted number.
MAX_NUMBER = 1e15
#: The collector shifts a batch's times when ``sent_at`` is off by more than this.
CLOCK_SKEW_TOLERANCE_S = 300.0
