"""Inflating and decoding upload bodies: small ones on the event loop, large ones in a
worker process.

A gzip body of 8 KB can inflate to 8 MiB of JSON whose decoding holds the CPU, and the
GIL, for 0.1 to 1 s (``orjson.loads`` of millions of tiny values never releases the
GIL, so a thread would stall the event loop just the same). Bodies that inflate past
:data:`INLINE_MAX_BYTES` are therefore inflated and decoded in a separate process, and
the event loop keeps answering every other box meanwhile. What was measured to choose
the threshold is in RELIABILITY.md ("Decompression bombs").

This module imports nothing from aiohttp: the worker processes import it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures.process import BrokenProcessPool

from protocol import BatchError, DecodedBatch, TooLargeError, decode_batch, inflate

from .errors import OverloadedError

log = logging.getLogger("collector.decoding")

#: Bodies that inflate to at most this many bytes are decoded on the event loop. A full
#: normal batch (500 records, about 160 KB) stays below it, so normal uploads keep their
#: path without a process hop (4 to 6 times slower); and below it the worst JSON per byte
#: (empty objects) costs the loop about what such a normal batch does (figures:
#: RELIABILITY.md, "Hostile input, round two").
INLINE_MAX_BYTES = 256 * 1024
#: Uploads waiting for a worker beyond this many are answered 503 with Retry-After:
#: a queue of bodies of up to 1 MiB each must not grow without bound.
MAX_PENDING = 64
#: Retry-After (s) of that 503.
RETRY_AFTER_S = 5

#: What a worker answers: the batch, or a refusal's (status, code, detail). BatchError
#: itself does not survive pickling (its subclasses take one argument, not three).
_Outcome = DecodedBatch | tuple[int, str, str]


def _decode_in_worker(body: bytes, gzipped: bool) -> _Outcome:
    try:
        return decode_batch(inflate(body, gzipped=gzipped))
    except BatchError as exc:
        return (exc.status, exc.code, exc.detail)


#: How much lower the workers' CPU priority is than the collector's (``nice``): where the
#: CPUs are busy, the event loop serving every box wins over decoding a few large bodies.
WORKER_NICENESS = 10


def _worker_init(parent: int) -> None:
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    # A collector killed outright (SIGKILL, out of memory) cannot stop its workers, and a
    # worker never sees its queue close (it holds both ends): it leaves by itself.
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


class BodyDecoder:
    """Decodes request bodies, the large ones in ``workers`` worker processes."""

    def __init__(self, workers: int = 1, max_pending: int = MAX_PENDING) -> None:
        self._workers = workers
        self._max_pending = max_pending
        self._pending = 0
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        #: Bodies decoded in a worker so far (the tests read it).
        self.offloaded = 0

    def _new_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        # spawn, not fork: the collector has threads (the SQLite writer, executors), and a
        # forked child could inherit a lock held by one of them.
        return concurrent.futures.ProcessPoolExecutor(
            max_workers=self._workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init, initargs=(os.getpid(),))

    async def close(self) -> None:
        """Stop the workers (a large body after this starts them again)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    async def decode(self, body: bytes, *, gzipped: bool) -> DecodedBatch:
        """The decoded batch; raises :class:`~protocol.BatchError` as
        :func:`~protocol.inflate` and :func:`~protocol.decode_batch` do, or
        :class:`~collector.errors.OverloadedError` when too many wait for a worker."""
        try:
            small = inflate(body, gzipped=gzipped, limit=INLINE_MAX_BYTES)
        except TooLargeError:
            # Large (or over a limit: the worker's own inflate answers that the same).
            return await self.decode_in_worker(body, gzipped)
        return decode_batch(small)

    async def decode_in_worker(self, body: bytes, gzipped: bool) -> DecodedBatch:
        """Inflate and decode ``body`` in a worker process, whatever its size."""
        if self._pool is None:
            # Made at the first large body: most collectors (and tests) never see one,
            # and a worker costs a process.
            self._pool = self._new_pool()
        if self._pending >= self._max_pending:
            raise OverloadedError(RETRY_AFTER_S)
        pool = self._pool
        self._pending += 1
        try:
            outcome = await asyncio.get_running_loop().run_in_executor(
                pool, _decode_in_worker, body, gzipped)
        except BrokenProcessPool:
            # A worker died (killed, out of memory): the next upload gets a fresh pool,
            # made once however many uploads the broken one held.
            if self._pool is pool:
                log.error("body decoder worker died; starting a new one")
                self._pool = self._new_pool()
                pool.shutdown(wait=False, cancel_futures=True)
            raise OverloadedError(RETRY_AFTER_S) from None
        finally:
            self._pending -= 1
        self.offloaded += 1
        if isinstance(outcome, tuple):
            raise BatchError(*outcome)
        return outcome
