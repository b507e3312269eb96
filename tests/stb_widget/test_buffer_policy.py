"""The buffer's eviction and cooldown rules, called directly, with hand-derived cases.

Limits are set in each case so that the expected victims can be worked out on paper: a
session or answer of size S at seq N is written ``s(N, S)`` / ``a(N, S)``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stb_widget.buffer_policy import (
    DAY_US,
    Cooldowns,
    Row,
    after_survey,
    choose_evictions,
    may_need_eviction,
)
from stb_widget.config import BufferSection

NOW = 1_000 * DAY_US


def s(seq: int, size: int = 100, created_us: int = NOW) -> Row:
    return Row(seq, f"s{seq}", "session", True, created_us, created_us, size)


def a(seq: int, size: int = 100, created_us: int = NOW, ready: bool = True) -> Row:
    return Row(seq, f"a{seq}", "survey", ready, created_us, created_us if ready else None,
               size)


def limits(records: int = 20_000, nbytes: int = 8 << 20, days: float = 30.0) -> BufferSection:
    return BufferSection(max_records=records, max_bytes=nbytes, max_age_days=days)


def ids(rows: tuple[Row, ...]) -> list[str]:
    return [r.id for r in rows]


def test_within_bounds_nothing_goes() -> None:
    rows = [s(1), a(2), s(3)]
    ev = choose_evictions(rows, NOW, limits(records=3, nbytes=300))
    assert not ev and ev.rows == () and not ev.counts()
    assert not may_need_eviction(3, 300, NOW, NOW, limits(records=3, nbytes=300))


def test_one_record_over_drops_the_oldest_session_not_an_older_answer() -> None:
    rows = [a(1), s(2), s(3), a(4)]
    ev = choose_evictions(rows, NOW, limits(records=3))
    assert ids(ev.full) == ["s2"] and ev.aged == ()
    assert ev.counts() == {"full_session": 1}
    assert may_need_eviction(4, 400, NOW, NOW, limits(records=3))


def test_answers_go_only_when_no_session_is_left_oldest_first() -> None:
    rows = [a(1), s(2), a(3), s(4), a(5)]
    # 5 records, room for 2: both sessions, then the oldest answer.
    ev = choose_evictions(rows, NOW, limits(records=2))
    assert ids(ev.full) == ["s2", "s4", "a1"]
    assert ev.counts() == {"full_session": 2, "full_survey": 1}


def test_bytes_bound_at_the_edge() -> None:
    rows = [s(1, 1000), s(2, 10), s(3, 500)]  # 1510 bytes
    assert not choose_evictions(rows, NOW, limits(nbytes=1510))
    # One byte over: the oldest session (1000 B) is enough, even though it is the big one.
    assert ids(choose_evictions(rows, NOW, limits(nbytes=1509)).full) == ["s1"]
    # Room for 500 B: s1 then s2 go (1510 - 1010 = 500 left); one byte less takes s3 too.
    assert ids(choose_evictions(rows, NOW, limits(nbytes=500)).full) == ["s1", "s2"]
    assert ids(choose_evictions(rows, NOW, limits(nbytes=499)).full) == ["s1", "s2", "s3"]


def test_both_bounds_the_stricter_wins() -> None:
    rows = [s(1, 10), s(2, 10), s(3, 300), a(4, 10)]
    # Count allows 3 (drop 1: s1); bytes allow 20 (330 -> drop s1, s2, s3 = 10).
    assert ids(choose_evictions(rows, NOW, limits(records=3, nbytes=20)).full) == [
        "s1", "s2", "s3"]
    # Count allows 1; bytes allow everything: s1, s2, s3 go, the answer stays.
    assert ids(choose_evictions(rows, NOW, limits(records=1)).full) == ["s1", "s2", "s3"]


def test_age_goes_first_and_counts_towards_the_bounds() -> None:
    day = DAY_US
    cutoff = NOW - 30 * day
    rows = [a(1, created_us=cutoff - 1), s(2, created_us=cutoff), s(3), s(4)]
    # a1 is one µs too old; s2 is exactly at the cutoff and stays.
    ev = choose_evictions(rows, NOW, limits(records=3))
    assert ids(ev.aged) == ["a1"] and ev.full == ()
    assert ev.counts() == {"age_survey": 1}
    ev = choose_evictions(rows, NOW, limits(records=2))
    assert ids(ev.aged) == ["a1"] and ids(ev.full) == ["s2"]
    assert ids(ev.rows) == ["a1", "s2"]
    assert may_need_eviction(4, 400, cutoff - 1, NOW, limits())
    assert not may_need_eviction(4, 400, cutoff, NOW, limits())
    assert not may_need_eviction(0, 0, None, NOW, limits())


def test_fractional_days_and_unready_answers() -> None:
    # 0.5 day = 43,200 s; an answer confirmed but not finished is still evicted by age.
    rows = [a(1, created_us=NOW - DAY_US // 2 - 1, ready=False), s(2, created_us=NOW - 1)]
    assert ids(choose_evictions(rows, NOW, limits(days=0.5)).aged) == ["a1"]


def test_order_is_by_seq_not_by_input_order() -> None:
    rows = [s(5), s(2), a(1), s(9)]
    assert ids(choose_evictions(rows, NOW, limits(records=2)).full) == ["s2", "s5"]


T = datetime(2026, 12, 7, 12, tzinfo=UTC)


def test_cooldown_marks_move_forward_only() -> None:
    c = after_survey(Cooldowns(), "answered", T)
    assert c == Cooldowns(answered_shown=T)
    # dismissed and timed out both move the other mark
    c = after_survey(c, "dismissed", T + timedelta(hours=1))
    assert c == Cooldowns(T, T + timedelta(hours=1))
    c = after_survey(c, "timeout", T + timedelta(hours=2))
    assert c == Cooldowns(T, T + timedelta(hours=2))
    # an older survey stored later changes nothing; the same instant changes nothing
    assert after_survey(c, "answered", T - timedelta(days=1)) is c
    assert after_survey(c, "answered", T) is c
    assert after_survey(c, "dismissed", T) is c
    assert after_survey(c, "answered", T + timedelta(microseconds=1)) == Cooldowns(
        T + timedelta(microseconds=1), T + timedelta(hours=2))
