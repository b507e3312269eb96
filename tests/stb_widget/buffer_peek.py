"""Reading a running agent's buffer from a test.

The agent holds its buffer in SQLite's exclusive locking mode (the wal-index in its heap
spares the flash a -shm file), so no other process can open the file while it runs. A
test that watches the buffer meanwhile reads a copy: the agent is frozen (SIGSTOP), the
database and its WAL are copied as they stand, the agent goes on (SIGCONT), and SQLite
recovers the copy from its WAL as it would after a power cut.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def peek(db: Path, pid: int | None = None) -> Iterator[sqlite3.Connection | None]:
    """A connection to the buffer ``db`` as it stands (None where there is no file yet).

    ``pid``: the agent holding it, if it runs; it is frozen while its files are copied.
    """
    if pid is None:
        if not db.exists():
            yield None
            return
        con = sqlite3.connect(db, timeout=10)
        try:
            yield con
        finally:
            con.close()
        return
    with tempfile.TemporaryDirectory(prefix="peek-") as tmp:
        copy = Path(tmp) / db.name
        os.kill(pid, signal.SIGSTOP)
        try:
            found = db.exists()
            if found:
                shutil.copyfile(db, copy)
                wal = Path(f"{db}-wal")
                with contextlib.suppress(FileNotFoundError):
                    shutil.copyfile(wal, Path(f"{copy}-wal"))
        finally:
            os.kill(pid, signal.SIGCONT)
        if not found:
            yield None
            return
        con = sqlite3.connect(copy, timeout=10)
        try:
            yield con
        finally:
            con.close()
