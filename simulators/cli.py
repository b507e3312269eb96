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
from .planted import DEFAULT_SLOPES, REGRESSORS, Planted, PlantedRangeError


def parse_effects(items: list[str]) -> dict[str, float]:
    """``REGRESSOR=POINTS`` flags as slopes; ValueError naming what is wrong."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in REGRESSORS:
            raise ValueError(f"--effect {item!r}: expected REGRESSOR=POINTS with REGRESSOR "
                             f"one of {', '.join(REGRESSORS)}")
        try:
            points = float(value)
        except ValueError:
            raise ValueError(f"--effect {item!r}: {value!r} is not a number") from None
        if points != points or points in (float("inf"), float("-inf")):
            raise ValueError(f"--effect {item!r}: must be a finite number")
        out[name] = points
    return out


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``box-sim``."""
    p = argparse.ArgumentParser(
        prog="box-sim", description="box-sim: simulated boxes running the real agent code "
        "against a real collector (fleet), one box in this terminal (box), or a fleet's truth "
        "next to the collector's figures (compare).")
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
    f.add_argument("--ends-now", action="store_true",
                   help="simulate the days that end now, box clocks right: the boxes hold "
                        "their uploads until then, so every record keeps its day at the "
                        "collector (the demo does this)")
    f.add_argument("--confounder", action=argparse.BooleanOptionalAction, default=True,
                   help="plant regions that differ in both their lines and their viewers' "
                        "mood (default: on)")
    f.add_argument("--non-response", action=argparse.BooleanOptionalAction, default=True,
                   help="plant viewers who answer less after stalled streams (default: on)")
    f.add_argument("--effect", action="append", default=[], metavar="REGRESSOR=POINTS",
                   help="a planted slope in NPS points per unit (repeatable), e.g. "
                        "rebuffer_pct=-3; regressors: " + ", ".join(REGRESSORS)
                        + "; defaults: " + ", ".join(f"{k}={v:g}"
                                                    for k, v in DEFAULT_SLOPES.items()))
    f.add_argument("--degrade", default=None, metavar="SHARE:DAYS",
                   help="this share of the boxes has its line turn lossy for the last DAYS "
                        "days (e.g. 0.1:2); listed in the summary as degraded_boxes")
    f.add_argument("-v", "--verbose", action="store_true", help="log the agents' warnings")

    c = sub.add_parser("compare", help="the collector's report and impact estimates next to a "
                       "fleet's truth; exits 1 where the report disagrees")
    c.add_argument("--collector", required=True, help="the collector's base URL")
    c.add_argument("--summary", required=True, type=Path,
                   help="the fleet's summary (box-sim fleet --json)")

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
    planted = gt["planted"]
    lines.append("planted (what /v1/impact should find): " + ", ".join(
        f"{k} {v:+g}" for k, v in gt["true_slopes"].items()) + " NPS points per unit; "
        f"confounder {'on' if planted['confounder'] else 'off'}, non-response "
        f"{'on' if planted['non_response'] else 'off'}")
    shown_nps = gt["nps_shown"]
    if shown_nps is not None:
        lines.append(f"  NPS of everyone shown the question (answered or not) {shown_nps:.1f}")
    cmp = s["agent_vs_lived"]
    lines.append(f"agents' records against what was lived: {cmp['matched']} sessions matched, "
                 + ("all agree" if cmp["agree"] else f"DISAGREE {cmp['mismatched_fields']}, "
                    f"{cmp['lived_without_record']} lived without a record, "
                    f"{cmp['records_without_lived']} records without a lived session"))
    lines.append("ground truth, as lived (what /v1/report should say):")
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


def _compare(args: argparse.Namespace, token: str) -> int:
    from .compare import CompareError, compare

    if not token:
        print("box-sim: set NPS_ADMIN_TOKEN to the collector's admin token", file=sys.stderr)
        return 2
    try:
        summary = orjson.loads(args.summary.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        print(f"box-sim: --summary {args.summary}: {exc}", file=sys.stderr)
        return 2
    try:
        lines, problems = compare(args.collector, token, summary)
    except CompareError as exc:
        print(f"box-sim: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    if problems:
        print("\nTHE REPORT DISAGREES WITH THE TRUTH:\n  " + "\n  ".join(problems),
              file=sys.stderr)
        return 1
    print("\nThe report agrees with what the simulated viewers lived and answered.")
    return 0


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
    if args.command == "compare":
        return _compare(args, token)
    if not token:
        print("box-sim: set NPS_ADMIN_TOKEN to the collector's admin token (to enrol boxes)",
              file=sys.stderr)
        return 2
    try:
        outages = tuple(parse_outage(o) for o in args.outage)
    except ValueError as exc:
        print(f"box-sim: {exc}", file=sys.stderr)
        return 2
    try:
        planted = Planted(confounder=args.confounder, non_response=args.non_response)
        planted = planted.with_slopes(**parse_effects(args.effect))
    except (ValueError, PlantedRangeError) as exc:
        print(f"box-sim: {exc}", file=sys.stderr)
        return 2
    degrade_share, degrade_days = 0.0, 2.0
    if args.degrade is not None:
        share, sep, days = args.degrade.partition(":")
        try:
            degrade_share, degrade_days = float(share), float(days)
        except ValueError:
            sep = ""
        if not sep or not 0.0 <= degrade_share <= 1.0 or not degrade_days > 0:
            print(f"box-sim: --degrade {args.degrade!r}: expected SHARE:DAYS with SHARE in "
                  "[0, 1] and DAYS above 0, e.g. 0.1:2", file=sys.stderr)
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
        planted=planted, ends_now=args.ends_now, degrade_share=degrade_share,
        degrade_days=degrade_days,
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


if __name__ == "__main__":
    sys.exit(main())
