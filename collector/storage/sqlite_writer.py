"""The SQLite store's one writer: a thread that owns the writing connection.

Every write is one plain function of the connection, run whole on that thread (the
pattern of Datasette's ``execute_write_fn``). A group commit of many uploads is therefore
one hop from the event loop to the thread and back, not one per statement: with 32
uploaders keeping the event loop busy decoding, every hop back to the loop waited behind
their handlers, and a group of a dozen statements spent most of its time waiting. On
the thread, SQLite runs without the GIL while the event loop decodes the next uploads.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar

from ..errors import StoreClosedError

_T = TypeVar("_T")


def connect(path: Path, *, query_only: bool = False) -> sqlite3.Connection:
    """A connection with the store's settings: WAL, ``synchronous=FULL``, autocommit
    (transactions are opened explicitly with ``BEGIN IMMEDIATE``)."""
    # Room for the multi-row statements of :func:`insert_rows` (a few sizes per table).
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                           cached_statements=512)
    conn.execute("PRAGMA journal_mode = WAL")
    # FULL: an acknowledgement means the commit is on disk, even after power loss.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA cache_size = -65536")
    if query_only:
        conn.execute("PRAGMA query_only = ON")
    return conn


#: The most rows :func:`insert_rows` puts in one statement.
_MAX_ROWS: Final = 1024


def insert_rows(conn: sqlite3.Connection, head: str, rows: Sequence[Sequence[Any]],
                tail: str = "") -> None:
    """``head VALUES (...), (...), ... tail`` for ``rows``, up to 1,024 rows a statement.

    Not ``executemany``: it steps once per row, and ``sqlite3`` releases the GIL around
    every step. While the event loop decodes uploads, each release hands the GIL over and
    getting it back waits for the loop's switch interval (5 ms by default): measured here,
    3,000 rows took 4 ms a row that way beside a busy thread, against 10 µs in multi-row
    statements, which step once. The sizes are the largest one and its halves, so that
    the connection's statement cache holds them all."""
    if not rows:
        return
    width = len(rows[0])
    one = "(" + ",".join("?" * width) + ")"
    # The build's limit on bound values (32,766 since SQLite 3.32, 999 before).
    most = max(1, min(_MAX_ROWS, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))
    i, n = 0, len(rows)
    while i < n:
        size = most
        while size > n - i:
            size //= 2
        chunk = rows[i:i + size]
        conn.execute(f"{head} VALUES {','.join([one] * size)} {tail}",
                     list(itertools.chain.from_iterable(chunk)))
        i += size


class WriterThread:
    """One thread, one connection; :meth:`run` calls a function with it on that thread."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._pool: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        """Start the thread and open the connection on it (raises ``sqlite3.Error``)."""
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        try:
            self._conn = await asyncio.get_running_loop().run_in_executor(
                self._pool, connect, self._path)
        except BaseException:
            self._pool.shutdown(wait=False)
            self._pool = None
            raise

    async def run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """``fn(connection)`` on the writer thread; its exceptions come back as raised."""
        pool, conn = self._pool, self._conn
        if pool is None or conn is None:
            raise StoreClosedError(f"the writer of {self._path} is closed")
        return await asyncio.get_running_loop().run_in_executor(pool, fn, conn)

    async def close(self) -> None:
        """Close the connection and end the thread; closing twice is harmless."""
        pool, conn = self._pool, self._conn
        self._pool = self._conn = None
        if pool is None:
            return
        try:
            if conn is not None:
                await asyncio.get_running_loop().run_in_executor(pool, conn.close)
        finally:
            pool.shutdown(wait=True)


def transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], _T]) -> _T:
    """``fn`` inside ``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back if it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        out = fn(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return out
