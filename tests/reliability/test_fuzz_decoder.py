"""The atheris fuzzer of the protocol decoder (fuzz_decoder.py), a short run in the
suite: 50,000 inputs here, 2,000,000 under ``scripts/reliability-long``."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT, require, scale


def test_atheris_finds_no_crash_in_the_decoder(tmp_path: Path) -> None:
    require(importlib.util.find_spec("atheris") is not None, "atheris (pip install atheris)")
    runs = scale(50_000, 2_000_000)
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("fuzz_decoder.py")), f"-runs={runs}",
         "-max_len=4096", f"-artifact_prefix={tmp_path}/"],
        cwd=ROOT, capture_output=True, text=True, timeout=3000, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert f"#{runs}\tDONE" in out, out[-2000:]
    print("\n" + next(line for line in out.splitlines() if "DONE" in line))
