"""The prompt process: ``python -m stb_widget.ui.prompt --request JSON --ipc-fd N``.

Started by :class:`~stb_widget.ui.presenter.TextualPresenter` with its terminal on
stdin, stdout and stderr; talks to the agent over the socket ``N`` (see :mod:`.ipc`).
It draws a first frame (:mod:`.splash`) before anything heavy is imported, then loads
Textual (:mod:`.pipe`). This is the only place Textual is imported in the agent's
process tree.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from . import splash
from .catalog import load_catalog
from .terminal import choose_theme


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the prompt process."""
    parser = argparse.ArgumentParser(prog="python -m stb_widget.ui.prompt")
    parser.add_argument("--request", required=True, help="the SurveyRequest as JSON")
    parser.add_argument("--ipc-fd", type=int, required=True, help="socket to the agent")
    parser.add_argument("--lirc", default=None, help="lircd socket to read")
    parser.add_argument("--evdev", action="append", default=[], help="input device to read")
    parser.add_argument("--thanks-s", type=float, default=None, help="thank-you time, s")
    parser.add_argument("--theme", default=None, help="stb-tv or stb-console (default: by TERM)")
    args = parser.parse_args(argv)
    request = json.loads(args.request)
    args.theme = args.theme or choose_theme(os.environ)
    # The viewer sees the question from the splash on: that is the record's shown_at
    # (taken as the splash is written, so never after it is on screen).
    drawn_at = datetime.now(UTC)
    saved = splash.show(
        sys.stdout.fileno(), load_catalog(request["locale"]), request["service_name"], args.theme
    )
    args.shown_at = drawn_at if saved is not None else None
    try:
        import asyncio

        from .pipe import run

        return asyncio.run(run(args))
    finally:
        splash.restore(sys.stdout.fileno(), saved)


if __name__ == "__main__":
    sys.exit(main())
