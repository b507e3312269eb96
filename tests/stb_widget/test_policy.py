"""When a question is due, and the reason codes when it is not."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from protocol import Qos, SessionRecord
from stb_widget.buffer import Cooldowns
from stb_widget.ids import uuid7
from stb_widget.policy import SurveyPolicy, sampled
from stb_widget.tracker import FinishedSession

from .conftest import BASE_WALL, FakeClock, make_config


def session(watch_s: float = 1000.0, end: str = "stop", sid: str | None = None) -> FinishedSession:
    qos = Qos(startup_ms=100, watch_s=watch_s, rebuffer_count=0, rebuffer_s=0.0,
              avg_bitrate_kbps=None, bitrate_switches=0, failed=end == "error")
    rec = SessionRecord(id=sid or uuid7(), kind="session", started_at=BASE_WALL,
                        ended_at=BASE_WALL, channel=None, content_type=None, qos=qos)
    return FinishedSession(rec, end)  # type: ignore[arg-type]


def policy(tmp_path: Path, clock: FakeClock | None = None, **survey: object) -> SurveyPolicy:
    cfg = make_config(tmp_path, survey={"min_watch_s": 600, "sample_rate": 1.0, **survey})
    return SurveyPolicy(cfg.survey, cfg.box_id, clock or FakeClock())


def test_eligible_stop_and_error_are_asked(tmp_path: Path) -> None:
    p = policy(tmp_path)
    assert p.decide(session(end="stop"), Cooldowns(), False) is None
    assert p.decide(session(end="error"), Cooldowns(), False) is None
    assert not p.reasons


def test_reason_codes_are_counted(tmp_path: Path) -> None:
    clock = FakeClock()
    p = policy(tmp_path, clock)
    now = clock.wall()
    assert p.decide(session(watch_s=599), Cooldowns(), False) == "too_short"
    assert p.decide(session(end="replaced"), Cooldowns(), False) == "replaced"
    assert p.decide(session(end="shutdown"), Cooldowns(), False) == "shutdown"
    assert p.decide(session(), Cooldowns(), True) == "question_up"
    answered = Cooldowns(answered_shown=now - timedelta(days=89))
    assert p.decide(session(), answered, False) == "cooldown_answered"
    assert p.decide(session(), Cooldowns(answered_shown=now - timedelta(days=91)), False) is None
    dismissed = Cooldowns(dismissed_shown=now - timedelta(days=29))
    assert p.decide(session(), dismissed, False) == "cooldown_dismissed"
    assert p.decide(session(), Cooldowns(dismissed_shown=now - timedelta(days=31)), False) is None
    assert p.reasons == {"too_short": 1, "replaced": 1, "shutdown": 1, "question_up": 1,
                         "cooldown_answered": 1, "cooldown_dismissed": 1}


def test_disabled(tmp_path: Path) -> None:
    p = policy(tmp_path, enabled=False)
    assert p.decide(session(), Cooldowns(), False) == "survey_disabled"


def test_quiet_hours_wrap_midnight(tmp_path: Path) -> None:
    clock = FakeClock()
    local = clock.wall().astimezone()
    start = (local - timedelta(hours=1)).strftime("%H:%M")
    end = (local + timedelta(hours=1)).strftime("%H:%M")
    p = policy(tmp_path, clock, quiet_hours=f"{start}-{end}")
    assert p.decide(session(), Cooldowns(), False) == "quiet_hours"
    clock.advance(2 * 3600)
    assert p.decide(session(), Cooldowns(), False) is None
    # The complement range wraps past midnight (or not) and excludes now, then includes.
    p2 = policy(tmp_path, clock, quiet_hours=f"{end}-{start}")
    assert p2.decide(session(), Cooldowns(), False) == "quiet_hours"


def test_sampling_is_deterministic_and_near_the_rate(tmp_path: Path) -> None:
    ids = [uuid7() for _ in range(20_000)]
    drawn = [sampled("stb-1", i, 0.05) for i in ids]
    assert drawn == [sampled("stb-1", i, 0.05) for i in ids]  # same box+session, same draw
    assert 0.04 < sum(drawn) / len(ids) < 0.06
    # another box draws differently
    assert drawn != [sampled("stb-2", i, 0.05) for i in ids]
    assert not any(sampled("stb-1", i, 0.0) for i in ids[:100])
    p = policy(tmp_path, sample_rate=0.05)
    reasons = [p.decide(session(sid=i), Cooldowns(), False) for i in ids[:2000]]
    mine = [sampled("stb-test-1", i, 0.05) for i in ids[:2000]]
    assert reasons.count(None) == sum(mine)
    assert p.reasons["sampled_out"] == 2000 - sum(mine)
