"""The dashboard's state on the application, under typed keys (never module globals)."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from ..ratelimit import BoxRateLimiter
from .auth import Signer
from .metrics import Metrics
from .webhook import Alerter

SIGNER = web.AppKey("dashboard_signer", Signer)
METRICS = web.AppKey("metrics", Metrics)
HTTP = web.AppKey("http_client", aiohttp.ClientSession)
ALERTER = web.AppKey("alerter", Alerter)
#: Login attempts per client address (a token bucket keyed by address).
LOGIN_LIMITER = web.AppKey("login_limiter", BoxRateLimiter)
