"""The collector's settings, each declared once; CLI flags and docs are generated from here."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError

DEFAULT_DB = "sqlite:///nps-data/collector.db"


def _opt(flag: str | None, help: str, **extra: Any) -> Any:
    return {"flag": flag, "help": help, **extra}


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the collector can be told. Build with :meth:`from_env` or directly in tests."""

    db: str = field(default=DEFAULT_DB, metadata=_opt(
        "--db", "Data store: sqlite:///relative.db, sqlite:////absolute.db or postgresql://user@host/db."))
    host: str = field(default="127.0.0.1", metadata=_opt(
        "--host", "Address to listen on (0.0.0.0 for every interface)."))
    port: int = field(default=8080, metadata=_opt("--port", "TCP port to listen on."))
    admin_token: str | None = field(default=None, metadata=_opt(
        None, "The operators' token (from NPS_ADMIN_TOKEN); generated and kept in the store when unset.",
        env="NPS_ADMIN_TOKEN"))
    write_queue_batches: int = field(default=512, metadata=_opt(
        "--write-queue", "Batches waiting to be written before uploads are answered 503."))
    group_commit_records: int = field(default=10_000, metadata=_opt(
        "--group-commit", "Most records written in one transaction."))
    retry_after_s: int = field(default=10, metadata=_opt(
        "--retry-after", "Seconds a shed box is told to wait (Retry-After)."))
    read_connections: int = field(default=2, metadata=_opt(
        "--read-connections", "SQLite read connections (each a thread)."))
    log_level: str = field(default="INFO", metadata=_opt(
        "--log-level", "DEBUG, INFO, WARNING or ERROR.", env="NPS_LOG_LEVEL"))

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Settings from the environment, then ``overrides`` (None means not given)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            env = f.metadata.get("env")
            if env and os.environ.get(env):
                values[f.name] = os.environ[env]
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad setting."""
        if not (0 < self.port < 65536):
            raise ConfigError(f"port: {self.port} is not a TCP port")
        for name in ("write_queue_batches", "group_commit_records", "retry_after_s", "read_connections"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be at least 1")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"log_level: {self.log_level!r} is not DEBUG, INFO, WARNING or ERROR")
        parse_db_url(self.db)


@dataclass(frozen=True, slots=True)
class DbUrl:
    """A parsed ``--db`` URL."""

    scheme: str  # "sqlite" | "postgresql"
    path: Path | None = None
    dsn: str | None = None


def parse_db_url(url: str) -> DbUrl:
    """Parse ``--db``: ``sqlite:///rel.db``, ``sqlite:////abs.db`` or ``postgresql://...``."""
    if url.startswith("sqlite:///"):
        rest = url[len("sqlite:///"):]
        if not rest or rest == "/":
            raise ConfigError(f"db: {url!r} names no file")
        return DbUrl("sqlite", path=Path(rest))
    if url.startswith(("postgresql://", "postgres://")):
        return DbUrl("postgresql", dsn=url)
    raise ConfigError(
        f"db: {url!r} is not sqlite:///relative.db, sqlite:////absolute.db or postgresql://user@host/db"
    )


def settings_help() -> list[tuple[str, str, str]]:
    """(flag or env, default, help) for each setting: the source of the CLI and the docs."""
    rows = []
    for f in fields(Settings):
        name = f.metadata.get("flag") or f"${f.metadata.get('env')}"
        rows.append((name, repr(f.default), f.metadata["help"]))
    return rows
