"""The seam between the agent and whatever shows the question.

The agent decides *when* to ask; a :class:`SurveyPresenter` decides *how*. The agent
runs with no screen at all (``NoDisplay``), and the Textual prompt lives behind this
interface so that the idle agent never imports Textual.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from protocol import SurveyRecord


@dataclass(frozen=True, slots=True)
class SurveyRequest:
    """One question to show."""

    survey_id: str
    session_id: str | None
    locale: str
    service_name: str
    timeout_s: float
    #: The terminal to draw on ("" = the agent's own terminal).
    tty: str = ""


class SurveySink(Protocol):
    """Where a presenter hands its results; implemented by the agent's durable buffer."""

    async def confirmed(self, record: SurveyRecord) -> None:
        """Store an answered record durably (fsync'd) before returning.

        Called the moment the viewer confirms a score, with ``reason`` still null; the
        record is not uploaded until :meth:`finished` (the pick-list may follow), or
        after a restart, as it was stored.
        """

    async def finished(self, record: SurveyRecord) -> None:
        """The final record (reason filled in, or a dismissal or timeout); upload it."""


class PresenterUnavailable(Exception):
    """There is no terminal to draw on; the agent counts the session as ``no_display``."""


class SurveyPresenter(Protocol):
    """Shows the question once and reports through ``sink``; answers the final record."""

    async def present(self, request: SurveyRequest, sink: SurveySink) -> SurveyRecord:
        """Show the question; raise :class:`PresenterUnavailable` where there is no screen."""
