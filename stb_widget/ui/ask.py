"""``stb-widget ask``: the question once, in this terminal; the record on stdout.

For testers and installers. The question runs through the same
:class:`~stb_widget.ui.presenter.TextualPresenter` as on the box, drawn on the terminal
(stdin's, else stderr's or stdout's), so stdout carries nothing but the one JSON line of
the survey record and can be redirected. Exit status: 0 after printing the record, 2
where there is no terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from protocol import SurveyRecord, record_to_json

from ..ids import uuid7
from ..survey_port import PresenterUnavailable, SurveyRequest
from .catalog import normalize_locale
from .presenter import TextualPresenter


class _Keep:
    """The sink of ``ask``: nothing to store durably, only the final record to print."""

    def __init__(self) -> None:
        self.final: SurveyRecord | None = None

    async def confirmed(self, record: SurveyRecord) -> None:
        return None

    async def finished(self, record: SurveyRecord) -> None:
        self.final = record


def request_from_args(args: argparse.Namespace) -> SurveyRequest:
    """The request ``ask`` shows. ``--locale`` defaults to the language of ``LANG``."""
    locale = getattr(args, "locale", None) or normalize_locale(os.environ.get("LANG"))
    return SurveyRequest(
        survey_id=uuid7(),
        session_id=None,
        locale=locale,
        service_name=getattr(args, "service_name", None) or "IPTV",
        timeout_s=float(getattr(args, "timeout_s", None) or 60.0),
    )


def main(args: argparse.Namespace) -> int:
    """Run ``stb-widget ask``; ``args`` needs ``locale`` (``service_name``, ``timeout_s``
    are optional)."""
    presenter = TextualPresenter(thanks_s=getattr(args, "thanks_s", None))
    sink = _Keep()
    try:
        record = asyncio.run(presenter.present(request_from_args(args), sink))
    except PresenterUnavailable as exc:
        print(f"stb-widget ask: cannot show the question: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(record_to_json(record), ensure_ascii=False) + "\n")
    sys.stdout.flush()
    return 0
