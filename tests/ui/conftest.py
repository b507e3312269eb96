"""Shared helpers for the survey UI tests: a recording sink and an app factory."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

import pytest

from protocol import SurveyRecord
from stb_widget.survey_port import SurveyRequest
from stb_widget.ui.app import RemoteSource, SurveyApp

SURVEY_ID = "0193a1b2-0000-7000-8000-000000000001"
SESSION_ID = "0193a1b2-0000-7000-8000-0000000000aa"


class RecordingSink:
    """Records what the app hands over; ``gate`` (when given) holds ``confirmed``."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.calls: list[tuple[str, SurveyRecord]] = []
        self.gate = gate
        self.confirmed_returned = False

    async def confirmed(self, record: SurveyRecord) -> None:
        self.calls.append(("confirmed", record))
        if self.gate is not None:
            await self.gate.wait()
        self.confirmed_returned = True

    async def finished(self, record: SurveyRecord) -> None:
        self.calls.append(("finished", record))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.calls]


def make_request(locale: str = "en", timeout_s: float = 60.0, service: str = "IPTV") -> SurveyRequest:
    return SurveyRequest(
        survey_id=SURVEY_ID,
        session_id=SESSION_ID,
        locale=locale,
        service_name=service,
        timeout_s=timeout_s,
    )


def make_app(
    *,
    locale: str = "en",
    timeout_s: float = 60.0,
    thanks_s: float = 60.0,
    sink: RecordingSink | None = None,
    theme: str | None = None,
    env: Mapping[str, str] | None = None,
    remotes: tuple[RemoteSource, ...] = (),
    clock: Callable[[], float] = time.monotonic,
) -> SurveyApp:
    return SurveyApp(
        make_request(locale, timeout_s),
        sink if sink is not None else RecordingSink(),
        theme=theme,
        thanks_s=thanks_s,
        remotes=remotes,
        clock=clock,
        env=env if env is not None else {"TERM": "xterm-256color"},
    )


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()
