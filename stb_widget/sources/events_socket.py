"""The ``events`` source: JSON lines on a unix socket the agent listens on.

Any number of writers, connecting and disconnecting as they like; a writer going away
ends nothing. A bad line is logged and skipped.

Under systemd the socket may be made by ``deploy/stb-widget.socket`` (socket activation,
``sd_listen_fds``): the agent then serves the inherited socket bound to
``player.events_socket`` and leaves the path to systemd. This is how the contract's
default path ``/run/stb-widget.sock``, in a directory only root may write, comes to exist
for an agent running as its own user.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
from pathlib import Path

from ..errors import EventError, SourceError
from ..events import MAX_LINE, parse_event_line
from . import Feed, ServedSource

log = logging.getLogger(__name__)

#: Bad lines logged in full per connection; after that one in every ``_LOG_EVERY``.
_LOG_FIRST = 20
_LOG_EVERY = 1000


class EventsSocketSource(ServedSource):
    """Listens on ``path`` and feeds each good line to ``feed``."""

    def __init__(self, path: str | Path, feed: Feed, mode: int = 0o660) -> None:
        super().__init__()
        self._path = Path(path)
        self._feed = feed
        self._mode = mode
        self._inherited = False
        self.bad_lines = 0

    async def start(self) -> None:
        """Bind the socket (a stale socket file from a previous run is replaced), or serve
        the one systemd passed for this path."""
        inherited = inherited_socket(self._path)
        if inherited is not None:
            self._inherited = True
            self._server = await asyncio.start_unix_server(
                self._client, sock=inherited, limit=MAX_LINE + 1)
            log.info("listening for player events on %s (socket from systemd)", self._path)
            return
        try:
            if self._path.is_socket():
                self._path.unlink()
            elif self._path.exists():
                raise SourceError(f"player.events_socket: {self._path} exists and is no socket")
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._server = await asyncio.start_unix_server(
                self._client, path=str(self._path), limit=MAX_LINE + 1
            )
            os.chmod(self._path, stat.S_IMODE(self._mode))
        except OSError as exc:
            hint = ""
            if isinstance(exc, PermissionError):
                hint = (" (under systemd, enable deploy/stb-widget.socket, which makes this "
                        "path, or set player.events_socket under the unit's RuntimeDirectory, "
                        "/run/stb-widget/)")
            raise SourceError(
                f"player.events_socket: cannot listen on {self._path}: "
                f"{exc.strerror or exc}{hint}") from exc
        log.info("listening for player events on %s", self._path)

    def _closed(self) -> None:
        if not self._inherited:  # systemd's socket stays for the next start
            self._path.unlink(missing_ok=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        bad = 0
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than MAX_LINE: the rest of it is dropped
                    line = b"\x00too long"
                except (ConnectionError, OSError):
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                try:
                    event = parse_event_line(line)
                except EventError as exc:
                    bad += 1
                    self.bad_lines += 1
                    if bad <= _LOG_FIRST or bad % _LOG_EVERY == 0:
                        log.warning("bad player event line skipped (%s): %.120r", exc, line)
                    continue
                await self._feed(event)
        except asyncio.CancelledError:
            # close() cancels the writers' handlers; ending quietly here keeps asyncio's
            # stream callback from logging the cancellation as an error at every shutdown.
            pass
        finally:
            self._conns.discard(task)
            writer.close()


#: The first file descriptor systemd passes (``SD_LISTEN_FDS_START``).
_LISTEN_FDS_START = 3


def inherited_socket(path: Path) -> socket.socket | None:
    """The listening unix socket systemd passed for ``path`` (``sd_listen_fds``), or None.

    The ``LISTEN_*`` variables are meant for this process only (``LISTEN_PID``) and are
    removed, so that no child takes them for its own.
    """
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        count = 0
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    found: socket.socket | None = None
    for fd in range(_LISTEN_FDS_START, _LISTEN_FDS_START + count):
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            continue
        if (found is None and sock.family == socket.AF_UNIX
                and sock.type == socket.SOCK_STREAM and sock.getsockname() == str(path)):
            sock.setblocking(False)
            found = sock
        else:
            sock.detach()  # not ours to close
    if found is None and count:
        log.warning("systemd passed %d socket(s), none bound to player.events_socket=%s; "
                    "binding it here", count, path)
    return found
