"""The collector's exception tree; HTTP handlers turn these into the contract's answers."""

from __future__ import annotations


class CollectorError(Exception):
    """Base class of every error raised by :mod:`collector`."""


class ConfigError(CollectorError):
    """A setting or the database URL is wrong; the message names it."""


class StorageError(CollectorError):
    """The data store failed."""


class StoreClosedError(StorageError):
    """The store was used after :meth:`close`."""


class SchemaError(StorageError):
    """The data store's schema cannot be used or migrated; the message says why."""


class SchemaTooNewError(SchemaError):
    """The data store was upgraded by a newer collector than this one."""


class MigrationRequiredError(SchemaError):
    """The data store needs a migration that only ``nps-collector migrate`` applies."""


class OverloadedError(CollectorError):
    """The write queue is full: shed load and tell the box when to come back."""

    def __init__(self, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"write queue full; retry after {retry_after_s} s")


class TokenRefusedError(CollectorError):
    """An upload's token, checked in the transaction that would store it, is unknown
    (``kind`` "unknown"), revoked ("revoked") or another box's ("other_box")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(f"upload token refused: {kind}")


class BadQueryError(CollectorError):
    """A report or export parameter is wrong; the message names it."""
