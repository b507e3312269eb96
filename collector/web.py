"""HTTP helpers shared by the API (``app.py``) and the dashboard: the contract's error
answer, JSON answers, the admin check and client-abort detection."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from .appkeys import ADMIN_HASH, STORE
from .tokens import bearer, same_token, token_hash

__all__ = ["CLIENT_ABORT_STATUS", "ApiError", "client_gone", "json_response", "principal",
           "require_admin"]

#: The status logged and counted for a request whose client went away before its answer
#: (nginx's "client closed request"); nothing is sent, the connection being gone.
CLIENT_ABORT_STATUS = 499


class ApiError(Exception):
    """An error answer in the contract's form: ``{"error": code, "detail": message}``."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}

    def response(self) -> web.Response:
        """The answer to send."""
        return web.Response(
            body=orjson.dumps({"error": self.code, "detail": self.detail}), status=self.status,
            content_type="application/json", headers=self.headers,
        )


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON answer (orjson: fast, and non-ASCII kept as is)."""
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def principal(request: web.Request) -> tuple[str, str | None]:
    """Who sent ``request``: ("none"|"unknown"|"admin"|"box"|"revoked", box_id)."""
    token = bearer(request.headers.get("Authorization"))
    if token is None:
        return "none", None
    if same_token(token, request.app[ADMIN_HASH]):
        return "admin", None
    info = await request.app[STORE].lookup_token(token_hash(token))
    if info is None:
        return "unknown", None
    return ("revoked" if info.revoked else "box"), info.box_id


async def require_admin(request: web.Request) -> None:
    """401 without a (known) token, 403 with a box token."""
    kind, _ = await principal(request)
    if kind in ("none", "unknown"):
        raise ApiError(401, "unauthorized", "Authorization: a valid admin bearer token is required")
    if kind != "admin":
        raise ApiError(403, "forbidden", "Authorization: a box token cannot use this endpoint")


def client_gone(request: web.Request) -> bool:
    """Whether the request's connection is closed (or closing): its client went away."""
    transport = request.transport
    return transport is None or transport.is_closing()
