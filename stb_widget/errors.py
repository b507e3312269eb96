"""The agent's one exception tree; lower layers' errors are converted at the boundary."""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error the box agent raises on purpose."""


class ConfigError(AgentError):
    """A bad, missing or unknown configuration key; the message starts with the key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class EventError(AgentError):
    """A player event line that cannot be understood (logged and skipped)."""


class StoreError(AgentError):
    """The offline buffer cannot be opened or written."""


class SourceError(AgentError):
    """A player source cannot be set up (socket path unusable, ...)."""


class NetworkError(AgentError):
    """The collector could not be reached, or its answer could not be read as HTTP.

    The uploader retries these with backoff; the records stay in the buffer.
    """


class NetworkTimeout(NetworkError):
    """Connecting, or the whole request, took longer than its configured timeout."""


class ResponseTooLarge(NetworkError):
    """The collector's answer is over the client's bound (a collector answer is small)."""


class ClientClosedError(AgentError):
    """The HTTP client was used after ``close()``: a bug in the caller, never retried."""
