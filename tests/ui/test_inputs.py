"""LIRC and evdev input: mapping to the one action map, repeats, and a fake lircd socket."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from stb_widget.ui.evdev_input import EV_KEY, KEY_CODES, evdev_event, read_evdev
from stb_widget.ui.keys import KEYBOARD, Action, RemoteEvent, accept, linux_key_action
from stb_widget.ui.lirc import parse_lircd_line, read_lircd
from stb_widget.ui.screens import ReasonScreen
from stb_widget.ui.widgets import ScoreScale

from .conftest import RecordingSink, make_app


def test_every_action_is_reachable_from_each_source() -> None:
    every = set(Action)
    assert set(KEYBOARD.values()) == every
    assert {linux_key_action(n) for n in KEY_CODES.values()} == every


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("0000000000100e11 00 KEY_OK mceusb", RemoteEvent(Action.CONFIRM)),
        ("0000000000100e11 01 KEY_OK mceusb", RemoteEvent(Action.CONFIRM, repeat=True)),
        ("000000000010080b 0a KEY_RIGHT mceusb\n", RemoteEvent(Action.RIGHT, repeat=True)),
        ("0000000000100e15 00 KEY_LEFT remote", RemoteEvent(Action.LEFT)),
        ("0000000000100e15 00 KEY_UP remote", RemoteEvent(Action.UP)),
        ("0000000000100e15 00 KEY_DOWN remote", RemoteEvent(Action.DOWN)),
        ("0000000000100e15 00 KEY_SELECT remote", RemoteEvent(Action.CONFIRM)),
        ("0000000000100e15 00 KEY_ENTER remote", RemoteEvent(Action.CONFIRM)),
        ("0000000000100e15 00 KEY_BACK remote", RemoteEvent(Action.BACK)),
        ("0000000000100e15 00 KEY_EXIT remote", RemoteEvent(Action.BACK)),
        ("0000000000100e15 00 KEY_ESC remote", RemoteEvent(Action.BACK)),
        ("0000000000100e15 00 KEY_7 remote", RemoteEvent(Action.DIGIT_7)),
        ("0000000000100e15 00 KEY_NUMERIC_0 remote", RemoteEvent(Action.DIGIT_0)),
        ("0000000000100e15 00 ok hand-made", RemoteEvent(Action.CONFIRM)),
        ("0000000000100e15 00 KEY_VOLUMEUP remote", None),
        ("BEGIN", None),
        ("SIGHUP", None),
        ("", None),
        ("zz 00 KEY_OK remote", None),
        ("0000000000100e15 xx KEY_OK remote", None),
    ],
)
def test_lircd_lines(line: str, expected: RemoteEvent | None) -> None:
    assert parse_lircd_line(line) == expected


@pytest.mark.parametrize(
    ("code", "value", "expected"),
    [
        (0x160, 1, RemoteEvent(Action.CONFIRM)),  # KEY_OK
        (0x161, 1, RemoteEvent(Action.CONFIRM)),  # KEY_SELECT
        (28, 1, RemoteEvent(Action.CONFIRM)),  # KEY_ENTER
        (158, 1, RemoteEvent(Action.BACK)),  # KEY_BACK
        (174, 1, RemoteEvent(Action.BACK)),  # KEY_EXIT
        (1, 1, RemoteEvent(Action.BACK)),  # KEY_ESC
        (105, 1, RemoteEvent(Action.LEFT)),
        (106, 2, RemoteEvent(Action.RIGHT, repeat=True)),
        (103, 1, RemoteEvent(Action.UP)),
        (108, 1, RemoteEvent(Action.DOWN)),
        (2, 1, RemoteEvent(Action.DIGIT_1)),  # KEY_1
        (11, 1, RemoteEvent(Action.DIGIT_0)),  # KEY_0
        (0x200, 1, RemoteEvent(Action.DIGIT_0)),  # KEY_NUMERIC_0
        (0x209, 1, RemoteEvent(Action.DIGIT_9)),  # KEY_NUMERIC_9
        (0x160, 0, None),  # release
        (0x160, 2, RemoteEvent(Action.CONFIRM, repeat=True)),
        (115, 1, None),  # KEY_VOLUMEUP
    ],
)
def test_evdev_events(code: int, value: int, expected: RemoteEvent | None) -> None:
    assert evdev_event(EV_KEY, code, value) == expected


def test_evdev_ignores_other_event_types() -> None:
    assert evdev_event(0x00, 0, 0) is None  # EV_SYN
    assert evdev_event(0x04, 4, 0x160) is None  # EV_MSC scan code


def test_repeats_only_move() -> None:
    for action in Action:
        assert accept(RemoteEvent(action))
        assert accept(RemoteEvent(action, repeat=True)) == (
            action in (Action.LEFT, Action.RIGHT, Action.UP, Action.DOWN)
        )


@pytest.fixture
def lircd_path() -> Iterator[Path]:
    # A short path: unix socket paths are limited to ~107 bytes.
    with tempfile.TemporaryDirectory(prefix="lirc") as folder:
        yield Path(folder) / "lircd"


class FakeLircd:
    """A lircd stand-in: accepts one client and writes the lines it is given."""

    def __init__(self) -> None:
        self.writer: asyncio.StreamWriter | None = None
        self.connected = asyncio.Event()

    async def on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.connected.set()

    async def send(self, *lines: str) -> None:
        assert self.writer is not None
        for line in lines:
            self.writer.write(line.encode() + b"\n")
        await self.writer.drain()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def test_read_lircd_yields_presses_until_the_socket_closes(lircd_path: Path) -> None:
    fake = FakeLircd()
    server = await asyncio.start_unix_server(fake.on_client, path=str(lircd_path))
    async with server:
        events: list[RemoteEvent] = []

        async def collect() -> None:
            async for event in read_lircd(str(lircd_path)):
                events.append(event)

        task = asyncio.create_task(collect())
        await asyncio.wait_for(fake.connected.wait(), 5)
        await fake.send("0 00 KEY_RIGHT r", "BEGIN", "garbage", "0 03 KEY_RIGHT r", "0 00 KEY_OK r")
        fake.close()
        await asyncio.wait_for(task, 5)
    assert events == [
        RemoteEvent(Action.RIGHT),
        RemoteEvent(Action.RIGHT, repeat=True),
        RemoteEvent(Action.CONFIRM),
    ]


async def test_read_lircd_without_lircd_yields_nothing(lircd_path: Path) -> None:
    assert [e async for e in read_lircd(str(lircd_path))] == []


async def test_lirc_drives_the_question_and_repeats_never_confirm(lircd_path: Path) -> None:
    fake = FakeLircd()
    server = await asyncio.start_unix_server(fake.on_client, path=str(lircd_path))
    sink = RecordingSink()

    def source() -> AsyncIterator[RemoteEvent]:
        return read_lircd(str(lircd_path))

    async with server:
        app = make_app(sink=sink, remotes=(source,))
        async with app.run_test() as pilot:
            await asyncio.wait_for(fake.connected.wait(), 5)

            async def feed(*lines: str) -> None:
                await fake.send(*lines)
                for _ in range(5):
                    await pilot.pause(0.02)

            await feed("1 00 KEY_RIGHT tv", "1 01 KEY_RIGHT tv", "1 02 KEY_RIGHT tv")
            assert app.screen.query_one(ScoreScale).value == 2  # repeats moved
            # A held OK (repeats) and held digits do nothing.
            await feed("2 01 KEY_OK tv", "2 02 KEY_OK tv", "3 01 KEY_9 tv", "4 01 KEY_BACK tv")
            assert app.screen.query_one(ScoreScale).value == 2
            assert sink.calls == []
            await feed("5 00 KEY_NUMERIC_8 tv", "2 00 KEY_OK tv")
            for _ in range(5):
                await pilot.pause(0.02)
            assert isinstance(app.screen, ReasonScreen)
            await feed("6 00 KEY_DOWN tv", "6 01 KEY_DOWN tv", "7 00 KEY_OK tv")
            for _ in range(5):
                await pilot.pause(0.02)
        fake.close()
    assert [r.score for _, r in sink.calls] == [8, 8]
    assert sink.calls[-1][1].reason == "buffering"


async def test_evdev_events_drive_the_question() -> None:
    # Fake input events, as python-evdev's InputEvent carries them: (type, code, value).
    raw = [
        (EV_KEY, 106, 1), (EV_KEY, 106, 2), (EV_KEY, 106, 0),  # RIGHT, held
        (EV_KEY, 0x160, 2),  # OK auto-repeat: ignored
        (EV_KEY, 0x205, 1), (EV_KEY, 0x205, 0),  # NUMERIC_5
        (0x00, 0, 0),  # EV_SYN
        (EV_KEY, 0x160, 1),  # OK
    ]

    async def source() -> AsyncIterator[RemoteEvent]:
        for type_, code, value in raw:
            event = evdev_event(type_, code, value)
            if event is not None:
                yield event

    sink = RecordingSink()
    app = make_app(sink=sink, remotes=(source,))
    async with app.run_test() as pilot:
        for _ in range(6):
            await pilot.pause(0.02)
        assert isinstance(app.screen, ReasonScreen)
    assert [(k, r.score) for k, r in sink.calls] == [("confirmed", 5)]


async def test_evdev_reader_without_evdev_or_device_yields_nothing() -> None:
    # Without the evdev extra (or without the device) the question still works by keyboard.
    assert [e async for e in read_evdev("/dev/input/no-such-event99")] == []


class _FakeInputEvent:
    def __init__(self, type_: int, code: int, value: int) -> None:
        self.type, self.code, self.value = type_, code, value


class _FakeInputDevice:
    """Stands in for ``evdev.InputDevice``: replays events, notes grab and close."""

    instances: list[_FakeInputDevice] = []  # noqa: RUF012 (test double)

    def __init__(self, path: str) -> None:
        self.path = path
        self.grabbed = False
        self.closed = False
        _FakeInputDevice.instances.append(self)

    def grab(self) -> None:
        self.grabbed = True

    def close(self) -> None:
        self.closed = True

    async def async_read_loop(self) -> AsyncIterator[_FakeInputEvent]:
        for raw in [(EV_KEY, 0x160, 1), (EV_KEY, 0x160, 0), (EV_KEY, 0x160, 2), (EV_KEY, 108, 2)]:
            yield _FakeInputEvent(*raw)


async def test_read_evdev_with_a_fake_evdev_module(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    fake = types.ModuleType("evdev")
    fake.InputDevice = _FakeInputDevice  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "evdev", fake)
    events = [e async for e in read_evdev("/dev/input/event7")]
    assert events == [RemoteEvent(Action.CONFIRM), RemoteEvent(Action.CONFIRM, repeat=True),
                      RemoteEvent(Action.DOWN, repeat=True)]
    device = _FakeInputDevice.instances[-1]
    assert (device.path, device.grabbed, device.closed) == ("/dev/input/event7", True, True)
