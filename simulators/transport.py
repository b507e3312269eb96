"""The fleet's one HTTP client, with the simulated network's faults and a request meter.

Every box's uploader gets a :class:`BoxLink`: it implements the agent's
:class:`stb_widget.http_client.Poster` (the box itself uses its own small HTTP client)
and forwards to the process's single real aiohttp session through :class:`SessionPoster`. On the way it can fail the request as a dead line would (an outage window), lose
it before it leaves, or lose the *answer* after the collector stored the batch (so the box
sends it again and the collector must count it once). It also counts the requests that
reach the collector, per virtual second and per real second.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp

from stb_widget.errors import NetworkError, NetworkTimeout, ResponseTooLarge
from stb_widget.http_client import MAX_RESPONSE_BYTES, Poster, Response

from .clock import VirtualClock
from .http_pool import Gate

#: Per-request timeouts: the agent's defaults (collector.timeout_s, connect_timeout_s).
AGENT_TIMEOUT = aiohttp.ClientTimeout(total=30.0, connect=10.0)


class SessionPoster:
    """The agent's :class:`~stb_widget.http_client.Poster` over a shared
    ``aiohttp.ClientSession``: many boxes in one process share its connection pool.

    aiohttp's errors become the agent's (:class:`~stb_widget.errors.NetworkError`), so the
    uploader retries them as on a box; the answer is read whole, up to the box's bound.
    """

    __slots__ = ("session", "timeout")

    def __init__(self, session: aiohttp.ClientSession,
                 timeout: aiohttp.ClientTimeout = AGENT_TIMEOUT) -> None:
        self.session = session
        self.timeout = timeout

    async def post(self, url: str, *, body: bytes, headers: Mapping[str, str]) -> Response:
        """POST ``body`` to ``url``; the whole answer, whatever its status."""
        try:
            async with self.session.post(url, data=body, headers=dict(headers),
                                         timeout=self.timeout) as resp:
                data = bytearray()
                async for chunk in resp.content.iter_any():
                    data += chunk
                    if len(data) > MAX_RESPONSE_BYTES:
                        raise ResponseTooLarge(f"answer from {url} is over "
                                               f"{MAX_RESPONSE_BYTES} bytes")
                names = {k.lower() for k in resp.headers}
                return Response(resp.status,
                                {k: ", ".join(resp.headers.getall(k)) for k in names},
                                bytes(data))
        except TimeoutError as exc:  # before OSError, which it is
            raise NetworkTimeout(f"POST {url}: timed out") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise NetworkError(f"POST {url}: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Outage:
    """The collector is out of reach from ``start_s`` for ``duration_s`` (virtual seconds)."""

    start_s: float
    duration_s: float

    @property
    def end_s(self) -> float:
        """When the outage ends."""
        return self.start_s + self.duration_s

    def covers(self, t: float) -> bool:
        """Is the virtual time ``t`` within the outage?"""
        return self.start_s <= t < self.end_s


@dataclass(slots=True)
class Meter:
    """Requests that reached the collector, by virtual and by real second."""

    virtual: Counter[int] = field(default_factory=Counter)
    real: Counter[int] = field(default_factory=Counter)
    sent: int = 0
    failed_outage: int = 0
    lost_before: int = 0
    lost_answer: int = 0

    def peak_virtual(self, since_s: float = 0.0, window_s: int = 10) -> float:
        """Highest request rate (per virtual second) over ``window_s`` windows after ``since_s``."""
        lo = int(since_s)
        # Only windows holding a request can be the peak: add each second into its window
        # (a week is 60,480 windows, nearly all empty).
        windows: Counter[int] = Counter()
        for k, n in self.virtual.items():
            if k >= lo:
                windows[(k - lo) // window_s] += n
        return max(windows.values(), default=0) / window_s

    def mean_virtual(self, lo_s: float, hi_s: float) -> float:
        """Mean requests per virtual second over ``[lo_s, hi_s)``."""
        if hi_s <= lo_s:
            return 0.0
        n = sum(c for s, c in self.virtual.items() if lo_s <= s < hi_s)
        return n / (hi_s - lo_s)

    def peak_real(self) -> int:
        """Most requests the collector got in one real second."""
        return max(self.real.values(), default=0)


class SimNetwork:
    """The process's one ``aiohttp.ClientSession``, shared by every box, behind a semaphore."""

    def __init__(self, session: aiohttp.ClientSession, clock: VirtualClock, *,
                 concurrency: int = 32, outages: tuple[Outage, ...] = (),
                 lag_s: float = 300.0, poster: Poster | None = None) -> None:
        self.session = session
        # ``poster``: what carries the boxes' requests (the fleet passes its HttpPool);
        # by default the shared aiohttp session.
        self.poster: Poster = poster if poster is not None else SessionPoster(session)
        self.clock = clock
        self.outages = outages
        self.meter = Meter()
        # Waiting here, not in aiohttp's pool, keeps the uploader's own timeout for the
        # request itself: a queue behind 10,000 boxes must not look like a dead collector.
        self._gate = Gate(concurrency)  # asyncio.Semaphore scans its waiters: see Gate
        self.in_flight = 0
        self._quiet = asyncio.Event()
        self._quiet.set()
        self.lag_s = lag_s
        # Virtual send times of requests still out (a heap with lazy deletion).
        self._out: list[tuple[float, int]] = []
        self._done: set[int] = set()
        self._seq = 0
        self._answered = asyncio.Event()
        clock.set_guard(self)

    def allows(self, deadline: float) -> bool:
        """Time may reach ``deadline`` unless a request sent before ``deadline - lag`` is out."""
        out, done = self._out, self._done
        while out and out[0][1] in done:
            done.discard(heapq.heappop(out)[1])
        return not out or deadline <= out[0][0] + self.lag_s

    async def wait(self) -> None:
        """Wait for the next answer (or failure) of a request."""
        self._answered.clear()
        await self._answered.wait()

    def link(self, rng: random.Random, loss: float = 0.0) -> BoxLink:
        """A box's network: ``loss`` is the chance a request, or its answer, is lost."""
        return BoxLink(self, rng, loss)

    def in_outage(self) -> bool:
        """Is the collector out of reach at this virtual time?"""
        t = self.clock.now
        return any(o.covers(t) for o in self.outages)

    async def quiet(self) -> None:
        """Wait until no request is in flight."""
        await self._quiet.wait()

    def _begin(self) -> int:
        self.in_flight += 1
        self._quiet.clear()
        self._seq += 1
        heapq.heappush(self._out, (self.clock.now, self._seq))
        return self._seq

    def _end(self, seq: int) -> None:
        self.in_flight -= 1
        self._done.add(seq)
        self._answered.set()
        if not self.in_flight:
            self._quiet.set()


