"""The collector's state on the aiohttp application and request, under typed keys.

Kept apart from ``app.py`` (as aiohttp-demos keep ``typedefs.py``) so that the dashboard,
which ``app.py`` sets up, can read them without importing the application module.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from .decoding import BodyDecoder
from .model import Row
from .ratelimit import BoxRateLimiter
from .settings import Settings
from .storage import Storage
from .tokens import TokenOwners

__all__ = [
    "ADMIN_HASH",
    "BODY_DECODER",
    "INGEST_LISTENERS",
    "LOG_BOX_ID",
    "LOG_COUNTS",
    "RATE_LIMITER",
    "SETTINGS",
    "STORE",
    "TOKEN_OWNERS",
    "IngestListener",
]

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Storage)
ADMIN_HASH = web.AppKey("admin_hash", bytes)
RATE_LIMITER = web.AppKey("rate_limiter", BoxRateLimiter)
TOKEN_OWNERS = web.AppKey("token_owners", TokenOwners)
BODY_DECODER = web.AppKey("body_decoder", BodyDecoder)
LOG_BOX_ID = web.RequestKey("log_box_id", str)
LOG_COUNTS = web.RequestKey("log_counts", dict[str, int])
#: Called with the stored rows and, per row, whether it was new, after each upload is
#: stored (the dashboard's detractor alerts listen here). Listeners must not block.
IngestListener = Callable[[list[Row], list[bool]], None]
INGEST_LISTENERS = web.AppKey("ingest_listeners", list[IngestListener])
