"""Shared helpers of the box agent's tests."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stb_widget.config import Config, parse_config

BASE_WALL = datetime(2026, 11, 22, 20, 0, 0, tzinfo=UTC)


class FakeClock:
    """A hand-driven clock: ``advance`` moves wall and monotonic time together."""

    def __init__(self, wall: datetime = BASE_WALL, mono: float = 1000.0) -> None:
        self._wall = wall
        self._mono = mono

    def wall(self) -> datetime:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._mono += seconds
        self._wall += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        # Time passes at once; yield so other tasks run.
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)


def make_config(tmp_path: Path, **sections: Any) -> Config:
    raw: dict[str, Any] = {
        "box_id": "stb-test-1",
        "data_dir": str(tmp_path / "data"),
        "collector": {"url": "http://127.0.0.1:9", "token": "secret-token",
                      "boot_jitter_s": 0, "upload_delay_s": 0},
        "player": {"source": "events", "events_socket": str(tmp_path / "ev.sock")},
        "survey": {"enabled": True, "sample_rate": 1.0, "min_watch_s": 0},
    }
    for name, values in sections.items():
        if isinstance(values, dict):
            raw.setdefault(name, {}).update(values)
        else:
            raw[name] = values
    return parse_config(raw)


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()
