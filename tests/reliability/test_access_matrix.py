"""The access matrix: every route of the collector against every kind of caller.

Callers: no token, a malformed header, an unknown token, box A's token, box B's token
(another box, used on box A's upload), box C's revoked token, the admin token, and for
the dashboard a logged-in session cookie and a forged one. Expected answers follow the
contract (§3: 401 missing/unknown, 403 revoked, admin on upload, box on admin routes,
another box's token) and, for routes the contract does not name, the design: the
dashboard's pages open with its signed cookie only (a bearer token of any kind is not a
session), its data API and CSV with the cookie or the admin bearer token, and /healthz,
/readyz, /metrics, /openapi.json and the dashboard's static files are public and carry
no secret.

The test also walks the router, so a route added later without a row here fails it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from collector.appkeys import STORE
from collector.settings import Settings
from tests.collector.conftest import batch, serve, session_record, survey_record

from .conftest import ADMIN

CALLERS = ("none", "malformed", "unknown", "box", "other_box", "revoked", "admin")

# (method, path, body kind) -> expected status per caller.
ADMIN_ONLY = {"none": 401, "malformed": 401, "unknown": 401, "box": 403, "other_box": 403,
              "revoked": 403, "admin": 200}
PUBLIC = dict.fromkeys(CALLERS, 200)
COOKIE_ONLY_303 = dict.fromkeys(CALLERS, 303)

MATRIX: dict[tuple[str, str], dict[str, int]] = {
    ("POST", "/v1/boxes"): {**ADMIN_ONLY, "admin": 201},
    ("POST", "/v1/batches"): {"none": 401, "malformed": 401, "unknown": 401, "box": 200,
                              "other_box": 403, "revoked": 403, "admin": 403},
    ("GET", "/v1/report"): ADMIN_ONLY,
    ("GET", "/v1/export"): ADMIN_ONLY,
    ("GET", "/v1/impact"): ADMIN_ONLY,
    ("GET", "/v1/at-risk"): ADMIN_ONLY,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/dashboard"): COOKIE_ONLY_303,  # to the login page
    ("GET", "/dashboard/"): COOKIE_ONLY_303,
    ("GET", "/dashboard/login"): PUBLIC,
    ("POST", "/dashboard/login"): dict.fromkeys(CALLERS, 403),  # no form token: refused
    ("POST", "/dashboard/logout"): COOKIE_ONLY_303,  # no session: nothing to end
    # The data API and the CSV also take the admin bearer token (for scripts).
    ("GET", "/dashboard/api/data"): ADMIN_ONLY,
    ("GET", "/dashboard/detractors.csv"): ADMIN_ONLY,
    ("GET", "/dashboard/api/impact"): ADMIN_ONLY,
    ("GET", "/dashboard/api/at-risk"): ADMIN_ONLY,
    ("GET", "/dashboard/part/costs"): ADMIN_ONLY,
    ("GET", "/dashboard/at-risk.csv"): ADMIN_ONLY,
    ("GET", "/dashboard/static/{name}"): PUBLIC,
    ("GET", "/"): COOKIE_ONLY_303,  # a new user types the bare address
}

#: With a valid session cookie (and no bearer token).
WITH_SESSION = {
    ("GET", "/dashboard"): 200,
    ("GET", "/dashboard/api/data"): 200,
    ("GET", "/dashboard/detractors.csv"): 200,
    ("GET", "/dashboard/api/impact"): 200,
    ("GET", "/dashboard/api/at-risk"): 200,
    ("GET", "/dashboard/part/costs"): 200,
    ("GET", "/dashboard/at-risk.csv"): 200,
}


class World:
    """A collector with boxes A, B and C (C revoked), and a header per caller."""

    def __init__(self, client: TestClient[Any, Any], tokens: dict[str, str]) -> None:
        self.client = client
        self.tokens = tokens

    def headers(self, caller: str) -> dict[str, str]:
        if caller == "none":
            return {}
        if caller == "malformed":
            return {"Authorization": f"Basic {self.tokens['box']}"}
        return {"Authorization": f"Bearer {self.tokens[caller]}"}


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with serve(Settings(db=f"sqlite:///{tmp_path / 'c.db'}", admin_token=ADMIN)) as client:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        tokens = {"admin": ADMIN, "unknown": "x" * 43}
        for caller, box in (("box", "box-a"), ("other_box", "box-b"), ("revoked", "box-c")):
            resp = await client.post("/v1/boxes", json={"box_id": box}, headers=admin)
            assert resp.status == 201
            tokens[caller] = (await resp.json())["token"]
        assert await client.server.app[STORE].revoke_box("box-c") == 1
        yield World(client, tokens)


def _request_args(method: str, path: str) -> tuple[str, dict[str, Any]]:
    """The URL and body that would succeed for the right caller."""
    if path == "/v1/boxes":
        return path, {"data": orjson.dumps({"box_id": "box-new"}),
                      "headers": {"Content-Type": "application/json"}}
    if path == "/v1/batches":
        sess = session_record()
        doc = batch("box-a", [sess, survey_record(session_id=sess["id"])])
        return path, {"data": orjson.dumps(doc), "headers": {"Content-Type": "application/json"}}
    if path == "/v1/export":
        return path + "?kind=session", {}
    if path == "/dashboard/static/{name}":
        return "/dashboard/static/dashboard.css", {}
    if path == "/dashboard/login" and method == "POST":
        return path, {"data": {"token": ADMIN}}
    return path, {}


def test_every_route_is_in_the_matrix(tmp_path: Path) -> None:
    """A route added without deciding who may call it fails here."""
    from collector.app import create_app

    app = create_app(Settings(db=f"sqlite:///{tmp_path / 'r.db'}", admin_token=ADMIN))
    routes = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        routes.add((route.method, path))
    assert routes == set(MATRIX), f"routes without a matrix row: {routes - set(MATRIX)}; " \
                                  f"rows without a route: {set(MATRIX) - routes}"


@pytest.mark.parametrize("caller", CALLERS)
async def test_access_matrix(world: World, caller: str) -> None:
    failures = []
    for (method, path), expected in MATRIX.items():
        url, kw = _request_args(method, path)
        headers = {**kw.pop("headers", {}), **world.headers(caller)}
        resp = await world.client.request(method, url, headers=headers, allow_redirects=False,
                                          **kw)
        body = await resp.read()
        if resp.status != expected[caller]:
            failures.append(f"{method} {url} as {caller}: {resp.status}, expected "
                            f"{expected[caller]}: {body[:200]!r}")
        if resp.status in (401, 403) and path.startswith("/v1/"):
            doc = orjson.loads(body)
            assert set(doc) == {"error", "detail"}
            assert doc["error"] == ("unauthorized" if resp.status == 401 else "forbidden")
        for token in world.tokens.values():
            assert token.encode() not in body, f"{method} {url} answered a token"
    assert not failures, "\n".join(failures)


async def _login(world: World) -> str:
    page = await (await world.client.get("/dashboard/login")).text()
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m is not None
    resp = await world.client.post("/dashboard/login", data={"csrf": m.group(1), "token": ADMIN},
                                   allow_redirects=False)
    assert resp.status == 303
    cookie = resp.cookies["nps_dash"].value
    return cookie


async def test_dashboard_session_opens_the_dashboard_and_nothing_else(world: World) -> None:
    cookie = await _login(world)
    world.client.session.cookie_jar.clear()
    for (method, path), status in WITH_SESSION.items():
        resp = await world.client.request(method, path, headers={"Cookie": f"nps_dash={cookie}"},
                                          allow_redirects=False)
        assert resp.status == status, (path, await resp.text())
    # The cookie is not a bearer token for the API, and does not open it.
    for path in ("/v1/report", "/v1/export?kind=session", "/v1/at-risk"):
        resp = await world.client.get(path, headers={"Cookie": f"nps_dash={cookie}"})
        assert resp.status == 401
    resp = await world.client.post("/v1/batches", headers={"Cookie": f"nps_dash={cookie}"},
                                   data=b"{}")
    assert resp.status == 401
    # A forged cookie (payload changed, signature kept) is no session.
    payload, _, mac = cookie.partition(".")
    forged = ("A" if payload[0] != "A" else "B") + payload[1:] + "." + mac
    for path in ("/dashboard/api/data", "/dashboard/detractors.csv"):
        resp = await world.client.get(path, headers={"Cookie": f"nps_dash={forged}"})
        assert resp.status == 401


@pytest.mark.parametrize("caller", ["box", "other_box", "revoked", "unknown"])
async def test_only_the_admin_token_logs_in(world: World, caller: str) -> None:
    page = await (await world.client.get("/dashboard/login")).text()
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m is not None
    resp = await world.client.post("/dashboard/login",
                                   data={"csrf": m.group(1), "token": world.tokens[caller]},
                                   allow_redirects=False)
    assert resp.status == 401
    assert "nps_dash" not in resp.cookies


async def test_revocation_is_immediate_and_new_tokens_work(world: World) -> None:
    """A token revoked while the box uploads stops at once; one issued later works."""
    store = world.client.server.app[STORE]
    admin = {"Authorization": f"Bearer {ADMIN}"}
    doc = orjson.dumps(batch("box-a", [session_record()]))
    h = {"Authorization": f"Bearer {world.tokens['box']}", "Content-Type": "application/json"}
    assert (await world.client.post("/v1/batches", data=doc, headers=h)).status == 200
    await store.revoke_box("box-a")
    assert (await world.client.post("/v1/batches", data=doc, headers=h)).status == 403
    resp = await world.client.post("/v1/boxes", json={"box_id": "box-a"}, headers=admin)
    fresh = (await resp.json())["token"]
    h2 = {**h, "Authorization": f"Bearer {fresh}"}
    assert (await world.client.post("/v1/batches", data=doc, headers=h2)).status == 200
    assert (await world.client.post("/v1/batches", data=doc, headers=h)).status == 403


