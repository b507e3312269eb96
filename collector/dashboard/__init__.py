"""The operators' dashboard and what surrounds it: metrics, OpenAPI, alerts, retention.

:func:`setup_dashboard` adds it all to the collector's application; ``create_app`` calls it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from importlib import resources

import aiohttp
import orjson
from aiohttp import web

from protocol.units import DAY_S, HOUR_S, SECOND_US

from ..appkeys import ADMIN_HASH, INGEST_LISTENERS, SETTINGS, STORE
from ..ratelimit import BoxRateLimiter
from ..storage import Storage
from ..web import ApiError
from . import views
from .auth import Signer, session_key
from .keys import ALERTER, HTTP, LOGIN_LIMITER, METRICS, SIGNER
from .metrics import Metrics, metrics_middleware
from .openapi import openapi_document
from .webhook import Alerter

__all__ = ["purge_older_than", "setup_dashboard"]

log = logging.getLogger("collector.dashboard")

#: How often the retention task runs.
PURGE_INTERVAL_S = HOUR_S
#: The alerts' HTTP client: a receiver gets this long per attempt, then it counts as failed.
WEBHOOK_TIMEOUT = aiohttp.ClientTimeout(total=10, connect=5, sock_read=10)

_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".md": "text/markdown",
                 ".woff2": "font/woff2"}


def _load_static() -> dict[str, tuple[bytes, str]]:
    """Every file under static/, read once: a fixed set of names, so no path from a
    request ever reaches the file system."""
    out: dict[str, tuple[bytes, str]] = {}
    for item in resources.files(__package__).joinpath("static").iterdir():
        suffix = "." + item.name.rsplit(".", 1)[-1]
        if item.is_file() and suffix in _STATIC_TYPES:
            out[item.name] = (item.read_bytes(), _STATIC_TYPES[suffix])
    return out


def setup_dashboard(app: web.Application) -> None:
    """Add the dashboard, ``/metrics``, ``/openapi.json``, alerts and retention to ``app``.

    Call after the store's cleanup context is registered: this one needs the store open.
    """
    app[METRICS] = Metrics()
    settings = app[SETTINGS]
    app[LOGIN_LIMITER] = BoxRateLimiter(settings.login_rate_per_min, settings.login_burst)
    # Outermost, so it times the whole request and sees the final status.
    app.middlewares.insert(0, metrics_middleware(lambda r: r.app[METRICS]))
    app.cleanup_ctx.append(_dashboard_ctx)
    static = _load_static()
    openapi = orjson.dumps(openapi_document())

    async def get_static(request: web.Request) -> web.Response:
        found = static.get(request.match_info["name"])
        if found is None:
            raise ApiError(404, "not_found", f"{request.path}: no such file")
        body, ctype = found
        return web.Response(body=body, content_type=ctype, headers={
            "X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=3600"})

    async def get_openapi(request: web.Request) -> web.Response:
        return web.Response(body=openapi, content_type="application/json")

    async def get_metrics(request: web.Request) -> web.Response:
        store = request.app[STORE]
        depth = getattr(store, "queue_depth", None)
        stored: dict[str, int] | None
        try:
            stored = await store.counts()
        except Exception:  # the figures still answer while the store is down
            stored = None
        text = request.app[METRICS].render(depth if isinstance(depth, int) else None, stored)
        return web.Response(text=text, content_type="text/plain",
                            headers={"X-Content-Type-Options": "nosniff"},
                            charset="utf-8")

    async def to_dashboard(request: web.Request) -> web.Response:
        return web.Response(status=303, headers={"Location": "/dashboard"})

    r = app.router
    r.add_get("/metrics", get_metrics)
    r.add_get("/openapi.json", get_openapi)
    r.add_get("/dashboard", views.get_dashboard)
    r.add_get("/dashboard/", to_dashboard)
    r.add_get("/", to_dashboard)  # a new user types the bare address
    r.add_get("/dashboard/login", views.get_login)
    r.add_post("/dashboard/login", views.post_login)
    r.add_post("/dashboard/logout", views.post_logout)
    r.add_get("/dashboard/api/data", views.get_data)
    r.add_get("/dashboard/detractors.csv", views.get_detractors_csv)
    r.add_get("/dashboard/api/impact", views.get_impact)
    r.add_get("/dashboard/part/costs", views.get_costs_part)
    r.add_get("/dashboard/api/at-risk", views.get_at_risk)
    r.add_get("/dashboard/at-risk.csv", views.get_at_risk_csv)
    r.add_get("/dashboard/static/{name}", get_static)


async def _dashboard_ctx(app: web.Application) -> AsyncIterator[None]:
    """Every resource of the dashboard, opened and closed with the app: the signing key,
    the alerts' HTTP client and workers, and the retention task."""
    settings = app[SETTINGS]
    store = app[STORE]
    app[SIGNER] = Signer(await session_key(store), app[ADMIN_HASH],
                         settings.dashboard_session_hours * HOUR_S)
    http = aiohttp.ClientSession(timeout=WEBHOOK_TIMEOUT)
    app[HTTP] = http
    alerter: Alerter | None = None
    purge_task: asyncio.Task[None] | None = None
    try:
        if settings.webhook_url and settings.webhook_secret:
            alerter = Alerter(http=http, url=settings.webhook_url, secret=settings.webhook_secret,
                              mode=settings.webhook_mode, threshold=settings.webhook_threshold,
                              store=store, metrics=app[METRICS],
                              per_box_pending=settings.webhook_box_pending)
            app[ALERTER] = alerter
            alerter.start()
            app[INGEST_LISTENERS].append(alerter.on_ingest)
        if settings.retention_days > 0:
            purge_task = asyncio.create_task(
                _purge_loop(store, settings.retention_days, app[METRICS]), name="retention")
        yield
    finally:
        if purge_task is not None:
            purge_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purge_task
        if alerter is not None:
            await alerter.stop()
        await http.close()


async def purge_older_than(store: Storage, days: int, now: float | None = None) -> int:
    """Delete the records older than ``days`` days; answer how many."""
    cutoff_us = int(((time.time() if now is None else now) - days * DAY_S) * SECOND_US)
    return await store.purge_before(cutoff_us)


async def _purge_loop(store: Storage, days: int, metrics: Metrics) -> None:
    while True:
        try:
            n = await purge_older_than(store, days)
            metrics.purged += n
            if n:
                log.info("retention purge", extra={"deleted": n, "older_than_days": days})
        except Exception:
            log.exception("retention purge failed; will retry")
        await asyncio.sleep(PURGE_INTERVAL_S)