class BoxLink:
    """One box's side of the network; ``post`` is what the agent's uploader calls."""

    __slots__ = ("_loss", "_net", "_rng")

    def __init__(self, net: SimNetwork, rng: random.Random, loss: float) -> None:
        self._net = net
        self._rng = rng
        self._loss = loss

    async def post(self, url: str, *, body: bytes, headers: Mapping[str, str]) -> Response:
        """The agent's :class:`~stb_widget.http_client.Poster`, through the simulated line."""
        net = self._net
        meter = net.meter
        if net.in_outage():
            meter.failed_outage += 1
            raise NetworkError("simulated outage: collector unreachable")
        lose_request = self._loss > 0 and self._rng.random() < self._loss / 2
        lose_answer = self._loss > 0 and self._rng.random() < self._loss / 2
        if lose_request:
            meter.lost_before += 1
            raise NetworkError("simulated loss: request lost")
        # Counted when the box sends, in virtual time: the load a real fleet would offer.
        meter.sent += 1
        meter.virtual[int(net.clock.now)] += 1
        seq = net._begin()
        try:
            async with net._gate:
                meter.real[int(time.monotonic())] += 1
                resp = await net.poster.post(url, body=body, headers=headers)
        finally:
            net._end(seq)
        if lose_answer:
            # The collector has stored and answered; the box never hears it.
            meter.lost_answer += 1
            raise NetworkError("simulated loss: answer lost")
        return resp
