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
        "--db", "Data store: sqlite:///relative.db, sqlite:////absolute.db or postgresql://user@host/db "
        "(PostgreSQL needs the postgres extra: pip install '.[postgres]' in the repository)."))
    host: str = field(default="127.0.0.1", metadata=_opt(
        "--host", "Address to listen on (0.0.0.0 for every interface)."))
    port: int = field(default=8080, metadata=_opt("--port", "TCP port to listen on."))
    admin_token: str | None = field(default=None, repr=False, metadata=_opt(
        None, "The operators' token (from NPS_ADMIN_TOKEN); generated and kept in the store when unset.",
        env="NPS_ADMIN_TOKEN"))
    write_queue_batches: int = field(default=512, metadata=_opt(
        "--write-queue", "Batches waiting to be written before uploads are answered 503."))
    group_commit_records: int = field(default=10_000, metadata=_opt(
        "--group-commit", "Most records written in one transaction."))
    retry_after_s: int = field(default=10, metadata=_opt(
        "--retry-after", "Seconds a shed box is told to wait (Retry-After)."))
    box_rate_per_min: int = field(default=60, metadata=_opt(
        "--box-rate", "Upload requests a minute one box may make after its burst; more are "
        "answered 429 with Retry-After (a token bucket per box, in this instance's memory)."))
    box_burst: int = field(default=20, metadata=_opt(
        "--box-burst", "Upload requests one box may make at once before --box-rate applies."))
    body_timeout_s: int = field(default=30, metadata=_opt(
        "--body-timeout", "Seconds a client has to send a request body; slower ones get 408."))
    read_connections: int = field(default=2, metadata=_opt(
        "--read-connections", "SQLite read connections (each a thread)."))
    log_level: str = field(default="INFO", metadata=_opt(
        "--log-level", "DEBUG, INFO, WARNING or ERROR.", env="NPS_LOG_LEVEL"))
    webhook_url: str | None = field(default=None, metadata=_opt(
        "--webhook-url", "Detractor alerts are POSTed here (Standard Webhooks); unset: no alerts.",
        env="NPS_WEBHOOK_URL"))
    # repr=False: the secret must never reach a log line or a traceback.
    webhook_secret: str | None = field(default=None, repr=False, metadata=_opt(
        None, "The alerts' signing secret, whsec_<base64> (from NPS_WEBHOOK_SECRET).",
        env="NPS_WEBHOOK_SECRET"))
    webhook_mode: str = field(default="detractor", metadata=_opt(
        "--webhook-mode", "detractor: one alert per detractor answer; threshold: one alert "
        "per hour once that hour's detractors reach --webhook-threshold."))
    webhook_threshold: int = field(default=10, metadata=_opt(
        "--webhook-threshold", "Detractors within one hour that raise a threshold alert."))
    webhook_box_pending: int = field(default=100, metadata=_opt(
        "--webhook-box-pending", "Most detractor alerts of one box waiting for delivery in the "
        "store's outbox; more are dropped and counted in /metrics."))
    retention_days: int = field(default=0, metadata=_opt(
        "--retention-days", "Records older than this many days are purged hourly; 0 keeps all."))
    login_rate_per_min: int = field(default=10, metadata=_opt(
        "--login-rate", "Dashboard login attempts a minute one client address may make after "
        "its burst; more are answered 429 with Retry-After. Behind a reverse proxy every "
        "login comes from the proxy's address and shares one limit."))
    login_burst: int = field(default=20, metadata=_opt(
        "--login-burst", "Dashboard login attempts one client address may make at once."))
    dashboard_session_hours: int = field(default=12, metadata=_opt(
        "--session-hours", "How long a dashboard login lasts."))

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
        for name in ("write_queue_batches", "group_commit_records", "retry_after_s", "read_connections",
                     "box_rate_per_min", "box_burst", "body_timeout_s", "webhook_box_pending",
                     "login_rate_per_min", "login_burst"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be at least 1")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"log_level: {self.log_level!r} is not DEBUG, INFO, WARNING or ERROR")
        parse_db_url(self.db)
        if self.webhook_mode not in ("detractor", "threshold"):
            raise ConfigError(f"webhook_mode: {self.webhook_mode!r} is not detractor or threshold")
        if self.webhook_threshold < 1 or self.dashboard_session_hours < 1:
            raise ConfigError("webhook_threshold and dashboard_session_hours: must be at least 1")
        if self.retention_days < 0:
            raise ConfigError("retention_days: must be 0 (keep all) or more")
        if self.webhook_url is not None:
            if not self.webhook_url.startswith(("http://", "https://")):
                raise ConfigError("webhook_url: must be an http:// or https:// URL")
            if not self.webhook_secret:
                raise ConfigError("webhook_secret: NPS_WEBHOOK_SECRET is required with webhook_url")
        if self.webhook_secret is not None:
            _check_whsec(self.webhook_secret)
        if self.admin_token is not None:
            check_admin_token(self.admin_token)


#: What an admin token must have at least: characters, different characters, and bits
#: by a rough estimate (length times log2 of the alphabets its characters come from).
ADMIN_TOKEN_MIN_CHARS = 24
ADMIN_TOKEN_MIN_DISTINCT = 10
ADMIN_TOKEN_MIN_BITS = 128


def admin_token_weakness(token: str) -> str | None:
    """Why ``token`` is too weak to be the admin token, or None. It opens every report,
    the export and the dashboard and enrols boxes, and login attempts are only
    rate-limited, not locked out: it must not be guessable. The estimate is crude (it
    cannot tell a random token from a long phrase) but refuses the short, repetitive and
    single-alphabet tokens people type."""
    import math
    import string

    if len(token) < ADMIN_TOKEN_MIN_CHARS:
        return f"it has {len(token)} characters, fewer than {ADMIN_TOKEN_MIN_CHARS}"
    if len(set(token)) < ADMIN_TOKEN_MIN_DISTINCT:
        return f"it uses only {len(set(token))} different characters"
    alphabet = 0
    for chars in (string.ascii_lowercase, string.ascii_uppercase, string.digits):
        if any(c in chars for c in token):
            alphabet += len(chars)
    if any(not c.isascii() or not c.isalnum() for c in token):
        alphabet += 32
    bits = len(token) * math.log2(alphabet)
    if bits < ADMIN_TOKEN_MIN_BITS:
        return (f"{len(token)} characters from an alphabet of {alphabet} make about "
                f"{bits:.0f} bits, fewer than {ADMIN_TOKEN_MIN_BITS}")
    return None


def check_admin_token(token: str) -> None:
    """Raise :class:`ConfigError` saying why ``token`` is weak and what is strong enough;
    the message never quotes the token."""
    why = admin_token_weakness(token)
    if why is not None:
        raise ConfigError(
            f"admin_token: NPS_ADMIN_TOKEN is too weak ({why}). It guards the reports, the "
            f"export, enrolment and the dashboard; use a random token of at least "
            f"{ADMIN_TOKEN_MIN_BITS} bits (at least {ADMIN_TOKEN_MIN_CHARS} characters), e.g. "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))', or leave it unset "
            "and the collector generates one and keeps it in its data store.")


