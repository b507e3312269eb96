""":class:`TextualPresenter`: the agent's side of the question, in its own process.

The agent imports this module when a question is due; it does not import Textual. The
question runs in a child process (``python -m stb_widget.ui.prompt``) with the terminal
as its stdin, stdout and stderr, so the agent stays small while idle and Textual's memory
goes away with the question. The two talk over a socket pair (:mod:`.ipc`):
the child reports the confirmed answer and waits until :meth:`SurveySink.confirmed`
returned before it shows anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final

from protocol import SurveyRecord

from ..survey_port import PresenterUnavailable, SurveyRequest, SurveySink
from . import ipc
from .lirc import DEFAULT_LIRCD_SOCKET

log = logging.getLogger(__name__)

_VT: Final = re.compile(r"/dev/tty\d+")
#: Safety net for a prompt that hangs: no word from it for this long ends it.
_SILENCE_S: Final = 600.0
_PACKAGE_ROOT: Final = str(Path(__file__).resolve().parents[2])


def find_terminal(tty: str) -> str:
    """The terminal device to draw on: ``tty``, or for "" the one this process runs in.

    Raises :class:`PresenterUnavailable` where there is none.
    """
    if tty:
        return tty
    for fd in (0, 2, 1):
        with contextlib.suppress(OSError, ValueError):
            if os.isatty(fd):
                return os.ttyname(fd)
    raise PresenterUnavailable("no terminal: stdin, stdout and stderr are not terminals")


def open_terminal(path: str) -> int:
    """Open ``path`` read-write (not as a controlling terminal); must be a terminal."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise PresenterUnavailable(f"cannot open {path}: {exc.strerror}") from None
    if not os.isatty(fd):
        os.close(fd)
        raise PresenterUnavailable(f"{path} is not a terminal")
    return fd


