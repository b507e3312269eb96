"""Deployment as shipped: the systemd units, the example config and the default paths agree.

The units are checked with systemd's own ``systemd-analyze verify``; socket activation runs
for real through ``systemd-socket-activate`` (both from Debian's ``systemd``). Where those
tools are missing the tests skip locally and fail in CI.
"""

from __future__ import annotations

import configparser
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from stb_widget.config import PlayerSection

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not installed (Debian package systemd)")
        pytest.skip(f"{tool} is not installed (Debian package systemd)")
    return path


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / name)
    return parser


def test_the_default_events_socket_is_made_by_the_shipped_socket_unit() -> None:
    """The agent runs as its own user and cannot create /run/stb-widget.sock (the contract's
    default); stb-widget.socket makes exactly that path, owned by that user."""
    default = PlayerSection.__dataclass_fields__["events_socket"].default
    sock, service = unit("stb-widget.socket"), unit("stb-widget.service")
    assert sock["Socket"]["ListenStream"] == default
    assert sock["Socket"]["SocketUser"] == service["Service"]["User"]
    # A path of one's own belongs under the service's RuntimeDirectory, which it may write.
    assert service["Service"]["RuntimeDirectory"] == "stb-widget"
    assert "/run/stb-widget" in service["Service"]["ReadWritePaths"].split()


def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = need("systemd-analyze")
    script = Path(sys.executable).with_name("stb-widget")
    assert script.exists(), "the console script is installed next to the interpreter"
    for name in ("stb-widget.service", "stb-widget.socket"):
        text = (DEPLOY / name).read_text()
        # The unit names /opt/stb-widget (the documented venv); verify against this one.
        (tmp_path / name).write_text(text.replace("/opt/stb-widget/bin/stb-widget", str(script)))
    out = subprocess.run([analyze, "verify", "--man=no", "stb-widget.socket",
                          "stb-widget.service"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    problems = [line for line in (out.stdout + out.stderr).splitlines()
                if "stb-widget" in line]
    assert problems == [], problems
    assert "/opt/stb-widget/bin/stb-widget run" in (DEPLOY / "stb-widget.service").read_text()


def test_the_agent_serves_the_socket_systemd_made(tmp_path: Path) -> None:
    """Socket activation for real: systemd-socket-activate binds the path, hands it over,
    the agent serves it and leaves it in place when it stops."""
    activate = need("systemd-socket-activate")
    path = tmp_path / "ev.sock"
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f"""
box_id = "sa-1"
data_dir = "{tmp_path / 'data'}"
[collector]
url = "http://127.0.0.1:9/"
token = "k3Q9vX2mZ8"
boot_jitter_s = 0
[player]
source = "events"
events_socket = "{path}"
[survey]
enabled = false
""")
    proc = subprocess.Popen(
        [activate, "-l", str(path), sys.executable, "-m", "stb_widget.cli", "run",
         "--config", str(cfg)],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for _ in range(200):
            if path.exists():
                break
            time.sleep(0.05)
        with socket.socket(socket.AF_UNIX) as s:  # the first writer starts the agent
            s.connect(str(path))
            s.sendall(b'{"event": "play", "at": 0}\n{"event": "stop", "at": 700}\n')
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if (tmp_path / "data" / "buffer.sqlite3").exists():
                break
            time.sleep(0.1)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)  # after exec, the agent itself
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(out)
    assert proc.returncode == 0, out
    assert "(socket from systemd)" in out
    assert "'sessions': 1" in out, out
    assert path.is_socket(), "the agent must leave systemd's socket in place"


def test_an_unwritable_socket_path_says_what_to_do() -> None:
    """Without socket activation, the agent as its own user cannot create the default's
    kind of path (/run is root's): it stops at start (exit 1) naming the key, the path and
    the remedy. Run as ``nobody`` (through setpriv where the tests run as root)."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        prefix = [need("setpriv"), "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    target = "/run/stb-widget-test-denied.sock"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # readable by nobody
        data = work / "data"
        data.mkdir(mode=0o777)
        data.chmod(0o777)
        cfg = work / "agent.toml"
        cfg.write_text(f"""
box_id = "sa-2"
data_dir = "{data}"
[collector]
url = "http://127.0.0.1:9/"
token = "k3Q9vX2mZ8"
[player]
source = "events"
events_socket = "{target}"
""")
        cfg.chmod(0o644)
        out = subprocess.run([*prefix, sys.executable, "-m", "stb_widget.cli", "run",
                              "--config", str(cfg)],
                             cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 1, out.stderr
    assert f"player.events_socket: cannot listen on {target}: Permission denied" in out.stderr, \
        out.stderr
    assert "enable deploy/stb-widget.socket" in out.stderr, out.stderr
    assert not Path(target).exists()
