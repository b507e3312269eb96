"""``stb-widget ask``: the question on the terminal, one JSON line on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from protocol import Accepted, SurveyRecord, decode_record

from .ptyterm import DOWN, ENTER, ESCAPE, RIGHT, PtyTerminal

ASK = [sys.executable, "-m", "stb_widget.cli", "ask"]


@pytest.fixture
def term() -> Iterator[PtyTerminal]:
    terminal = PtyTerminal(cols=90, rows=28)
    yield terminal
    terminal.close()


def start(term: PtyTerminal, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TERM": "xterm-256color"}
    # The terminal on stdin and stderr; stdout redirected, as an installer's script would.
    return subprocess.Popen(
        [*ASK, *args], stdin=term.slave, stderr=term.slave, stdout=subprocess.PIPE, env=env
    )


def one_record(stdout: bytes) -> SurveyRecord:
    lines = stdout.decode("utf-8").splitlines()
    assert len(lines) == 1, f"stdout must hold exactly one line: {stdout!r}"
    decoded = decode_record(json.loads(lines[0]), 0)
    assert isinstance(decoded, Accepted), decoded
    assert isinstance(decoded.record, SurveyRecord)
    return decoded.record


def test_ask_prints_the_answered_record(term: PtyTerminal) -> None:
    proc = start(term, "--locale", "nl", "--service-name", "KPN")
    term.wait_for("Hoe waarschijnlijk is het dat u KPN zou aanbevelen")
    term.type(b"5", RIGHT, RIGHT, ENTER)
    term.wait_for("Wat vindt u het belangrijkst?")
    term.type(DOWN, DOWN, DOWN, ENTER)
    term.wait_for("Bedankt voor uw antwoord")
    stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    record = one_record(stdout)
    assert (record.outcome, record.score, record.reason, record.locale) == (
        "answered", 7, "content", "nl"
    )
    assert record.session_id is None
    assert record.answered_at is not None
    # The UI went to the terminal, never to stdout.
    assert b"\x1b[" not in stdout


def test_ask_prints_a_dismissal(term: PtyTerminal) -> None:
    proc = start(term, "--locale", "ru")
    term.wait_for("Насколько вероятно")
    term.type(ESCAPE)
    stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    record = one_record(stdout)
    assert (record.outcome, record.score, record.answered_at, record.locale) == (
        "dismissed", None, None, "ru"
    )


def test_ask_without_a_terminal_exits_2() -> None:
    proc = subprocess.run(
        [*ASK, "--locale", "en"], stdin=subprocess.DEVNULL, capture_output=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stdout == b""
    assert b"no terminal" in proc.stderr
