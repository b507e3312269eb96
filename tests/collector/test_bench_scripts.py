"""The collector's benchmark scripts still run (tiny sizes; their figures are not checked
here: speed goals live in bench/README.md, never in tests)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bench.ingest import check_report, make_records
from tests.conftest import PG_HOST, PG_PORT, PG_USER

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
    # The collector's report counted every record the uploaders sent, once.
    assert out["report_sessions"] == [3200]
    assert isinstance(out["http_rec_per_s"], int) and out["http_rec_per_s"] > 0
    assert isinstance(out["raw_rec_per_s"], int) and out["raw_rec_per_s"] > 0


def test_report_benchmark_runs() -> None:
    out = run_bench("report", "--records", "2000")
    assert out["records"] == 2000
    assert isinstance(out["report_median_s"], float) and out["report_median_s"] > 0
    # The timed report is the right one: its figures are the stored records', counted
    # here from the same generator (seeded; only the times depend on the clock).
    records = make_records(2000, seed=2, surveys_every=20)
    scores = [r["score"] for r in records if r["kind"] == "survey"]
    p, d = sum(1 for x in scores if x in (9, 10)), sum(1 for x in scores if x <= 6)
    assert out["checked"] == {
        "sessions": 2000, "answered": len(scores),
        "failed": sum(1 for r in records if r["kind"] == "session" and r["qos"]["failed"]),
        "promoters": p, "detractors": d, "nps": 100 * (p - d) / len(scores)}
    assert len(scores) > 50 and p and d


def test_report_benchmark_refuses_a_wrong_report() -> None:
    records = make_records(100, seed=2, surveys_every=20)
    n = sum(1 for r in records if r["kind"] == "session")
    empty = {"sessions": {"count": 0, "failed": 0}, "surveys": {"answered": 0},
             "promoters": 0, "detractors": 0, "nps": None}
    with pytest.raises(SystemExit, match="disagrees"):
        check_report(empty, records)
    doubled = {"sessions": {"count": 2 * n, "failed": 0}, "surveys": {"answered": 5},
               "promoters": 0, "detractors": 0, "nps": None}
    with pytest.raises(SystemExit, match="disagrees"):
        check_report(doubled, records)


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
    # The machine's own figures, before and after (bench/machine.py).
    for when in ("machine_before", "machine_after"):
        assert set(out[when]) == {"python_loop_ms", "sqlite_sort_ms", "sqlite_commits_per_s"}
        assert all(v > 0 for v in out[when].values()), out[when]
    # The same store for bench/sqlite_side_by_side.py (why the impact read takes SQLite's
    # parts one at a time).
    side = subprocess.run([sys.executable, str(ROOT / "bench" / "sqlite_side_by_side.py"),
                           "--db", str(tmp_path / "impact.db"), "--runs", "1"],
                          capture_output=True, timeout=300, cwd=ROOT, check=False)
    assert side.returncode == 0, side.stderr.decode()[-2000:]
    lines = side.stdout.decode().splitlines()
    assert lines[0].startswith("memory statistics on") and len(lines) == 3
    assert all(re.fullmatch(r"  .+: \d+ \(\d+-\d+\)", line) for line in lines[1:]), lines


def test_raw_durability_probe_runs() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "raw_durability.py"), "--records", "1000",
                           "--rounds", "1"], capture_output=True, timeout=300, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    out = orjson.loads(done.stdout)
    assert set(out) == {"FULL", "OFF"}
    for sync in out.values():
        assert len(sync) == 1 and sync[0]["records_per_s"] > 0
        # The wall clock covers the process's CPU time on one thread (rounding aside).
        assert sync[0]["wall_us_per_record"] >= 0.9 * sync[0]["cpu_us_per_record"] > 0


def test_cpu_by_process_runs(tmp_path: Path) -> None:
    spin = "import time\nt = time.time()\nwhile time.time() - t < 1.2: pass"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "cpu_by_process.py"), "--out",
                           str(tmp_path / "series.json"), "--log", str(tmp_path / "log"), "--",
                           sys.executable, "-c", spin],
                          capture_output=True, timeout=300, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    out = orjson.loads(done.stdout)
    assert set(out) == {"samples", "postgres", "collector", "nostore", "python-other", "other", "busy_cores"}
    series = orjson.loads((tmp_path / "series.json").read_bytes())
    assert len(series) >= 2 and out["samples"] >= 1
    # The spinning Python process shows as most of a core in some period.
    assert max(p["python-other"] for p in series) > 0.5 and out["busy_cores"] > 0


def test_bomb_latency_benchmark_runs() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bomb_latency.py"), "--runs", "1",
                           "--seconds", "1", "--attackers", "2", "--json"],
                          capture_output=True, timeout=300, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    (run,) = orjson.loads(done.stdout)
    assert run["idle"]["n"] > 0 and run["attack"]["n"] > 0
    assert run["ratio_median"] > 0 and run["bomb_answers"].get("200", 0) > 0


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_store_profile_runs(backend: str, request: pytest.FixtureRequest) -> None:
    pg = []
    if backend == "postgres":
        request.getfixturevalue("postgres_database")  # a server answers (or the run says why not)
        pg = ["--pg", f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "store_profile.py"), "--backend", backend,
         "--records", "6400", "--runs", "1", "--reports", "1", *pg],
        capture_output=True, timeout=300, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    run, summary = (orjson.loads(line) for line in done.stdout.splitlines())
    assert run["records"] == summary["records"] == 6400
    # Both write groups' appends and the first group's fold were timed, by table.
    assert {"insert sessions", "agg_sessions", "fold agg_sessions"} <= set(run["ops_s"])
    # The second group's 3,200 sessions were left unfolded, and reports read them.
    assert run["unfolded_delta_rows"][0] > 0
    assert set(run["report_ms_unfolded"]) == set(run["report_ms"]) == {"all", "7 days", "7 days, channel"}
