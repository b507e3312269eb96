"""The group-commit queue with several writers (PostgreSQL's ``writers`` URL option):
groups are written at once, every upload is answered once, and stopping writes what is
queued. With one writer (SQLite) a group never starts while another is being written."""

from __future__ import annotations

import asyncio

import pytest

from collector.errors import ConfigError
from collector.settings import Settings
from collector.storage.group_commit import GroupCommitQueue, Upload, WriteResult
from collector.storage.postgres import WRITERS, PostgresStorage

from .conftest import ADMIN


class Recorder:
    """A write function that answers each row True after ``delay`` and keeps track of
    how many groups were being written at once."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.in_flight = 0
        self.most = 0
        self.groups: list[int] = []

    async def write(self, uploads: list[Upload]) -> list[WriteResult]:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            self.groups.append(len(uploads))
            return [[True] * len(u.rows) for u in uploads]
        finally:
            self.in_flight -= 1


def queue(rec: Recorder, writers: int, max_records: int = 3) -> GroupCommitQueue:
    return GroupCommitQueue(rec.write, name="test-writer", max_batches=1000, max_records=max_records,
                            retry_after_s=1, writers=writers)


@pytest.mark.parametrize("writers", [1, 2, 3])
async def test_writers_write_groups_at_once_and_answer_every_upload(writers: int) -> None:
    rec = Recorder(0.02)
    q = queue(rec, writers)
    q.start()
    # 30 uploads of one row, at most 3 rows a group: at least 10 groups.
    answers = await asyncio.gather(*(q.submit([object()] * 1) for _ in range(30)))  # type: ignore[list-item]
    await q.stop()
    assert answers == [[True]] * 30
    assert sum(rec.groups) == 30 and max(rec.groups) <= 3
    assert rec.most == writers  # never more than asked for, and as many as asked for


async def test_stop_writes_what_is_queued_with_every_writer() -> None:
    rec = Recorder(0.01)
    q = queue(rec, 2, max_records=1)
    q.start()
    pending = [asyncio.ensure_future(q.submit([object()])) for _ in range(7)]  # type: ignore[list-item]
    await asyncio.sleep(0)  # all seven queued before the end marks
    await q.stop()
    assert [p.result() for p in pending] == [[True]] * 7
    assert rec.groups == [1] * 7


def test_writers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="writers"):
        queue(Recorder(0), 0)


@pytest.mark.parametrize(("options", "writers"), [
    ("", WRITERS), ("?writers=1", 1), ("?writers=4&pool_max=5", 4),
    # A small pool keeps working as before: the default leaves a connection for reads.
    ("?pool_max=2", 1), ("?pool_min=1&pool_max=1", 1), ("?pool_min=1&pool_max=1&writers=1", 1),
])
def test_postgres_writers_option(options: str, writers: int) -> None:
    st = PostgresStorage(f"postgresql://nobody@127.0.0.1:1/none{options}", Settings(admin_token=ADMIN))
    assert st._writers == writers  # the option's only effect before open


@pytest.mark.parametrize("options", ["?writers=0", "?writers=10", "?writers=3&pool_max=3", "?writers=two",
                                     "?pool_min=1&pool_max=1&writers=2"])
def test_postgres_writers_option_out_of_range(options: str) -> None:
    with pytest.raises(ConfigError, match=r"writers|not a number"):
        PostgresStorage(f"postgresql://nobody@127.0.0.1:1/none{options}", Settings(admin_token=ADMIN))
