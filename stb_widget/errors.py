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


class BufferError(AgentError):
    """The offline buffer cannot be opened or written."""


class SourceError(AgentError):
    """A player source cannot be set up (socket path unusable, ...)."""