def plain_help(text: str) -> str:
    """Help text as a terminal shows it: docstrings here use reST markup (````name````),
    which ``--help`` must not print."""
    return text.replace("``", "")


def environment_help() -> str:
    """The ``serve --help`` epilog: every setting read from the environment, those with no
    flag first (they can be given no other way)."""
    import textwrap

    lines = ["environment (a flag, where there is one, wins):"]
    for only_env in (True, False):
        for f in fields(Settings):
            env = f.metadata.get("env")
            if env and (f.metadata.get("flag") is None) == only_env:
                how = "environment only" if only_env else f"or {f.metadata['flag']}"
                lines += textwrap.wrap(f"{plain_help(f.metadata['help'])} ({how})", width=78,
                                       initial_indent=f"  {env:<20} ", subsequent_indent=" " * 23)
    return "\n".join(lines)


def _check_whsec(secret: str) -> None:
    """A Standard Webhooks secret: ``whsec_`` then base64 of 24 to 64 random bytes.
    The message never quotes the secret."""
    import base64
    import binascii

    if not secret.startswith("whsec_"):
        raise ConfigError("webhook_secret: must start with whsec_")
    try:
        key = base64.b64decode(secret[len("whsec_"):], validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("webhook_secret: the part after whsec_ is not base64") from None
    if not 24 <= len(key) <= 64:
        raise ConfigError("webhook_secret: must decode to 24 to 64 bytes")


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
