"""The real agent (``stb-widget run``) asks through TextualPresenter on a terminal.

One session over the events socket, sampled for sure; the question comes up on a
pseudo-terminal (``survey.tty``), is answered with a reason, and the agent's durable
buffer holds the survey record.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .ptyterm import DOWN, ENTER, PtyTerminal


@pytest.fixture
def term() -> Iterator[PtyTerminal]:
    terminal = PtyTerminal()
    yield terminal
    terminal.close()


def test_agent_asks_on_its_tty_and_buffers_the_answer(term: PtyTerminal) -> None:
    with tempfile.TemporaryDirectory(prefix="e2e") as folder:
        base = Path(folder)
        events = base / "ev.sock"
        config = base / "agent.toml"
        config.write_text(
            f"""
box_id = "stb-e2e"
data_dir = "{base / "data"}"
[collector]
url = "http://127.0.0.1:9/"
token = "unused"
boot_jitter_s = 0
[player]
source = "events"
events_socket = "{events}"
[survey]
sample_rate = 1.0
min_watch_s = 1
locale = "nl"
service_name = "Ziggo"
tty = "{term.name}"
""",
            encoding="utf-8",
        )
        log_path = base / "agent.log"
        with log_path.open("w") as log:
            agent = subprocess.Popen(
                [sys.executable, "-m", "stb_widget.cli", "run", "--config", str(config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 30
            while not events.exists():
                assert time.monotonic() < deadline, log_path.read_text()
                assert agent.poll() is None, log_path.read_text()
                time.sleep(0.05)
            with socket.socket(socket.AF_UNIX) as player:
                player.connect(str(events))
                player.sendall(
                    b'{"event": "play", "channel": "NPO1", "content_type": "live", "at": 0}\n'
                    b'{"event": "first_frame", "at": 1}\n{"event": "stop", "at": 20}\n'
                )
            term.wait_for("Hoe waarschijnlijk is het dat u Ziggo zou aanbevelen", 30)
            term.type(b"6", ENTER)
            term.wait_for("Wat vindt u het belangrijkst?", 30)
            term.type(DOWN, DOWN, ENTER)
            term.wait_for("Bedankt", 30)
            while "question after session" not in log_path.read_text():
                assert time.monotonic() < deadline + 30, log_path.read_text()
                time.sleep(0.1)
        finally:
            agent.terminate()
            agent.wait(30)
        db = sqlite3.connect(base / "data" / "buffer.sqlite3")
        try:
            rows = _survey_bodies(db)
        finally:
            db.close()
    assert len(rows) == 1, rows
    survey = rows[0]
    assert (survey["outcome"], survey["score"], survey["reason"], survey["locale"]) == (
        "answered", 6, "buffering", "nl"
    )
    assert survey["session_id"] is not None


def _survey_bodies(db: sqlite3.Connection) -> list[dict[str, object]]:
    # The buffer's layout is the agent's business: find the JSON column by content.
    found = []
    for row in db.execute("SELECT * FROM records"):
        for value in row:
            if isinstance(value, bytes | str):
                text = value.decode() if isinstance(value, bytes) else value
                if text.startswith("{") and '"kind":"survey"' in text.replace(" ", ""):
                    found.append(json.loads(text))
    return found
