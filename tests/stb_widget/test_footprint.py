"""The box install's footprint: `pip install iptv-nps` pulls the agent's dependencies only,
and they exist as binary wheels for the boxes' platforms.

The platform test asks PyPI (through pip's own configuration) with ``pip download
--platform ... --only-binary=:all:``; where no index answers it skips locally and fails
in CI. It prints the wheels' size and their installed (unpacked) size.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
#: Never on a box: the collector's HTTP stack, numerics, database drivers.
FORBIDDEN = {"aiohttp", "yarl", "multidict", "numpy", "scipy", "asyncpg", "psycopg",
             "frozenlist", "aiosignal"}

PLATFORMS = {
    "manylinux-aarch64": ["manylinux_2_17_aarch64", "manylinux2014_aarch64"],
    "manylinux-armv7l": ["manylinux_2_17_armv7l", "manylinux2014_armv7l"],
    "musllinux-aarch64": ["musllinux_1_2_aarch64", "musllinux_1_1_aarch64"],
}


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9_.\-]+", requirement)
    assert match is not None, requirement
    return match.group(0).lower().replace("_", "-")


def box_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps: list[str] = project["dependencies"]
    return deps


def test_the_box_install_declares_no_collector_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in project["dependencies"]}
    assert names == {"aiosqlite", "h11", "orjson", "textual"}, names
    extras = project["optional-dependencies"]
    assert "aiohttp" in {_name(r) for r in extras["collector"]}
    # `dev` still pulls everything the repository runs.
    dev = {_name(r) for r in extras["dev"]}
    assert {"aiohttp", "asyncpg", "evdev"} <= dev


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("platform", list(PLATFORMS))
def test_the_box_wheels_resolve_for_the_boxes_platforms(
    platform: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tags = [arg for tag in PLATFORMS[platform] for arg in ("--platform", tag)]
    out = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(tmp_path),
         "--only-binary=:all:", *tags, "--python-version", "3.11", "--implementation", "cp",
         "--abi", "cp311", "--abi", "abi3", "--abi", "none", *box_requirements()],
        capture_output=True, text=True, timeout=540,
    )
    if out.returncode != 0 and re.search(r"(?i)connection|resolve|network|timed out|"
                                         r"Max retries", out.stderr):
        message = f"no package index reachable for pip download: {out.stderr[-400:]}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    assert out.returncode == 0, out.stderr[-2000:]
    wheels = sorted(tmp_path.glob("*.whl"))
    names = {_name(w.name.split("-")[0]) for w in wheels}
    assert names >= {"aiosqlite", "h11", "orjson", "textual"}, names
    assert not names & FORBIDDEN, names & FORBIDDEN
    assert len(list(tmp_path.iterdir())) == len(wheels)  # wheels only, no sdist to build
    binary = [w.name for w in wheels if not w.name.endswith("-none-any.whl")]
    arch = platform.split("-")[1]
    assert binary and all(arch in w for w in binary), binary  # orjson, for that platform
    downloaded = sum(w.stat().st_size for w in wheels)
    installed = 0
    for w in wheels:
        with zipfile.ZipFile(w) as z:
            installed += sum(info.file_size for info in z.infolist())
    with capsys.disabled():
        print(f"\nbox wheels for {platform}: {len(wheels)} wheels, {downloaded / 1e6:.2f} MB "
              f"downloaded, {installed / 1e6:.2f} MB installed (unpacked, before .pyc); "
              f"binary: {', '.join(binary)}")
    # Textual (with rich and pygments) is most of it; the bound keeps it from creeping.
    assert installed < 25_000_000, installed
