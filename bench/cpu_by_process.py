"""Where a benchmark's CPU goes, by process group: run a command and sample, every 0.5 s
from ``/proc``, the CPU time of the PostgreSQL server's processes, the collector
(``collector.cli`` or ``nps-collector``), the no-store collector, other Python processes
(the uploaders) and the machine's busy share.

    .venv/bin/python bench/cpu_by_process.py [--out series.json] -- COMMAND ...

Prints, over the samples in which the collector used CPU (the HTTP phase of
``bench/report_scale.py ingest``), the mean cores each group used and the machine's busy
cores; ``--out`` keeps every sample. The command's own output goes to ``--log``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

HZ = os.sysconf("SC_CLK_TCK")
PERIOD_S = 0.5
GROUPS = ("postgres", "collector", "nostore", "python-other", "other")


def _group(comm: str, cmd: str) -> str:
    if comm.startswith("postgres") or cmd.startswith("postgres"):
        return "postgres"
    if "collector.cli" in cmd or "nps-collector" in cmd:
        return "collector"
    if "nostore_serve" in cmd:
        return "nostore"
    return "python-other" if "python" in cmd else "other"


def snapshot() -> tuple[dict[int, tuple[str, float]], list[int]]:
    """Per process, its group and CPU seconds so far; and the machine's CPU counters."""
    procs: dict[int, tuple[str, float]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        procs[int(pid)] = (_group(comm, cmd), (int(fields[11]) + int(fields[12])) / HZ)
    with open("/proc/stat") as f:
        machine = [int(x) for x in f.readline().split()[1:]]
    return procs, machine


def sample(command: list[str], log: Path) -> list[dict[str, float]]:
    """Run ``command``; the cores each group used in each period, and ``busy_cores``."""
    cores = os.cpu_count() or 1
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        series = []
        prev, prev_m = snapshot()
        while proc.poll() is None:
            time.sleep(PERIOD_S)
            cur, cur_m = snapshot()
            row = dict.fromkeys(GROUPS, 0.0)
            for pid, (g, t) in cur.items():
                row[g] += t - (prev[pid][1] if pid in prev else 0.0)
            total = sum(cur_m) - sum(prev_m)
            idle = cur_m[3] + cur_m[4] - prev_m[3] - prev_m[4]
            period = {g: v / PERIOD_S for g, v in row.items()}
            period["busy_cores"] = (1 - idle / total) * cores if total else 0.0
            series.append(period)
            prev, prev_m = cur, cur_m
    if proc.returncode:
        raise SystemExit(f"the command failed ({proc.returncode}): see {log}")
    return series


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="keep every sample here (JSON)")
    ap.add_argument("--log", type=Path, default=Path("cpu_by_process.log"), help="the command's output")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command:
        ap.error("no command")
    series = sample(command, a.log)
    if a.out:
        a.out.write_text(json.dumps(series))
    during = [p for p in series if p["collector"] > 0.1] or series
    print(json.dumps({"samples": len(during),
                      **{k: round(sum(p[k] for p in during) / len(during), 2)
                         for k in (*GROUPS, "busy_cores")}}, indent=2))


if __name__ == "__main__":
    main()
