"""``stb-widget``: ``run`` (the agent), ``ask`` (the question once; the UI's), ``config-doc``."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys

from .errors import AgentError


def _run(args: argparse.Namespace) -> int:
    from .config import load_config
    from .runner import run_agent

    try:
        config = load_config(args.config)
    except AgentError as exc:
        print(f"stb-widget: {args.config}: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aiosqlite logs every statement at debug; that drowns the agent's own debug lines.
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
    try:
        asyncio.run(run_agent(config))
    except AgentError as exc:
        print(f"stb-widget: {exc}", file=sys.stderr)
        return 1
    return 0


def _ask(args: argparse.Namespace) -> int:
    # The question UI is another module (and another engineer's); import it only here.
    try:
        module = importlib.import_module("stb_widget.ui.ask")
    except ModuleNotFoundError as exc:
        if exc.name in ("stb_widget.ui", "stb_widget.ui.ask"):
            print("stb-widget ask: the question UI is not installed", file=sys.stderr)
            return 2
        raise
    result: int = module.main(args)
    return result


_START, _END = "<!-- config-doc:start -->\n", "<!-- config-doc:end -->"


def _config_doc(args: argparse.Namespace) -> int:
    from .config import config_doc

    if not args.update:
        sys.stdout.write(config_doc())
        return 0
    # Rewrite the table between the markers of an operator doc (docs/agent.md).
    with open(args.update, encoding="utf-8") as fh:
        text = fh.read()
    head, sep, rest = text.partition(_START)
    _, sep2, tail = rest.partition(_END)
    if not sep or not sep2:
        print(f"stb-widget config-doc: {args.update} has no config-doc markers", file=sys.stderr)
        return 2
    with open(args.update, "w", encoding="utf-8") as fh:
        fh.write(head + _START + config_doc() + _END + tail)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``stb-widget`` console script."""
    parser = argparse.ArgumentParser(prog="stb-widget", description=(__doc__ or "").replace("``", ""))
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the box agent")
    run.add_argument("--config", required=True, help="the agent's TOML configuration")
    run.set_defaults(func=_run)
    ask = sub.add_parser("ask", help="show the question once; print the survey record")
    ask.add_argument("--locale", default="nl", help="the question's language")
    ask.add_argument("--service-name", default="IPTV", help="the service named in the question")
    ask.add_argument("--timeout-s", type=float, default=60.0, help="close unanswered after this")
    ask.set_defaults(func=_ask)
    doc = sub.add_parser("config-doc", help="print the configuration keys as Markdown")
    doc.add_argument("--update", metavar="FILE", help="rewrite the table inside FILE instead")
    doc.set_defaults(func=_config_doc)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
