"""The session tracker: one test per QoS rule of the contract (section 2)."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import pytest

from stb_widget.events import PlayerEvent
from stb_widget.tracker import FinishedSession, SessionTracker

from .conftest import BASE_WALL, FakeClock


def run(events: list[tuple[str, float, dict[str, object]]]) -> FinishedSession:
    clock = FakeClock()
    tracker = SessionTracker(clock)
    done: FinishedSession | None = None
    for kind, at, extra in events:
        out = tracker.feed(PlayerEvent(kind, at, **extra))  # type: ignore[arg-type]
        if out is not None:
            done = out
    assert done is not None
    return done


def E(kind: str, at: float, **extra: object) -> tuple[str, float, dict[str, object]]:
    return (kind, at, extra)


def test_contract_example() -> None:
    done = run([
        E("play", 100.0, channel="NPO1", content_type="live"),
        E("first_frame", 100.9),
        E("bitrate", 100.9, kbps=5400),
        E("stall_start", 340.0),
        E("stall_end", 343.5),
        E("pause", 420.0),
        E("resume", 480.0),
        E("seek", 500.0),
        E("error", 900.0, message="decoder failed"),
    ])
    r = done.record
    q = r.qos
    assert done.end == "error"
    assert q.failed is True
    assert q.startup_ms == 900
    assert q.watch_s == 740.0  # 800 s minus 60 s paused
    assert q.rebuffer_count == 1
    assert q.rebuffer_s == 3.5
    assert q.avg_bitrate_kbps == 5400.0
    assert q.bitrate_switches == 0
    assert r.channel == "NPO1" and r.content_type == "live"
    assert r.started_at == BASE_WALL
    assert r.ended_at == BASE_WALL + timedelta(seconds=800)


def test_stall_within_5s_after_seek_is_not_counted() -> None:
    q = run([
        E("play", 0.0), E("first_frame", 1.0),
        E("seek", 10.0), E("stall_start", 14.9), E("stall_end", 20.0),
        E("stop", 30.0),
    ]).record.qos
    assert q.rebuffer_count == 0 and q.rebuffer_s == 0.0
    assert q.watch_s == 30.0  # seek buffering is still in watch time


def test_stall_later_than_5s_after_seek_is_counted() -> None:
    q = run([
        E("play", 0.0), E("first_frame", 1.0),
        E("seek", 10.0), E("stall_start", 15.5), E("stall_end", 17.5),
        E("stop", 30.0),
    ]).record.qos
    assert q.rebuffer_count == 1 and q.rebuffer_s == 2.0


def test_stall_at_exactly_5s_after_seek_is_the_seeks_own() -> None:
    # "Within 5 s" includes 5 s itself (contract section 2): the window is closed. 10.0 and
    # 15.0 are exact in binary, so the difference is exactly 5.0 and not a rounding artefact.
    q = run([
        E("play", 0.0), E("first_frame", 1.0),
        E("seek", 10.0), E("stall_start", 15.0), E("stall_end", 17.0),
        E("stop", 30.0),
    ]).record.qos
    assert q.rebuffer_count == 0 and q.rebuffer_s == 0.0
    # Just past the window it counts: the edge sits at 5 s, not somewhere later.
    q = run([
        E("play", 0.0), E("first_frame", 1.0),
        E("seek", 10.0), E("stall_start", 15.0 + 2**-40), E("stall_end", 17.0),
        E("stop", 30.0),
    ]).record.qos
    assert q.rebuffer_count == 1 and q.rebuffer_s == pytest.approx(2.0)


def test_stall_before_first_frame_is_startup() -> None:
    q = run([
        E("play", 0.0), E("stall_start", 0.5), E("stall_end", 2.0), E("first_frame", 2.5),
        E("stop", 10.0),
    ]).record.qos
    assert q.rebuffer_count == 0 and q.startup_ms == 2500


def test_pause_never_stall_and_excluded_from_watch() -> None:
    q = run([
        E("play", 0.0), E("first_frame", 1.0), E("bitrate", 1.0, kbps=1000),
        E("stall_start", 10.0), E("pause", 12.0), E("resume", 52.0), E("stall_end", 53.0),
        E("stop", 100.0),
    ]).record.qos
    assert q.rebuffer_count == 1
    assert q.rebuffer_s == 3.0  # 10-12 and 52-53; the 40 s paused are not stall
    assert q.watch_s == 60.0


def test_stall_starting_while_paused_counts_only_if_it_outlasts_the_pause() -> None:
    q = run([
        E("play", 0.0), E("first_frame", 1.0),
        E("pause", 5.0), E("stall_start", 6.0), E("stall_end", 7.0), E("resume", 8.0),
        E("stop", 20.0),
    ]).record.qos
    assert q.rebuffer_count == 0 and q.rebuffer_s == 0.0
    assert q.watch_s == 17.0


def test_first_bitrate_and_equal_bitrate_are_not_switches() -> None:
    q = run([
        E("play", 0.0), E("first_frame", 1.0),
        E("bitrate", 1.0, kbps=3000), E("bitrate", 5.0, kbps=3000),
        E("bitrate", 11.0, kbps=6000), E("bitrate", 21.0, kbps=3000),
        E("stop", 31.0),
    ]).record.qos
    assert q.bitrate_switches == 2


def test_bitrate_weighted_by_time_played() -> None:
    q = run([
        E("play", 0.0), E("bitrate", 0.0, kbps=1000), E("first_frame", 10.0),
        # 10 s played at 1000, then 30 s stalled, then 10 s played at 4000, 100 s paused
        E("stall_start", 20.0), E("stall_end", 50.0), E("bitrate", 50.0, kbps=4000),
        E("pause", 60.0), E("resume", 160.0),
        E("stop", 160.0),
    ]).record.qos
    assert q.avg_bitrate_kbps == 2500.0
    assert q.bitrate_switches == 1


def test_no_bitrate_is_null() -> None:
    q = run([E("play", 0.0), E("first_frame", 1.0), E("stop", 5.0)]).record.qos
    assert q.avg_bitrate_kbps is None


def test_exit_before_first_frame() -> None:
    done = run([E("play", 0.0), E("bitrate", 0.5, kbps=2000), E("stop", 4.0)])
    q = done.record.qos
    assert q.startup_ms is None
    assert q.watch_s == 4.0
    assert q.failed is False
    assert done.end == "stop"


def test_error_is_failed() -> None:
    done = run([E("play", 0.0), E("error", 3.0, message="no such channel")])
    assert done.record.qos.failed is True and done.record.qos.startup_ms is None


def test_play_replaces_open_session() -> None:
    clock = FakeClock()
    tracker = SessionTracker(clock)
    assert tracker.feed(PlayerEvent("play", 0.0, channel="A")) is None
    first_id = tracker.open_session_id
    done = tracker.feed(PlayerEvent("play", 30.0, channel="B"))
    assert done is not None and done.end == "replaced"
    assert done.record.id == first_id and done.record.qos.watch_s == 30.0
    assert not done.record.qos.failed
    assert tracker.open_session_id not in (None, first_id)


def test_events_without_at_use_the_agent_clock() -> None:
    clock = FakeClock()
    tracker = SessionTracker(clock)
    tracker.feed(PlayerEvent("play"))
    clock.advance(2.0)
    tracker.feed(PlayerEvent("first_frame"))
    clock.advance(10.0)
    done = tracker.feed(PlayerEvent("stop"))
    assert done is not None
    assert done.record.qos.startup_ms == 2000 and done.record.qos.watch_s == 12.0
    assert done.record.ended_at - done.record.started_at == timedelta(seconds=12)


def test_shutdown_close_is_not_failure_and_time_never_goes_back() -> None:
    clock = FakeClock()
    tracker = SessionTracker(clock)
    tracker.feed(PlayerEvent("play", 50.0))
    tracker.feed(PlayerEvent("first_frame", 40.0))  # a sender clock stepping back
    clock.advance(5.0)
    done = tracker.close()
    assert done is not None and done.end == "shutdown" and not done.record.qos.failed
    q = done.record.qos
    assert q.startup_ms == 0 and q.watch_s == 5.0
    assert tracker.close() is None


def test_events_outside_a_session_are_ignored() -> None:
    tracker = SessionTracker(FakeClock())
    for kind in ("first_frame", "stall_start", "stop", "error"):
        assert tracker.feed(PlayerEvent(kind)) is None


def test_stall_starting_while_paused_counts_once_it_outlasts_the_pause() -> None:
    q = run([
        E("play", 0.0), E("first_frame", 1.0),
        E("pause", 5.0), E("stall_start", 6.0), E("resume", 8.0), E("stall_end", 11.0),
        E("stop", 20.0),
    ]).record.qos
    assert q.rebuffer_count == 1 and q.rebuffer_s == 3.0
    assert q.watch_s == 17.0


# -- each rule once more where a mutant showed it untested (scripts/mutation) -----------------

def test_every_stall_counts_once() -> None:
    q = run([
        E("play", 0.0), E("first_frame", 1.0),
        E("stall_start", 10.0), E("stall_end", 12.0),
        E("stall_start", 20.0), E("stall_end", 23.0),
        E("stall_start", 25.0), E("bitrate", 26.0, kbps=3000), E("stall_end", 26.5),
        E("stop", 30.0),
    ]).record.qos
    assert q.rebuffer_count == 3 and q.rebuffer_s == pytest.approx(6.5)


def test_stall_from_a_pause_counts_once_after_an_earlier_stall() -> None:
    # A stall before; then one that starts while paused and outlasts the pause, with an
    # event in the middle of it: one more, not two, and not a reset to one.
    q = run([
        E("play", 0.0), E("first_frame", 1.0),
        E("stall_start", 5.0), E("stall_end", 6.0),
        E("pause", 10.0), E("stall_start", 11.0), E("resume", 15.0),
        E("bitrate", 16.0, kbps=3000), E("bitrate", 17.0, kbps=4000), E("stall_end", 18.0),
        E("stop", 30.0),
    ]).record.qos
    assert q.rebuffer_count == 2 and q.rebuffer_s == pytest.approx(1.0 + 3.0)


def test_stall_ending_the_moment_the_pause_ends_is_not_counted() -> None:
    # It never outlasted the pause: no stall time, so no stall.
    q = run([
        E("play", 0.0), E("first_frame", 1.0),
        E("pause", 10.0), E("stall_start", 11.0), E("resume", 15.0), E("stall_end", 15.0),
        E("stop", 30.0),
    ]).record.qos
    assert q.rebuffer_count == 0 and q.rebuffer_s == 0.0
    assert q.watch_s == 25.0


def test_figures_are_rounded_to_the_millisecond() -> None:
    q = run([
        E("play", 0.0), E("first_frame", 0.5),
        E("bitrate", 0.5, kbps=1000.12345),
        E("stall_start", 2.0), E("stall_end", 3.23456),
        E("stop", 10.12345),
    ]).record.qos
    assert q.watch_s == 10.123 and q.rebuffer_s == 1.235 and q.avg_bitrate_kbps == 1000.123


def test_short_sessions_keep_their_length_and_average() -> None:
    # Under a second played: still a time-weighted average, and watch_s not rounded up.
    q = run([
        E("play", 0.0), E("first_frame", 0.0), E("bitrate", 0.0, kbps=3000),
        E("bitrate", 0.25, kbps=5000), E("stop", 0.5),
    ]).record.qos
    assert q.avg_bitrate_kbps == 4000.0 and q.watch_s == 0.5


def test_bitrate_without_time_played_falls_back_to_the_last_known() -> None:
    # No frame: nothing weighted. The last nominal rung is the answer; without one, the
    # last measured figure; a later unknown bitrate (kbps None) clears the measured one.
    nominal_then_measured = run([
        E("play", 0.0), E("bitrate", 0.1, kbps=3000), E("bitrate", 0.2, kbps=2500, nominal=False),
        E("stop", 2.0),
    ]).record.qos
    assert nominal_then_measured.avg_bitrate_kbps == 3000
    measured_only = run([
        E("play", 0.0), E("bitrate", 0.1, kbps=2500, nominal=False), E("stop", 2.0),
    ]).record.qos
    assert measured_only.avg_bitrate_kbps == 2500


def test_unknown_bitrate_stops_weighting() -> None:
    q = run([
        E("play", 0.0), E("first_frame", 0.0), E("bitrate", 0.0, kbps=5000),
        E("bitrate", 4.0), E("stop", 10.0),
    ]).record.qos
    assert q.avg_bitrate_kbps == 5000.0


def test_record_kind_and_id_from_the_clock() -> None:
    clock = FakeClock()
    tracker = SessionTracker(clock)
    tracker.feed(PlayerEvent("play", 0.0))
    done = tracker.feed(PlayerEvent("stop", 1.0))
    assert done is not None and done.record.kind == "session"
    # A UUIDv7 whose first 48 bits are the wall clock's milliseconds at play.
    assert uuid.UUID(done.record.id).int >> 80 == int(BASE_WALL.timestamp() * 1000)
    assert uuid.UUID(done.record.id).version == 7


def test_events_after_the_session_ended_are_ignored_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    tracker = SessionTracker(FakeClock())
    tracker.feed(PlayerEvent("play", 0.0))
    assert tracker.feed(PlayerEvent("stop", 1.0)) is not None
    with caplog.at_level(logging.DEBUG, logger="stb_widget.tracker"):
        assert tracker.feed(PlayerEvent("stall_start", 2.0)) is None
    assert tracker.open_session_id is None and tracker.close() is None
    assert [r.getMessage() for r in caplog.records] == \
        ["player event stall_start outside a session: ignored"]


def test_a_channel_the_collector_would_refuse_is_no_channel() -> None:
    """U+0000 in a channel name (from a player's metadata) would get the session rejected
    by the collector (contract section 3): the agent keeps the session, without channel."""
    from stb_widget.events import parse_event_line

    assert parse_event_line(b'{"event": "play", "channel": "NPO\\u00001"}').channel is None
    assert parse_event_line(b'{"event": "play", "channel": "NPO1"}').channel == "NPO1"


def test_describe_sets_channel_and_content_type_where_given() -> None:
    # A source that learns them after play (mpv's metadata): a None leaves the field as is.
    r = run([
        E("play", 0.0, channel="NPO1", content_type="live"),
        E("describe", 1.0, channel="RTL4"),
        E("describe", 2.0, content_type="vod"),
        E("stop", 3.0),
    ]).record
    assert (r.channel, r.content_type) == ("RTL4", "vod")
    q = run([E("play", 0.0, channel="NPO1"), E("first_frame", 0.5), E("describe", 1.0),
             E("stop", 3.0)])
    assert (q.record.channel, q.record.content_type) == ("NPO1", None)
    assert q.record.qos.watch_s == 3.0 and q.record.qos.startup_ms == 500


# -- picture height and dropped frames (contract sections 2 and 3) ---------------------------

def test_video_height_is_the_rendition_played_longest() -> None:
    # 720p plays 1-11 s and 50-55 s (15 s); 1080p plays 11-15 s and 45-50 s (9 s) but is
    # on screen through a 30 s pause and a 20 s stall, which are not time played.
    done = run([
        E("play", 0.0), E("first_frame", 1.0),
        E("bitrate", 1.0, kbps=3000.0, height=720),
        E("bitrate", 11.0, kbps=5000.0, height=1080),
        E("pause", 15.0), E("resume", 45.0),
        E("stall_start", 45.0), E("stall_end", 45.0),
        E("bitrate", 50.0, kbps=3000.0, height=720),
        E("bitrate", 55.0, kbps=3000.0, height=1080),  # last on screen, never played
        E("stall_start", 55.0), E("stall_end", 85.0),
        E("stop", 85.5),
    ])
    assert done.record.qos.video_height == 720


def test_video_height_adds_up_every_stretch_between_events() -> None:
    # 720p plays 0-30 s between events every 5 s (30 s in all), 1080p 30-40 s in one
    # stretch (10 s): the time is added up over every stretch, not taken from the last.
    events = [E("play", 0.0), E("first_frame", 0.0), E("bitrate", 0.0, kbps=3000.0, height=720)]
    events += [E("bitrate", float(t), kbps=3000.0 + t) for t in range(5, 30, 5)]
    events += [E("bitrate", 30.0, kbps=5000.0, height=1080), E("stop", 40.0)]
    assert run(events).record.qos.video_height == 720


def test_video_height_tie_takes_the_higher_and_height_holds_without_a_new_one() -> None:
    done = run([
        E("play", 0.0), E("first_frame", 0.0),
        E("bitrate", 0.0, kbps=3000.0, height=720),
        E("bitrate", 5.0, kbps=5000.0),  # no height: 720 holds
        E("height", 10.0, height=1080),  # a source telling the height alone (mpv)
        E("stop", 20.0),
    ])
    assert done.record.qos.video_height == 1080  # 10 s each: the higher


def test_no_height_played_is_null() -> None:
    # A height before the first frame, and the viewer gave up: nothing was played.
    done = run([E("play", 0.0), E("bitrate", 0.5, kbps=3000.0, height=720), E("stop", 4.0)])
    assert done.record.qos.video_height is None
    assert run([E("play", 0.0), E("first_frame", 1.0), E("stop", 9.0)]).record.qos.video_height is None


@pytest.mark.parametrize(("counts", "expected"), [
    ([], None),                 # the player never said
    ([4], 4),                   # only one count: the last
    ([0], 0),
    ([5, 9, 12], 7),            # last minus first
    ([5, 5], 0),
    ([10, 15, 3, 6], 11),       # counting started again at 3: 5 + 3 + 3
])
def test_dropped_frames_from_running_counts(counts: list[int], expected: int | None) -> None:
    events = [E("play", 0.0), E("first_frame", 1.0)]
    events += [E("dropped_frames", 2.0 + i, count=c) for i, c in enumerate(counts)]
    done = run([*events, E("stop", 30.0)])
    assert done.record.qos.dropped_frames == expected


def test_height_and_drops_are_on_the_wire_only_where_known() -> None:
    from protocol import record_to_json as encode_record

    known = run([E("play", 0.0), E("first_frame", 0.0), E("bitrate", 0.0, kbps=1.0, height=576),
                 E("dropped_frames", 1.0, count=3), E("stop", 2.0)]).record
    body = encode_record(known)
    assert body["qos"]["video_height"] == 576 and body["qos"]["dropped_frames"] == 3
    unknown = run([E("play", 0.0), E("first_frame", 0.0), E("stop", 2.0)]).record
    assert "video_height" not in encode_record(unknown)["qos"]
    assert "dropped_frames" not in encode_record(unknown)["qos"]
