"""Prometheus metrics in the text exposition format (version 0.0.4).

Written out here rather than with ``prometheus_client``: a handful of counters and one
histogram family, kept per application (on the app, not in a process-global registry,
so two apps in one test process do not share figures).
"""

from __future__ import annotations

import bisect
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable

import orjson
from aiohttp import web

from ..web import CLIENT_ABORT_STATUS, client_gone

#: Request latency buckets, seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_INDEX = re.compile(r"^records\[\d+\]\.?")
_ARRAY_INDEX = re.compile(r"\[\d+\]")


def rejection_reason(error: str) -> str:
    """The field path of a rejection without its record index: ``records[3].qos.x: ...``
    becomes ``qos.x``, so the label set stays small whatever the boxes send."""
    path = error.split(":", 1)[0]
    path = _ARRAY_INDEX.sub("", _INDEX.sub("", path))
    return path or "record"


def status_label(status: int) -> str:
    """The ``status`` label: the HTTP status, or ``client_abort`` where the client went
    away before its answer (the collector logs those as 499), so that an alert on 5xx
    rates never fires on ordinary home-network aborts."""
    return "client_abort" if status == CLIENT_ABORT_STATUS else str(status)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


def _num(x: float) -> str:
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


class Metrics:
    """The collector's counters and histograms."""

    def __init__(self) -> None:
        self.accepted = 0
        self.duplicates = 0
        self.rejected: Counter[str] = Counter()
        self.batches: Counter[str] = Counter()
        self.requests: Counter[tuple[str, str, str]] = Counter()
        # per (method, route): bucket counts, sum, count
        self._lat_buckets: dict[tuple[str, str], list[int]] = {}
        self._lat_sum: dict[tuple[str, str], float] = {}
        self.alerts: Counter[str] = Counter()
        self.purged = 0

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request and its latency."""
        self.requests[(method, route, status_label(status))] += 1
        key = (method, route)
        counts = self._lat_buckets.setdefault(key, [0] * (len(LATENCY_BUCKETS) + 1))
        counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._lat_sum[key] = self._lat_sum.get(key, 0.0) + seconds

    def observe_batch(self, status: int, body: bytes) -> None:
        """Count an upload's outcome from the answer the collector gave."""
        self.batches[status_label(status)] += 1
        if status != 200:
            return
        try:
            doc = orjson.loads(body)
            accepted, duplicates = int(doc["accepted"]), int(doc["duplicates"])
            reasons = [rejection_reason(str(r["error"])) for r in doc["rejected"]]
        except (orjson.JSONDecodeError, LookupError, TypeError, ValueError):
            return  # not the contract's answer: nothing to count (and never fail the request)
        self.accepted += accepted
        self.duplicates += duplicates
        for reason in reasons:
            self.rejected[reason] += 1

    def render(self, queue_depth: int | None, stored: dict[str, int] | None) -> str:
        """The exposition text."""
        out: list[str] = []

        def family(name: str, kind: str, help: str) -> None:
            out.append(f"# HELP {name} {help}")
            out.append(f"# TYPE {name} {kind}")

        family("nps_records_accepted_total", "counter", "Records stored as new.")
        out.append(f"nps_records_accepted_total {self.accepted}")
        family("nps_records_duplicate_total", "counter", "Records whose id was already held.")
        out.append(f"nps_records_duplicate_total {self.duplicates}")
        family("nps_records_rejected_total", "counter", "Invalid records, by the field at fault.")
        for reason, n in sorted(self.rejected.items()):
            out.append(f"nps_records_rejected_total{_labels([('reason', reason)])} {n}")
        family("nps_batches_total", "counter", "Upload requests, by HTTP status.")
        for status, n in sorted(self.batches.items()):
            out.append(f"nps_batches_total{_labels([('status', status)])} {n}")
        family("nps_http_requests_total", "counter", "HTTP requests by method, route and status.")
        for (method, route, status), n in sorted(self.requests.items()):
            labels = _labels([("method", method), ("route", route), ("status", status)])
            out.append(f"nps_http_requests_total{labels} {n}")
        family("nps_http_request_duration_seconds", "histogram", "Request latency by route.")
        for (method, route), counts in sorted(self._lat_buckets.items()):
            cumulative = 0
            base = [("method", method), ("route", route)]
            for le, c in zip((*map(_num, LATENCY_BUCKETS), "+Inf"), counts, strict=True):
                cumulative += c
                out.append(f"nps_http_request_duration_seconds_bucket{_labels([*base, ('le', le)])} {cumulative}")
            out.append(f"nps_http_request_duration_seconds_sum{_labels(base)} {self._lat_sum[(method, route)]!r}")
            out.append(f"nps_http_request_duration_seconds_count{_labels(base)} {cumulative}")
        family("nps_webhook_deliveries_total", "counter", "Detractor alert deliveries by result.")
        for result, n in sorted(self.alerts.items()):
            out.append(f"nps_webhook_deliveries_total{_labels([('result', result)])} {n}")
        family("nps_records_purged_total", "counter", "Records deleted by the retention policy.")
        out.append(f"nps_records_purged_total {self.purged}")
        if queue_depth is not None:
            family("nps_write_queue_depth", "gauge", "Batches waiting for the store's writer.")
            out.append(f"nps_write_queue_depth {queue_depth}")
        if stored is not None:
            family("nps_stored_records", "gauge", "Records held in the store, by kind.")
            for kind, n in sorted(stored.items()):
                out.append(f"nps_stored_records{_labels([('kind', kind)])} {n}")
        return "\n".join(out) + "\n"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def route_label(request: web.Request) -> str:
    """The route's template (``/v1/report``), never the raw path: unknown paths share one
    label so a scanner cannot blow up the series count."""
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None:
        return "unmatched"
    return str(resource.canonical)


def metrics_middleware(metrics_of: Callable[[web.Request], Metrics]) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Outermost middleware: times every request and reads upload answers."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        try:
            resp = await handler(request)
        except web.HTTPException as exc:
            _record(request, exc.status, None, start)
            raise
        except BaseException:
            # Cancelled because the client went away (a server with handler
            # cancellation): an abort, not a server error.
            _record(request, CLIENT_ABORT_STATUS if client_gone(request) else 500, None, start)
            raise
        _record(request, resp.status, resp, start)
        return resp

    def _record(request: web.Request, status: int, resp: web.StreamResponse | None,
                start: float) -> None:
        m = metrics_of(request)
        m.observe(request.method, route_label(request), status, time.perf_counter() - start)
        if request.method == "POST" and request.path == "/v1/batches":
            body = resp.body if isinstance(resp, web.Response) else None
            m.observe_batch(status, body if isinstance(body, bytes) else b"")

    return middleware
