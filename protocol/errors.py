"""The protocol package's exception tree.

Every failure to read or write the wire format is a :class:`ProtocolError`; the
collector and the box convert these at their own boundaries.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class of every error raised by :mod:`protocol`."""


class FieldError(ProtocolError):
    """A value at ``path`` breaks the contract; ``message`` says how.

    ``str(err)`` reads ``records[3].qos.rebuffer_s: must be >= 0``.
    """

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class BatchError(ProtocolError):
    """The whole request is refused; ``code`` is the contract's error code.

    ``status`` is the HTTP status the collector answers with, ``detail`` a message
    naming what is wrong.
    """

    def __init__(self, status: int, code: str, detail: str) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        super().__init__(f"{code}: {detail}")


class MalformedError(BatchError):
    """Not JSON, not an object, a required envelope field missing or ill-typed, no records."""

    def __init__(self, detail: str) -> None:
        super().__init__(400, "malformed", detail)


class UnsupportedProtocolError(BatchError):
    """The envelope names a protocol version this code does not speak."""

    def __init__(self, detail: str) -> None:
        super().__init__(400, "unsupported_protocol", detail)


class TooManyRecordsError(BatchError):
    """More records in one batch than :data:`protocol.limits.MAX_RECORDS`."""

    def __init__(self, detail: str) -> None:
        super().__init__(400, "too_many_records", detail)


class TooLargeError(BatchError):
    """The body is over the size limit as sent or after decompression."""

    def __init__(self, detail: str) -> None:
        super().__init__(413, "too_large", detail)


class UnsupportedMediaTypeError(BatchError):
    """Another content type or content encoding than the contract allows."""

    def __init__(self, detail: str) -> None:
        super().__init__(415, "unsupported_media_type", detail)
