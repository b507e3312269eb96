"""When a question is due, and why not when it is not.

A session is eligible when the player ended it (``stop`` or ``error``) after at least
``min_watch_s``. It is asked with probability ``sample_rate``, drawn from a hash of box
id and session id (so a repeated trigger draws the same answer), unless a cooldown runs,
quiet hours hold, or a question is already up. Every session that is not asked gets
one reason code; the codes are counted and logged.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import Final

from .buffer import Cooldowns
from .clock import Clock
from .config import SurveySection, parse_quiet_hours
from .tracker import FinishedSession

log = logging.getLogger(__name__)

#: Every reason code, with what it means (for the operator doc).
REASON_CODES: Final[dict[str, str]] = {
    "survey_disabled": "survey.enabled is false",
    "replaced": "a new play came while the session was open (zapping): playback goes on",
    "zapped": "a play came within survey.settle_s after the session ended (a channel change): "
    "the question would have come up over the next channel",
    "shutdown": "the agent stopped while the session was open",
    "too_short": "watched less than survey.min_watch_s",
    "sampled_out": "not drawn by survey.sample_rate (deterministic per box and session)",
    "cooldown_answered": "within survey.cooldown_answered_days of the last answered question",
    "cooldown_dismissed": "within survey.cooldown_dismissed_days of the last dismissed or "
    "timed-out question",
    "quiet_hours": "inside survey.quiet_hours",
    "question_up": "another question is on screen",
    "no_display": "no terminal to draw on, or no presenter installed",
    "presenter_error": "the presenter failed (logged)",
}


def sampled(box_id: str, session_id: str, rate: float) -> bool:
    """The deterministic draw: the same box and session always give the same answer."""
    if rate >= 1.0:
        return True
    digest = hashlib.sha256(f"{box_id}\x00{session_id.lower()}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


class SurveyPolicy:
    """Decides, per finished session, whether to ask; counts the reasons it does not."""

    def __init__(self, survey: SurveySection, box_id: str, clock: Clock) -> None:
        self._cfg = survey
        self._box_id = box_id
        self._clock = clock
        self._quiet = parse_quiet_hours(survey.quiet_hours)
        self.reasons: Counter[str] = Counter()

    def decide(self, session: FinishedSession, cooldowns: Cooldowns,
               question_up: bool) -> str | None:
        """None to ask now, else the reason code (already counted and logged)."""
        reason = self._reason(session, cooldowns, question_up)
        if reason is not None:
            self.count(reason, session.record.id)
        return reason

    def count(self, reason: str, session_id: str | None) -> None:
        """Count and log one session not asked."""
        self.reasons[reason] += 1
        log.info("session %s not asked: %s", session_id, reason)

    def _reason(self, session: FinishedSession, cooldowns: Cooldowns,
                question_up: bool) -> str | None:
        cfg = self._cfg
        if not cfg.enabled:
            return "survey_disabled"
        if session.end in ("replaced", "shutdown"):
            return session.end
        if session.record.qos.watch_s < cfg.min_watch_s:
            return "too_short"
        if not sampled(self._box_id, session.record.id, cfg.sample_rate):
            return "sampled_out"
        now = self._clock.wall()
        if _within(cooldowns.answered_shown, now, cfg.cooldown_answered_days):
            return "cooldown_answered"
        if _within(cooldowns.dismissed_shown, now, cfg.cooldown_dismissed_days):
            return "cooldown_dismissed"
        if self._in_quiet_hours(now):
            return "quiet_hours"
        if question_up:
            return "question_up"
        return None

    def _in_quiet_hours(self, now: datetime) -> bool:
        if self._quiet is None:
            return False
        start, end = self._quiet
        local = now.astimezone()  # the box's own time zone
        m = local.hour * 60 + local.minute
        if start <= end:
            return start <= m < end
        return m >= start or m < end  # the range wraps past midnight


def _within(shown: datetime | None, now: datetime, days: float) -> bool:
    return shown is not None and now - shown < timedelta(days=days)
