"""The dashboard's state on the application, under typed keys (never module globals)."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from .auth import Signer
from .metrics import Metrics
from .webhook import Alerter

SIGNER = web.AppKey("dashboard_signer", Signer)
METRICS = web.AppKey("metrics", Metrics)
HTTP = web.AppKey("http_client", aiohttp.ClientSession)
ALERTER = web.AppKey("alerter", Alerter)
