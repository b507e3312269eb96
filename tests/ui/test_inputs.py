"""LIRC and evdev input: mapping to the one action map, repeats; a real lircd (Debian's
lirc, driven by ``irsend SIMULATE``), and evdev through the kernel's uinput where
``/dev/uinput`` exists (a fake InputDevice where it does not, and the output says so)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types
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


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not installed (Debian package lirc; scripts/setup-system)")
        pytest.skip(f"{tool} is not installed (Debian package lirc; scripts/setup-system)")
    return path


#: A remote as lircd knows it (lircd.conf); irsend SIMULATE only sends buttons it lists.
REMOTE_CONF = """
begin remote
  name  stbtest
  bits  16
  flags SPACE_ENC
  eps   30
  aeps  100
  header 9000 4500
  one    560 1690
  zero   560 560
  ptrail 560
  gap    108000
  begin codes
    KEY_OK          0x0001
    KEY_RIGHT       0x0003
    KEY_DOWN        0x0005
    KEY_BACK        0x0006
    KEY_9           0x0019
    KEY_NUMERIC_8   0x0208
  end codes
end remote
"""


@pytest.fixture
def real_lircd(lircd_path: Path) -> Iterator[Path]:
    """A real lircd (Debian's lirc) on a private socket; its "file" driver needs no IR
    hardware, and ``--allow-simulate`` lets ``irsend SIMULATE`` inject button presses,
    which lircd then broadcasts to its clients exactly as decoded IR."""
    lircd = need("lircd")
    need("irsend")
    folder = lircd_path.parent
    (folder / "remote.conf").write_text(REMOTE_CONF)
    (folder / "options.conf").write_text("")  # not the system's /etc/lirc options
    (folder / "nothing").write_text("")
    proc = subprocess.Popen(
        [lircd, "--nodaemon", "--options-file", str(folder / "options.conf"),
         "--driver", "file", "--device", str(folder / "nothing"), "--allow-simulate",
         "--output", str(lircd_path), "--pidfile", str(folder / "lircd.pid"),
         "--logfile", str(folder / "lircd.log"), str(folder / "remote.conf")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if lircd_path.is_socket() or proc.poll() is not None:
                break
            time.sleep(0.05)
        log = folder / "lircd.log"
        assert lircd_path.is_socket(), \
            f"lircd did not start: {log.read_text() if log.exists() else proc.returncode}"
        yield lircd_path
    finally:
        proc.terminate()
        proc.wait(10)


async def irsend(sock: Path, button: str, repeat: int = 0) -> None:
    """``irsend SIMULATE``: lircd sends ``<code> <repeat> <button> <remote>`` to clients."""
    proc = await asyncio.create_subprocess_exec(
        "irsend", "-d", str(sock), "SIMULATE", f"{0:016x} {repeat:02x} {button} stbtest",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out


async def test_read_lircd_yields_real_lircd_presses_until_it_stops(real_lircd: Path) -> None:
    events: list[RemoteEvent] = []
    connected = asyncio.Event()

    async def collect() -> None:
        async for event in read_lircd(str(real_lircd)):
            events.append(event)
            connected.set()

    task = asyncio.create_task(collect())
    # The reader connects at once; the first press shows it is in.
    for _ in range(50):
        await irsend(real_lircd, "KEY_RIGHT")
        try:
            await asyncio.wait_for(connected.wait(), 0.1)
            break
        except TimeoutError:
            continue
    events.clear()
    await irsend(real_lircd, "KEY_RIGHT")
    await irsend(real_lircd, "KEY_RIGHT", repeat=3)
    await irsend(real_lircd, "KEY_OK")
    for _ in range(50):
        if len(events) >= 3:
            break
        await asyncio.sleep(0.02)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert events == [
        RemoteEvent(Action.RIGHT),
        RemoteEvent(Action.RIGHT, repeat=True),
        RemoteEvent(Action.CONFIRM),
    ]


async def test_read_lircd_without_lircd_yields_nothing(lircd_path: Path) -> None:
    assert [e async for e in read_lircd(str(lircd_path))] == []


async def test_a_real_lircd_drives_the_question_and_repeats_never_confirm(
    real_lircd: Path
) -> None:
    sink = RecordingSink()

    def source() -> AsyncIterator[RemoteEvent]:
        return read_lircd(str(real_lircd))

    app = make_app(sink=sink, remotes=(source,))
    async with app.run_test() as pilot:

        async def press(button: str, repeat: int = 0) -> None:
            await irsend(real_lircd, button, repeat)
            for _ in range(5):
                await pilot.pause(0.02)

        # The app connects its LIRC reader when it starts; wait until a press lands.
        for _ in range(50):
            await press("KEY_RIGHT")
            if app.screen.query_one(ScoreScale).value is not None:
                break
        assert app.screen.query_one(ScoreScale).value == 0
        await press("KEY_RIGHT", 1)
        await press("KEY_RIGHT", 2)
        assert app.screen.query_one(ScoreScale).value == 2  # repeats moved
        # A held OK (repeats) and held digits do nothing.
        for button in ("KEY_OK", "KEY_OK", "KEY_9", "KEY_BACK"):
            await press(button, 1)
        assert app.screen.query_one(ScoreScale).value == 2
        assert sink.calls == []
        await press("KEY_NUMERIC_8")
        await press("KEY_OK")
        assert isinstance(app.screen, ReasonScreen)
        await press("KEY_DOWN")
        await press("KEY_DOWN", 1)
        await press("KEY_OK")
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


async def test_evdev_through_the_kernel_where_uinput_exists(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A virtual remote made with python-evdev's UInput: the kernel's input layer makes a
    real /dev/input/event* device, which read_evdev grabs and reads. Where /dev/uinput is
    missing (containers, CI runners) the same presses go through a fake InputDevice, and
    the output says so."""
    try:
        import evdev
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("python-evdev is not installed (it is in the dev extra)")
        evdev = None
    presses = [(106, 1), (106, 0), (106, 2), (0x160, 2), (0x205, 1), (0x205, 0), (0x160, 1)]
    expected = [RemoteEvent(Action.RIGHT), RemoteEvent(Action.RIGHT, repeat=True),
                RemoteEvent(Action.CONFIRM, repeat=True), RemoteEvent(Action.DIGIT_5),
                RemoteEvent(Action.CONFIRM)]
    if evdev is not None and os.access("/dev/uinput", os.W_OK):
        ui = evdev.UInput({EV_KEY: sorted({code for code, _ in presses})},
                          name="iptv-nps test remote")
        try:
            path = ui.device.path
            events: list[RemoteEvent] = []

            async def collect() -> None:
                async for event in read_evdev(path):
                    events.append(event)

            task = asyncio.create_task(collect())
            await asyncio.sleep(0.2)  # let the reader open and grab the device
            for code, value in presses:
                ui.write(EV_KEY, code, value)
                ui.syn()
            for _ in range(100):
                if len(events) >= len(expected):
                    break
                await asyncio.sleep(0.02)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        finally:
            ui.close()
        with capsys.disabled():
            print(f"\nevdev: tested through the kernel's uinput ({path})")
        assert events == expected
        return
    with capsys.disabled():
        print("\nNOTE: /dev/uinput is missing here (or python-evdev is not installed): "
              "evdev input is tested with a FAKE InputDevice, not through the kernel")
    fake = types.ModuleType("evdev")

    class Device(_FakeInputDevice):
        async def async_read_loop(self) -> AsyncIterator[_FakeInputEvent]:
            for code, value in presses:
                yield _FakeInputEvent(EV_KEY, code, value)

    fake.InputDevice = Device  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "evdev", fake)
    assert [e async for e in read_evdev("/dev/input/event7")] == expected