class TextualPresenter:
    """Shows the question with Textual in a child process on ``request.tty``.

    Args:
        lirc_socket: lircd's socket to read remote buttons from (None: no LIRC). A
            missing socket is logged and ignored.
        evdev_devices: ``/dev/input/event*`` devices to read (needs the ``evdev`` extra).
        thanks_s: how long the thank-you stays up.
        theme: ``stb-tv`` or ``stb-console``; default by the terminal (``TERM``, and
            ``/dev/ttyN`` is the Linux console).
        python: the interpreter for the child.
        on_shown: called when the child reports its first frame (benchmarks, logs).
    """

    def __init__(
        self,
        *,
        lirc_socket: str | None = DEFAULT_LIRCD_SOCKET,
        evdev_devices: Sequence[str] = (),
        thanks_s: float | None = None,
        theme: str | None = None,
        python: str = sys.executable,
        on_shown: Callable[[], None] | None = None,
    ) -> None:
        self.lirc_socket = lirc_socket
        self.evdev_devices = tuple(evdev_devices)
        self.thanks_s = thanks_s
        self.theme = theme
        self.python = python
        self.on_shown = on_shown
        #: The prompt process's pid while a question is up.
        self.pid: int | None = None

    def _argv(self, request: SurveyRequest, ipc_fd: int) -> list[str]:
        # -S: no site processing (a few dozen ms on a box); the import path is handed over
        # in PYTHONPATH instead (see _env). -P: the agent's working directory is not on it.
        argv = [self.python, "-S", "-P", "-m", "stb_widget.ui.prompt", "--ipc-fd", str(ipc_fd)]
        argv += ["--request", json.dumps(_request_json(request))]
        if self.lirc_socket and os.path.exists(self.lirc_socket):
            argv += ["--lirc", self.lirc_socket]
        for device in self.evdev_devices:
            argv += ["--evdev", device]
        if self.thanks_s is not None:
            argv += ["--thanks-s", str(self.thanks_s)]
        if self.theme:
            argv += ["--theme", self.theme]
        return argv

    def _env(self, terminal: str) -> dict[str, str]:
        env = dict(os.environ)
        # Textual sizes itself from these before asking the terminal; stale values from
        # the agent's environment would give a wrongly sized screen.
        env.pop("COLUMNS", None)
        env.pop("LINES", None)
        if _VT.fullmatch(terminal):
            env["TERM"] = "linux"  # a virtual console, whatever the agent was started from
        env.setdefault("TERM", "linux")
        # This process's import path as site.py and .pth files made it, for the child's
        # "python -S": the same packages, without paying for site processing again.
        paths = [_PACKAGE_ROOT, *(p for p in sys.path if p and os.path.isdir(p))]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        return env

    async def present(self, request: SurveyRequest, sink: SurveySink) -> SurveyRecord:
        """Show the question once; see :class:`~stb_widget.survey_port.SurveyPresenter`.

        ``sink.confirmed`` is awaited before the child may go on to the pick-list. Raises
        :class:`PresenterUnavailable` where there is no terminal, or where the prompt
        ended without an outcome before a score was confirmed.
        """
        terminal = find_terminal(request.tty)
        tty_fd = open_terminal(terminal)
        ours, theirs = socket.socketpair()
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._argv(request, theirs.fileno()),
                stdin=tty_fd,
                stdout=tty_fd,
                stderr=tty_fd,
                pass_fds=(theirs.fileno(),),
                env=self._env(terminal),
                # Another terminal than ours: no job-control ties to the agent's session.
                start_new_session=bool(request.tty),
            )
        except OSError as exc:
            ours.close()
            raise PresenterUnavailable(f"cannot start the prompt: {exc}") from None
        finally:
            os.close(tty_fd)
            theirs.close()
        self.pid = proc.pid
        try:
            return await self._converse(proc, ours, sink)
        finally:
            self.pid = None
            await _reap(proc)

    async def _converse(
        self, proc: asyncio.subprocess.Process, sock: socket.socket, sink: SurveySink
    ) -> SurveyRecord:
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        stored: SurveyRecord | None = None
        final: SurveyRecord | None = None
        try:
            while True:
                try:
                    line = await asyncio.wait_for(reader.readline(), _SILENCE_S)
                except TimeoutError:
                    log.error("the prompt said nothing for %.0f s; ending it", _SILENCE_S)
                    break
                if not line:
                    break
                try:
                    message = ipc.decode(line)
                except ValueError:
                    log.warning("prompt: unreadable message %r", line[:200])
                    continue
                kind = message["type"]
                if kind == ipc.SHOWN:
                    if self.on_shown is not None:
                        self.on_shown()
                elif kind == ipc.CONFIRMED:
                    record = ipc.decode_survey(message)
                    try:
                        await sink.confirmed(record)
                    except Exception:
                        # The viewer must not see the failure; finished() retries the
                        # store with the final record.
                        log.exception("storing the confirmed answer failed")
                    stored = record
                    writer.write(ipc.encode(ipc.STORED))
                    await writer.drain()
                elif kind == ipc.FINISHED:
                    final = ipc.decode_survey(message)
                    await sink.finished(final)
                elif kind == ipc.LOG:
                    log.log(int(message.get("level", logging.INFO)), "prompt: %s", message.get("message"))
        finally:
            writer.close()
        if final is not None:
            return final
        code = await asyncio.wait_for(proc.wait(), 5) if proc.returncode is None else proc.returncode
        if stored is not None:
            # The prompt died after the answer was stored: the answer stands, no reason.
            await sink.finished(stored)
            return stored
        raise PresenterUnavailable(f"the prompt ended (status {code}) without an outcome")


async def _reap(proc: asyncio.subprocess.Process) -> None:
    """Wait for the prompt to end; end it where it does not.

    Normally it shows the thank-you and exits. Where the pipe closed early (the agent
    gave up, or is shutting down and cancelled us) it exits at once, restoring the
    terminal; SIGTERM and SIGKILL are the fallbacks. Shielded, so that a cancelled
    agent still leaves no prompt behind.
    """
    if proc.returncode is not None:
        return
    await asyncio.shield(_reap_steps(proc))


async def _reap_steps(proc: asyncio.subprocess.Process) -> None:
    for step, grace in ((None, 30.0), (proc.terminate, 3.0), (proc.kill, None)):
        if step is not None:
            with contextlib.suppress(ProcessLookupError):
                step()
        try:
            await asyncio.wait_for(proc.wait(), grace)
            return
        except TimeoutError:
            continue


def _request_json(request: SurveyRequest) -> Mapping[str, object]:
    return {
        "survey_id": request.survey_id,
        "session_id": request.session_id,
        "locale": request.locale,
        "service_name": request.service_name,
        "timeout_s": request.timeout_s,
    }
