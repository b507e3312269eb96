"""``box-sim box``: one box in a terminal; the tester answers the real question by keyboard."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import sys
import time
from pathlib import Path

import pytest

from tests.collector.conftest import ADMIN

from .conftest import Collector

pytestmark = pytest.mark.timeout(120)
BOX_SIM = str(Path(sys.executable).with_name("box-sim"))


def _drive(fd: int, marker: bytes, keys: list[tuple[float, bytes]], total_s: float) -> bytes:
    """Read the terminal; once ``marker`` shows, send each key after its delay."""
    out = b""
    start = time.monotonic()
    seen: float | None = None
    pending = list(keys)
    while time.monotonic() - start < total_s:
        if seen is None and marker in out:
            seen = time.monotonic()
        if seen is not None and pending and time.monotonic() - seen >= pending[0][0]:
            os.write(fd, pending.pop(0)[1])
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if b"so far:" in out and not pending:
                break
    return out


async def test_tester_answers_the_real_question(collector: Collector, tmp_path: Path) -> None:
    pid, fd = pty.fork()
    if pid == 0:  # the child: box-sim in a terminal of its own
        os.environ.update(NPS_ADMIN_TOKEN=ADMIN, TERM="xterm-256color")
        os.execv(BOX_SIM, ["box-sim", "box", "--collector", collector.url, "--sessions", "1",
                           "--box-id", "desk-test-1", "--data-dir", str(tmp_path / "box")])
    try:
        # Once the question (naming the service) is up: "7" picks the score, Enter
        # confirms, Escape skips the reason pick-list.
        keys = [(1.0, b"7"), (2.0, b"\r"), (4.0, b"\x1b")]
        screen = await asyncio.to_thread(_drive, fd, b"IPTV", keys, 60.0)
        _, status = await asyncio.to_thread(os.waitpid, pid, 0)
    finally:
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, screen.decode(errors="replace")[-2000:]
    assert b"session 1:" in screen
    surveys = await collector.export("survey")
    sessions = await collector.export("session")
    assert len(surveys) == 1 and len(sessions) == 1
    survey = surveys[0]
    assert survey["outcome"] == "answered" and survey["score"] == 7
    assert survey["session_id"] == sessions[0]["id"]
    assert sessions[0]["qos"]["watch_s"] >= 1200  # 20 simulated minutes passed in seconds
