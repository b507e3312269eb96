"""The collector's benchmark scripts still run (tiny sizes; their figures are not checked
here: speed goals live in bench/README.md, never in tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]


def run_bench(*args: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "ingest.py"), *args],
                          capture_output=True, timeout=300, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    out: dict[str, object] = orjson.loads(done.stdout)
    return out


def test_ingest_benchmark_runs_both_sides() -> None:
    out = run_bench("ingest", "--records", "3200", "--rounds", "1", "--recent")
    assert out["records"] == 3200 and out["stored"] is True
    assert isinstance(out["http_rec_per_s"], int) and out["http_rec_per_s"] > 0
    assert isinstance(out["raw_rec_per_s"], int) and out["raw_rec_per_s"] > 0


def test_report_benchmark_runs() -> None:
    out = run_bench("report", "--records", "2000")
    assert out["records"] == 2000
    assert isinstance(out["report_median_s"], float) and out["report_median_s"] > 0


def test_impact_benchmark_runs(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "impact_scale.py"), "--backend", "sqlite",
                           "--records", "20000", "--runs", "1", "--case", "all",
                           "--keep", str(tmp_path / "impact.db")],
                          capture_output=True, timeout=300, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    out = orjson.loads(done.stdout)
    assert out["sessions_generated"] == 20000 and set(out) >= {"all", "load_s", "commit"}
    assert out["all"]["answers"] > 500 and out["all"]["compute_impact"]["median_ms"] > 0
    assert out["all"]["adjusted_rebuffer_pct"]["nps_points"] < 0  # the planted effect


def test_bomb_latency_benchmark_runs() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bomb_latency.py"), "--runs", "1",
                           "--seconds", "1", "--attackers", "2", "--json"],
                          capture_output=True, timeout=300, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    (run,) = orjson.loads(done.stdout)
    assert run["idle"]["n"] > 0 and run["attack"]["n"] > 0
    assert run["ratio_median"] > 0 and run["bomb_answers"].get("200", 0) > 0
