"""A presenter for subprocess tests, chosen by ``survey.presenter``.

``FAKE_PRESENTER_MODE=hang``: confirms a score, writes the record id to
``FAKE_PRESENTER_LOG``, then waits forever (the reason pick-list is open) so the test
can kill the agent. ``answer``: answers at once.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from datetime import UTC, datetime

from protocol import SurveyRecord
from stb_widget.survey_port import SurveyRequest, SurveySink


class FakePresenter:
    async def present(self, request: SurveyRequest, sink: SurveySink) -> SurveyRecord:
        now = datetime.now(UTC)
        rec = SurveyRecord(id=request.survey_id, kind="survey", session_id=request.session_id,
                           shown_at=now, answered_at=now, outcome="answered", score=3,
                           locale=request.locale)
        await sink.confirmed(rec)
        log = os.environ.get("FAKE_PRESENTER_LOG")
        if log:
            with open(log, "a") as fh:
                fh.write(rec.id + "\n")
        if os.environ.get("FAKE_PRESENTER_MODE") == "hang":
            await asyncio.Event().wait()
        final = replace(rec, reason="buffering")
        await sink.finished(final)
        return final
