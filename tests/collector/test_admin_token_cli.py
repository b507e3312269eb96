"""``nps-collector admin-token``: one token per data store, never a new one unasked."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collector.cli", *args], capture_output=True,
                          text=True, timeout=60, env=env, cwd=ROOT, check=False)


def test_admin_token_is_kept_and_never_invented_silently(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NPS_ADMIN_TOKEN"}
    env["PYTHONPATH"] = str(ROOT)
    db = f"sqlite:///{tmp_path / 'c.db'}"
    # None kept yet: it says so, names the way to make one, prints no token.
    out = _cli("admin-token", "--db", db, env=env)
    assert out.returncode == 2 and out.stdout == ""
    assert "no admin token is kept" in out.stderr and "--create" in out.stderr
    # Asked to, it makes one and says so (on stderr; stdout is the token alone).
    made = _cli("admin-token", "--create", "--db", db, env=env)
    assert made.returncode == 0 and "made a new admin token" in made.stderr
    token = made.stdout.strip()
    assert len(token) >= 20 and made.stdout.count("\n") == 1
    # From then on the same one, with or without --create.
    for args in (("admin-token", "--db", db), ("admin-token", "--create", "--db", db)):
        again = _cli(*args, env=env)
        assert again.returncode == 0 and again.stdout.strip() == token
        assert "made" not in again.stderr
    # NPS_ADMIN_TOKEN wins, and it says so.
    strong = secrets.token_urlsafe(32)
    env_token = _cli("admin-token", "--db", db, env={**env, "NPS_ADMIN_TOKEN": strong})
    assert env_token.returncode == 0, env_token.stderr
    assert env_token.stdout.strip() == strong and "NPS_ADMIN_TOKEN is set" in env_token.stderr
