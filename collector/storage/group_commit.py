"""Group commit: the one writer queue both stores put their uploads through."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import NamedTuple

from ..errors import CollectorError, OverloadedError, StorageError, TokenRefusedError
from ..model import Row, TokenInfo, UploadAuth

log = logging.getLogger("collector.storage")


class Upload(NamedTuple):
    """One upload in a group."""

    rows: Sequence[Row]
    #: The token to check before storing the rows (if any).
    auth: UploadAuth | None

#: Per upload, True/False per row (new or held), or why its token was refused (then
#: nothing of it was stored).
WriteResult = list[bool] | TokenRefusedError
WriteGroup = Callable[[list[Upload]], Awaitable[list[WriteResult]]]
#: Whether a failed group write may have been caused by what one upload holds (a value the
#: database refuses), so that writing the group in parts can store the others.
MayBeOneUpload = Callable[[BaseException], bool]


def upload_token_hashes(uploads: list[Upload]) -> list[bytes]:
    """The distinct token hashes a group's uploads came with."""
    return list({u.auth.token_hash for u in uploads if u.auth is not None})


def refusals(uploads: list[Upload], found: Mapping[bytes, TokenInfo]) -> dict[int, TokenRefusedError]:
    """By upload index, why its token (looked up in ``found``) does not allow it."""
    out: dict[int, TokenRefusedError] = {}
    for i, u in enumerate(uploads):
        why = u.auth.refusal(found.get(u.auth.token_hash)) if u.auth is not None else None
        if why is not None:
            out[i] = TokenRefusedError(why)
    return out


def first_rows(uploads: list[Upload], refused: Mapping[int, TokenRefusedError]) -> dict[str, Row]:
    """The group's records by id, each id's first occurrence, of the uploads not refused."""
    first: dict[str, Row] = {}
    for i, u in enumerate(uploads):
        if i not in refused:
            for r in u.rows:
                first.setdefault(r.id, r)
    return first


def results_of(uploads: list[Upload], refused: Mapping[int, TokenRefusedError],
               new: set[str]) -> list[WriteResult]:
    """Per upload, its refusal or per row whether it was stored as new (a row's first
    occurrence in the group, with its id among ``new``)."""
    results: list[WriteResult] = []
    seen: set[str] = set()
    for i, u in enumerate(uploads):
        if i in refused:
            results.append(refused[i])
            continue
        res = []
        for r in u.rows:
            res.append(r.id in new and r.id not in seen)
            seen.add(r.id)
        results.append(res)
    return results


class _Pending:
    __slots__ = ("future", "upload")

    def __init__(self, upload: Upload, future: asyncio.Future[list[bool]]) -> None:
        self.upload = upload
        self.future = future


class GroupCommitQueue:
    """Uploads wait here; a writer task writes everything already queued in one
    transaction.

    ``writers`` tasks write at once, each its own group (1: one group at a time, as
    SQLite's single writer needs; PostgreSQL takes several, as it takes several
    instances: while one group waits on the server's round trips and its commit's flush,
    the next is written). Bounded by batches, not memory growth: when ``max_batches``
    wait, :meth:`submit` raises :class:`OverloadedError` so the collector can answer 503
    with Retry-After.
    """

    def __init__(self, write_group: WriteGroup, *, name: str, max_batches: int,
                 max_records: int, retry_after_s: int,
                 may_be_one_upload: MayBeOneUpload = lambda exc: True, writers: int = 1) -> None:
        if writers < 1:
            raise ValueError(f"writers: need at least 1, not {writers}")
        self._writers = writers
        self._write_group = write_group
        self._may_be_one_upload = may_be_one_upload
        self._name = name
        self._max_batches = max_batches
        self._max_records = max_records
        self._retry_after_s = retry_after_s
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._waiting = 0
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def depth(self) -> int:
        """Batches waiting for the writer."""
        return self._waiting

    def start(self) -> None:
        """Start the writer tasks."""
        self._tasks = [asyncio.create_task(self._run(), name=f"{self._name}-{i}")
                       for i in range(self._writers)]

    async def stop(self) -> None:
        """Write what is queued, then end the writer tasks."""
        # One end mark per task: a task ends at the first it takes, so each takes one.
        for _ in self._tasks:
            self._queue.put_nowait(None)
        tasks, self._tasks = self._tasks, []
        await asyncio.gather(*tasks)

    async def submit(self, rows: Sequence[Row], auth: UploadAuth | None = None) -> list[bool]:
        """Queue rows; answer per row whether it was new, once committed (raises
        :class:`TokenRefusedError` if ``auth`` was refused in the write transaction)."""
        if self._waiting >= self._max_batches:
            raise OverloadedError(self._retry_after_s)
        future: asyncio.Future[list[bool]] = asyncio.get_running_loop().create_future()
        self._waiting += 1
        self._queue.put_nowait(_Pending(Upload(rows, auth), future))
        return await future

    async def _run(self) -> None:
        stop = False
        while not stop:
            first = await self._queue.get()
            if first is None:
                break
            group = [first]
            size = len(first.upload.rows)
            # Everything already queued joins this commit: one fsync for many uploads.
            while size < self._max_records and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stop = True
                    break
                group.append(nxt)
                size += len(nxt.upload.rows)
            self._waiting -= len(group)
            outcomes = await self._write_isolated([p.upload for p in group])
            for p, res in zip(group, outcomes, strict=True):
                if p.future.done():
                    continue
                if isinstance(res, BaseException):
                    p.future.set_exception(res)
                else:
                    p.future.set_result(res)

    async def _write_isolated(self, uploads: list[Upload]) -> list[list[bool] | CollectorError]:
        """Write a group; if it fails, write its halves, so that one upload the database
        refuses fails alone and every other upload of the group is stored.

        One box's bad record must never fail the fleet's uploads that happened to share its
        commit. A failure that cannot come from one upload's data (the database gone, the
        disk full) fails the whole group at once instead of being tried piece by piece.
        Halving costs about ``2 log2(n)`` extra transactions for one bad upload among n.
        """
        try:
            results: list[list[bool] | CollectorError] = list(await self._write_group(uploads))
            return results
        except Exception as exc:
            if len(uploads) > 1 and self._may_be_one_upload(exc):
                log.warning("group commit of %d batches failed (%s); writing it in parts",
                            len(uploads), _describe(exc))
                mid = len(uploads) // 2
                return [*await self._write_isolated(uploads[:mid]),
                        *await self._write_isolated(uploads[mid:])]
            if len(uploads) == 1:
                log.error("a batch could not be stored: %s", _describe(exc))
            else:
                log.error("group commit of %d batches failed: %s", len(uploads), _describe(exc))
            err = StorageError(f"write failed: {_describe(exc)}")
            err.__cause__ = exc
            return [err] * len(uploads)


def _describe(exc: BaseException) -> str:
    # The exception's class and first line: a database's message may quote the value
    # refused, which is the sender's data, not something to copy into logs at length.
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}"
