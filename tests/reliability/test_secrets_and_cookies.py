"""No secret in any log line, and the dashboard's cookie flags.

A scenario against a real ``nps-collector serve`` (log level DEBUG) and a real
``stb-widget run`` (log level debug): enrolment, uploads, an upload with an unknown
token, with a revoked token and with another box's, admin reads, dashboard logins with
the right and a wrong token, a webhook with a signing secret (to a receiver that fails,
so the retries log), and an agent whose token was revoked (its auth pause logs). Then
every line either process printed is searched for every token and secret, whole and by
its first 12 characters.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web

from collector.app import SERVER_KWARGS, create_app
from collector.settings import Settings
from tests.collector.conftest import batch, session_record, survey_record

from .conftest import ADMIN, ROOT, CollectorProcess, enrol, free_port, require
from .test_agent_kill9 import Agent

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"s3cret-webhook-key-0123456789ab").decode()


def _needles(secrets: list[str]) -> list[str]:
    out = []
    for s in secrets:
        out += [s, s[:12]]
        if s.startswith("whsec_"):
            out += [s[6:], s[6:18]]
    return out


@contextlib.asynccontextmanager
async def failing_receiver() -> AsyncIterator[str]:
    async def hook(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=500)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        await runner.cleanup()


async def _login(http: aiohttp.ClientSession, base: str, token: str,
                 headers: dict[str, str] | None = None) -> aiohttp.ClientResponse:
    async with http.get(base + "/dashboard/login", headers=headers) as r:
        page = await r.text()
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m is not None
    resp = await http.post(base + "/dashboard/login", data={"csrf": m.group(1), "token": token},
                           allow_redirects=False, headers=headers)
    await resp.read()
    return resp


@pytest.mark.timeout(300)
async def test_no_token_or_secret_reaches_any_log_line(tmp_path: Path) -> None:
    async with failing_receiver() as hook_url:
        collector = CollectorProcess(
            tmp_path / "c.db", tmp_path / "collector.log", None, "--log-level", "DEBUG",
            "--webhook-url", hook_url,
            env={"NPS_WEBHOOK_SECRET": WEBHOOK_SECRET})
        await collector.start()
        secrets = [ADMIN, WEBHOOK_SECRET]
        try:
            async with aiohttp.ClientSession() as http:
                base = collector.url
                t1, t2, t3 = [await enrol(http, base, b) for b in ("sec-1", "sec-2", "sec-3")]
                secrets += [t1, t2, t3]
                unknown = "u" * 43
                secrets.append(unknown)
                s = session_record(rebuffer_s=100.0, rebuffer_count=9)
                doc = orjson.dumps(batch("sec-1", [s, survey_record(session_id=s["id"], score=1)]))
                for token, expect in ((t1, 200), (unknown, 401), (t2, 403), (ADMIN, 403)):
                    async with http.post(base + "/v1/batches", data=doc, headers={
                            "Authorization": f"Bearer {token}",
                            "Content-Type": "application/json"}) as r:
                        assert r.status == expect
                subprocess.run([sys.executable, "-m", "collector.cli", "box-revoke", "sec-3",
                                "--db", f"sqlite:///{collector.db}"], cwd=ROOT, check=True,
                               capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
                async with http.post(base + "/v1/batches", data=doc, headers={
                        "Authorization": f"Bearer {t3}", "Content-Type": "application/json"}) as r:
                    assert r.status == 403
                for path in ("/v1/report", "/v1/export?kind=session", "/metrics"):
                    async with http.get(base + path, headers={"Authorization": f"Bearer {ADMIN}"}) as r:
                        assert r.status == 200
                        assert ADMIN.encode() not in await r.read()
                assert (await _login(http, base, t1)).status == 401
                ok = await _login(http, base, ADMIN)
                assert ok.status == 303
                cookie = ok.cookies["nps_dash"].value
                secrets.append(cookie)
                async with http.get(base + "/dashboard/api/data",
                                    headers={"Cookie": f"nps_dash={cookie}"}) as r:
                    assert r.status == 200

                # An agent whose token is revoked: it pauses and says so.
                agent = Agent(tmp_path, "sec-3", base + "/", t3)
                agent.cfg.write_text(agent.cfg.read_text().replace('log_level = "info"',
                                                                   'log_level = "debug"'))
                await agent.start()
                stop = asyncio.Event()
                viewer = asyncio.create_task(agent.view(stop))
                for _ in range(100):
                    if "UPLOADS PAUSED" in agent.log.read_text():
                        break
                    await asyncio.sleep(0.1)
                stop.set()
                await viewer
                assert agent.proc is not None
                agent.proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(agent.proc.wait(), 20)
                await asyncio.sleep(1.5)  # a webhook retry or two
        finally:
            await collector.stop()
    logs = {"collector": (tmp_path / "collector.log").read_text(),
            "agent": agent.log.read_text()}
    assert "UPLOADS PAUSED" in logs["agent"]
    assert "webhook" in logs["collector"]
    assert '"status":401' in logs["collector"] and '"status":403' in logs["collector"]
    leaks = [(name, n[:6] + "…") for name, text in logs.items()
             for n in _needles(secrets) if n in text]
    assert not leaks, leaks
    lines = sum(t.count("\n") for t in logs.values())
    print(f"\nsecrets: {len(secrets)} secrets x {lines} log lines (collector DEBUG, agent "
          "debug): none found")


async def test_a_generated_admin_token_is_never_printed(tmp_path: Path) -> None:
    """Without NPS_ADMIN_TOKEN the collector makes one and says where it is, not what."""
    env = {k: v for k, v in os.environ.items() if k != "NPS_ADMIN_TOKEN"}
    port = free_port()
    with open(tmp_path / "c.log", "wb") as log:
        p = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "collector.cli", "serve", "--db",
            f"sqlite:///{tmp_path / 'c.db'}", "--port", str(port), cwd=ROOT,
            env={**env, "PYTHONPATH": str(ROOT)}, stdout=log, stderr=log)
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                        if r.status == 200:
                            break
                await asyncio.sleep(0.05)
    finally:
        p.send_signal(signal.SIGTERM)
        await p.wait()
    token = subprocess.run([sys.executable, "-m", "collector.cli", "admin-token", "--db",
                            f"sqlite:///{tmp_path / 'c.db'}"], cwd=ROOT, capture_output=True,
                           text=True, check=True, env={**env, "PYTHONPATH": str(ROOT)}).stdout.strip()
    assert len(token) >= 20
    text = (tmp_path / "c.log").read_text()
    assert "admin-token" in text  # says how to get it
    assert token not in text and token[:12] not in text


# -- the dashboard's cookie -----------------------------------------------------------------

def _cookie_flags(resp: aiohttp.ClientResponse) -> str:
    headers = [v for k, v in resp.raw_headers if k.decode().lower() == "set-cookie"]
    assert len(headers) == 1, headers
    return headers[0].decode()


async def test_cookie_is_httponly_samesite_and_secure_behind_https_proxy(tmp_path: Path) -> None:
    app = create_app(Settings(db=f"sqlite:///{tmp_path / 'c.db'}", admin_token=ADMIN))
    from aiohttp.test_utils import TestServer

    server = TestServer(app, host="127.0.0.1")
    await server.start_server(**SERVER_KWARGS)
    try:
        base = str(server.make_url("")).rstrip("/")
        async with aiohttp.ClientSession() as http:
            plain = _cookie_flags(await _login(http, base, ADMIN))
        async with aiohttp.ClientSession() as http:
            proxied = _cookie_flags(await _login(
                http, base, ADMIN, headers={"X-Forwarded-Proto": "https",
                                            "Origin": f"https://{server.host}:{server.port}"}))
    finally:
        await server.close()
    for flags in (plain, proxied):
        low = flags.lower()
        assert "httponly" in low and "samesite=strict" in low and "path=/dashboard" in low
    assert "secure" in proxied.lower()
    assert "secure" not in plain.lower()  # a plain-HTTP browser would drop it otherwise


async def test_cookie_is_secure_over_real_tls(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    done = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                           str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
                          capture_output=True, check=False)
    require(done.returncode == 0, "openssl (to make a test certificate)")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    app = create_app(Settings(db=f"sqlite:///{tmp_path / 'c.db'}", admin_token=ADMIN))
    runner = web.AppRunner(app, **SERVER_KWARGS)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = runner.addresses[0][1]
    try:
        client_ctx = ssl.create_default_context(cafile=str(cert))
        client_ctx.check_hostname = False
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ctx)) as http:
            flags = _cookie_flags(await _login(http, f"https://127.0.0.1:{port}", ADMIN))
    finally:
        await runner.cleanup()
    low = flags.lower()
    assert "secure" in low and "httponly" in low and "samesite=strict" in low
