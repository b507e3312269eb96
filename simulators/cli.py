"""``box-sim``: simulated boxes against a real collector (``fleet``), or one box here (``box``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

import orjson

from .faults import Faults, parse_outage
from .fleet import EnrolError, Fleet, FleetOptions, progress_printer


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``box-sim``."""
    p = argparse.ArgumentParser(prog="box-sim", description=(__doc__ or "").replace("``", ""))
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("fleet", help="a fleet of simulated boxes driving the real agent code")
    f.add_argument("--collector", required=True, help="the collector's base URL")
    f.add_argument("--boxes", type=int, default=100, help="how many boxes (default 100)")
    f.add_argument("--days", type=float, default=7.0, help="simulated days (default 7)")
    f.add_argument("--seed", type=int, default=1, help="the same seed gives the same fleet")
    f.add_argument("--json", action="store_true", help="print the summary as JSON")
    f.add_argument("--sample-rate", type=float, default=0.05,
                   help="survey.sample_rate of every box (default 0.05)")
    f.add_argument("--cooldown-days", type=float, default=None,
                   help="both survey cooldowns, days (default: the agent's 90 and 30)")
    f.add_argument("--upload-delay", type=float, default=60.0,
                   help="collector.upload_delay_s of every box (default 60)")
    f.add_argument("--durable-boxes", type=int, default=None,
                   help="boxes whose buffer is a sqlite file, the rest in memory "
                        "(default: all up to 200, then 200)")
    f.add_argument("--data-dir", type=Path, default=None,
                   help="where durable boxes keep their buffers (default: a temporary dir)")
    f.add_argument("--concurrency", type=int, default=32,
                   help="most requests in flight to the collector (default 32)")
    f.add_argument("--outage", action="append", default=[], metavar="START_H:DURATION_H",
                   help="the collector is out of reach for the boxes (repeatable)")
    f.add_argument("--loss", type=float, default=0.0,
                   help="on lossy lines, the chance a request or its answer is lost")
    f.add_argument("--loss-all", action="store_true", help="every line is lossy, not only "
                   "the 'lossy' profile's")
    f.add_argument("--power-cuts", type=float, default=0.0, metavar="PER_DAY",
                   help="mean power cuts per durable box per day, each mid-write")
    f.add_argument("--clock-skew", type=float, default=0.0, metavar="SECONDS",
                   help="each box's wall clock is off by up to this much, either way")
    f.add_argument("--drain-hours", type=float, default=72.0,
                   help="after the last day, virtual hours left to upload (default 72)")
    f.add_argument("-v", "--verbose", action="store_true", help="log the agents' warnings")

    b = sub.add_parser("box", help="one simulated box in this terminal; you answer the question")
    b.add_argument("--collector", required=True, help="the collector's base URL")
    b.add_argument("--box-id", default="sim-desk-0001", help="this box's id")
    b.add_argument("--token", default=None, help="its upload token (default: enrol with "
                   "NPS_ADMIN_TOKEN)")
    b.add_argument("--profile", default="dsl", help="network profile: fibre, dsl, "
                   "wifi_congested, lossy")
    b.add_argument("--sessions", type=int, default=0, help="stop after this many (0: until Ctrl-C)")
    b.add_argument("--minutes", type=float, default=20.0,
                   help="length of each simulated session (default 20; it passes in seconds)")
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--data-dir", type=Path, default=None, help="buffer directory (default: temp)")
    b.add_argument("--locale", default="nl")
    return p


def _print_summary(s: dict[str, Any]) -> None:
    gt = s["ground_truth"]
    net = s["network"]
    lines = [
        f"boxes {s['boxes']} ({s['durable_boxes']} with a sqlite buffer), "
        f"{s['days']:g} day(s), seed {s['seed']}, in {s['real_s']:.1f} s",
        f"sessions {s['sessions']}, questions {s['questions']}: answered {s['answers']}, "
        f"dismissed {s['dismissed']}, timed out {s['timeouts']}",
        f"uploads {s['uploads']}, retries {s['retries']}, records accepted "
        f"{s['records_accepted']} (+{s['records_duplicate']} duplicates), still buffered "
        f"{s['records_buffered']}, power cuts {s['power_cuts']}",
        f"requests sent {net['requests_sent']}, peak {net['peak_requests_per_virtual_s']:.1f}/s "
        f"virtual, {net['peak_requests_per_real_s']}/s real",
    ]
    if "after_outage_peak_requests_per_virtual_s" in net:
        lines.append(f"after the outage: peak {net['after_outage_peak_requests_per_virtual_s']:.2f}"
                     f" requests/s (virtual) against "
                     f"{net['before_outage_requests_per_virtual_s']:.2f}/s before")
    lines.append("ground truth (what /v1/report should say):")
    nps = gt["nps"]
    lines.append(f"  NPS {nps:.1f} over {gt['surveys']['answered']} answers"
                 if nps is not None else "  NPS: no answers")
    rho = gt["correlation"]["rebuffer_ratio"]["spearman"]
    if rho is not None:
        lines.append(f"  Spearman(score, rebuffer_ratio) {rho:.3f}")
    for b in gt["by_qos"]["rebuffer_ratio"]:
        hi = "inf" if b["hi"] is None else f"{b['hi']:g}"
        shown = "-" if b["nps"] is None else f"{b['nps']:.1f}"
        lines.append(f"  rebuffer_ratio ({b['lo']:g}, {hi}]: n {b['n']}, NPS {shown}")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``box-sim`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if getattr(args, "verbose", False) else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command == "box":
        from .box import run_box

        code: int = asyncio.run(run_box(args))
        return code
    token = os.environ.get("NPS_ADMIN_TOKEN", "")
    if not token:
        print("box-sim: set NPS_ADMIN_TOKEN to the collector's admin token (to enrol boxes)",
              file=sys.stderr)
        return 2
    try:
        outages = tuple(parse_outage(o) for o in args.outage)
    except ValueError as exc:
        print(f"box-sim: {exc}", file=sys.stderr)
        return 2
    cooldowns = {}
    if args.cooldown_days is not None:
        cooldowns = {"cooldown_answered_days": args.cooldown_days,
                     "cooldown_dismissed_days": args.cooldown_days}
    options = FleetOptions(
        collector=args.collector, admin_token=token, boxes=args.boxes, days=args.days,
        seed=args.seed, sample_rate=args.sample_rate, upload_delay_s=args.upload_delay,
        durable_boxes=args.durable_boxes, data_dir=args.data_dir,
        concurrency=args.concurrency, drain_h=args.drain_hours,
        faults=Faults(outages=outages, loss=args.loss, loss_all=args.loss_all,
                      power_cuts_per_day=args.power_cuts, clock_skew_s=args.clock_skew),
        **cooldowns,
    )
    fleet = Fleet(options)
    fleet.on_progress = progress_printer()
    try:
        summary = asyncio.run(fleet.run())
    except EnrolError as exc:
        print(f"box-sim: {exc}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        _print_summary(summary)
    return 0
