"""Storage backends behind one interface; :func:`open_storage` picks one from ``--db``."""

from __future__ import annotations

from ..errors import ConfigError
from ..settings import Settings, parse_db_url
from .base import ExportRow, Storage

__all__ = ["ExportRow", "Storage", "make_storage"]


def make_storage(settings: Settings) -> Storage:
    """A (not yet opened) store for ``settings.db``."""
    url = parse_db_url(settings.db)
    if url.scheme == "sqlite":
        from .sqlite import SQLiteStorage

        assert url.path is not None
        return SQLiteStorage(
            url.path, queue_batches=settings.write_queue_batches,
            group_records=settings.group_commit_records, retry_after_s=settings.retry_after_s,
            read_connections=settings.read_connections,
        )
    if url.scheme == "postgresql":
        try:
            from .postgres import PostgresStorage  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise ConfigError(f"db: PostgreSQL support is not installed ({exc}); install the postgres "
                              "extra: pip install '.[postgres]' in the repository") from exc
        store: Storage = PostgresStorage(url.dsn, settings)
        return store
    raise ConfigError(f"db: unknown scheme {url.scheme}")  # pragma: no cover
