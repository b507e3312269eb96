"""The prompt process's side of the pipe to the agent, and the run of the app.

Imported by :mod:`.prompt` only after the splash is on screen: this is where asyncio,
the protocol package and Textual get loaded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import socket
from collections.abc import Callable, Sequence

from protocol import SurveyRecord

from ..survey_port import SurveyRequest
from . import ipc
from .app import THANKS_S, RemoteSource, SurveyApp
from .evdev_input import read_evdev
from .lirc import read_lircd


class Channel:
    """The child's end of the pipe: one reader task, so that the agent closing the pipe
    (it was stopped, or gave up on the question) ends the prompt at any point."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._stored = asyncio.Event()
        self.closed = False
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, fd: int) -> Channel:
        """Wrap the inherited socket ``fd``."""
        reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=fd))
        return cls(reader, writer)

    def start(self, on_close: Callable[[], None]) -> None:
        """Start reading the agent's messages; ``on_close`` runs when the agent hangs up."""
        self._task = asyncio.get_running_loop().create_task(self._read(on_close))

    async def _read(self, on_close: Callable[[], None]) -> None:
        try:
            while line := await self.reader.readline():
                with contextlib.suppress(ValueError):
                    if ipc.decode(line)["type"] == ipc.STORED:
                        self._stored.set()
        except OSError:
            pass
        self.closed = True
        self._stored.set()
        on_close()

    def send(self, line: bytes) -> None:
        """Queue one message (the stream flushes it without blocking the UI)."""
        if not self.writer.is_closing():
            self.writer.write(line)

    async def wait_stored(self) -> None:
        """Wait until the agent acknowledges the stored answer."""
        await self._stored.wait()
        self._stored.clear()
        if self.closed:
            raise ConnectionError("the agent closed the pipe before the answer was stored")

    async def close(self) -> None:
        """Flush and close."""
        if self._task is not None:
            self._task.cancel()
        with contextlib.suppress(OSError):
            await self.writer.drain()
        self.writer.close()


class PipeSink:
    """A :class:`~stb_widget.survey_port.SurveySink` that forwards to the agent."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    async def confirmed(self, record: SurveyRecord) -> None:
        """Send the answer and wait until the agent has stored it."""
        self.channel.send(ipc.encode_record(ipc.CONFIRMED, record))
        await self.channel.writer.drain()
        await self.channel.wait_stored()

    async def finished(self, record: SurveyRecord) -> None:
        """Send the final record."""
        self.channel.send(ipc.encode_record(ipc.FINISHED, record))
        await self.channel.writer.drain()


class PipeLogHandler(logging.Handler):
    """Sends log lines to the agent: on the TV screen they would be garbage."""

    def __init__(self, channel: Channel) -> None:
        super().__init__(logging.INFO)
        self.channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.channel.send(ipc.encode(ipc.LOG, level=record.levelno, message=self.format(record)))
        except Exception:  # a log line must never break the prompt
            self.handleError(record)


def _sources(lirc: str | None, evdev: Sequence[str]) -> list[RemoteSource]:
    sources: list[RemoteSource] = []
    if lirc:
        sources.append(functools.partial(read_lircd, lirc))
    for path in evdev:
        sources.append(functools.partial(read_evdev, path))
    return sources


def parse_request(text: str) -> SurveyRequest:
    """The request as :class:`~stb_widget.ui.presenter.TextualPresenter` serialises it."""
    data = json.loads(text)
    return SurveyRequest(
        survey_id=str(data["survey_id"]),
        session_id=None if data.get("session_id") is None else str(data["session_id"]),
        locale=str(data["locale"]),
        service_name=str(data["service_name"]),
        timeout_s=float(data["timeout_s"]),
    )


async def run(args: argparse.Namespace) -> int:
    """Show the question; the outcome goes over the pipe."""
    channel = await Channel.open(args.ipc_fd)
    root = logging.getLogger()
    root.handlers[:] = [PipeLogHandler(channel)]
    root.setLevel(logging.INFO)
    app = SurveyApp(
        parse_request(args.request),
        PipeSink(channel),
        thanks_s=THANKS_S if args.thanks_s is None else args.thanks_s,
        theme=args.theme,
        remotes=_sources(args.lirc, args.evdev),
        on_shown=lambda: channel.send(ipc.encode(ipc.SHOWN)),
        shown_at=getattr(args, "shown_at", None),
    )
    channel.start(on_close=lambda: app.exit(app.final))
    await app.run_async(mouse=False)
    await channel.close()
    return 0 if app.final is not None else 1
