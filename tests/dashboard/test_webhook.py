"""Detractor alerts: Standard Webhooks signatures checked by a local receiver, retries
with backoff after failures, one alert per new detractor, threshold mode."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from collector.dashboard.keys import ALERTER
from collector.dashboard.webhook import sign
from collector.settings import Settings
from tests.collector.conftest import ADMIN, Api, batch, serve, session_record, survey_record

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def verify(secret: str, headers: Any, body: bytes, tolerance_s: int = 300) -> bool:
    """Verification as the Standard Webhooks spec describes it, written independently of
    the collector's code: HMAC-SHA256 over ``id.timestamp.body`` with the base64-decoded
    secret, compared against each ``v1,`` signature, and a fresh timestamp."""
    msg_id = headers["webhook-id"]
    ts = headers["webhook-timestamp"]
    if abs(time.time() - int(ts)) > tolerance_s:
        return False
    key = base64.b64decode(secret.split("_", 1)[1])
    expected = base64.b64encode(
        hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    for part in headers["webhook-signature"].split(" "):
        version, _, sig = part.partition(",")
        if version == "v1" and hmac.compare_digest(sig, expected):
            return True
    return False


@dataclass
class Receiver:
    url: str
    fail_first: int = 0
    attempts: list[dict[str, Any]] = field(default_factory=list)
    delivered: list[dict[str, Any]] = field(default_factory=list)
    got: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver(url="")

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        ok = verify(SECRET, request.headers, body)
        rec.attempts.append({"id": request.headers["webhook-id"], "ok": ok, "t": time.monotonic()})
        if not ok:
            return web.Response(status=401)
        if len(rec.attempts) <= rec.fail_first:
            return web.Response(status=503)
        rec.delivered.append({"id": request.headers["webhook-id"], **orjson.loads(body)})
        rec.got.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app)
    await server.start_server()
    rec.url = str(server.make_url("/hook"))
    try:
        yield rec
    finally:
        await server.close()


def make_settings(tmp_path: Path, url: str, **kw: Any) -> Settings:
    return Settings(db=f"sqlite:///{tmp_path / 'c.db'}", admin_token=ADMIN, webhook_url=url,
                    webhook_secret=SECRET, **kw)


def test_signature_matches_the_spec_example() -> None:
    # The example of the Standard Webhooks specification (and its reference libraries).
    key = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    body = b'{"test": 2432232314}'
    assert sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


async def test_each_new_detractor_is_signed_and_retried(
        tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    receiver.fail_first = 2  # two 503s, then success: the alert must still land
    caplog.set_level(logging.DEBUG)
    async with serve(make_settings(tmp_path, receiver.url)) as client:
        alerter = client.server.app[ALERTER]
        alerter.base_delay_s = 0.05
        api = Api(client)
        token = await api.enrol("stb-1")
        s = session_record()
        detractor = survey_record(session_id=s["id"], score=3, reason="buffering")
        promoter = survey_record(score=10)
        dismissed = survey_record(outcome="dismissed")
        doc = batch("stb-1", [s, detractor, promoter, dismissed], box={"region": "NL-NH"})
        status, answer = await api.upload(token, doc)
        assert status == 200 and answer["accepted"] == 4
        await asyncio.wait_for(receiver.got.wait(), 10)
        # The same batch again: duplicates alert nobody.
        status, answer = await api.upload(token, doc)
        assert answer["duplicates"] == 4
        await asyncio.sleep(0.3)
        resp = await client.get("/metrics")
        metrics = await resp.text()
    assert len(receiver.delivered) == 1
    msg = receiver.delivered[0]
    assert msg["type"] == "nps.detractor"
    assert msg["data"]["survey_id"] == detractor["id"]
    assert msg["data"]["score"] == 3 and msg["data"]["reason"] == "buffering"
    assert msg["data"]["box_id"] == "stb-1" and msg["data"]["region"] == "NL-NH"
    assert msg["data"]["session"]["rebuffer_ratio"] == 0.0
    assert msg["data"]["session"]["channel"] == s["channel"]
    assert [a["ok"] for a in receiver.attempts] == [True, True, True]
    # Same webhook-id on every attempt (receivers deduplicate on it), growing gaps.
    assert len({a["id"] for a in receiver.attempts}) == 1
    gaps = [b["t"] - a["t"] for a, b in zip(receiver.attempts, receiver.attempts[1:], strict=False)]
    assert gaps[1] > gaps[0] * 1.2 or gaps[1] >= 0.05
    assert 'nps_webhook_deliveries_total{result="delivered"} 1' in metrics
    assert 'nps_webhook_deliveries_total{result="retried"} 2' in metrics
    # The secret is never logged.
    assert SECRET not in caplog.text
    assert SECRET.removeprefix("whsec_") not in caplog.text
    assert SECRET not in repr(make_settings(tmp_path, receiver.url))


async def test_threshold_mode_alerts_once_per_hour(tmp_path: Path, receiver: Receiver) -> None:
    settings = make_settings(tmp_path, receiver.url, webhook_mode="threshold", webhook_threshold=3)
    async with serve(settings) as client:
        api = Api(client)
        token = await api.enrol("stb-2")
        from datetime import UTC, datetime, timedelta

        now = datetime.now(UTC).replace(minute=30)
        if now > datetime.now(UTC):
            now -= timedelta(hours=1)
        for i in range(5):
            v = survey_record(score=2, shown=now + timedelta(minutes=i))
            status, _ = await api.upload(token, batch("stb-2", [v]))
            assert status == 200
        await asyncio.wait_for(receiver.got.wait(), 10)
        await asyncio.sleep(0.3)
    assert len(receiver.delivered) == 1
    msg = receiver.delivered[0]
    assert msg["type"] == "nps.detractor_threshold"
    assert msg["data"]["detractors"] >= 3 and msg["data"]["threshold"] == 3


def test_bad_webhook_settings_are_refused() -> None:
    from collector.errors import ConfigError

    with pytest.raises(ConfigError, match="webhook_secret"):
        Settings(webhook_url="http://x/", webhook_secret=None).validate()
    with pytest.raises(ConfigError, match="whsec_") as info:
        Settings(webhook_url="http://x/", webhook_secret="plain-secret").validate()
    assert "plain-secret" not in str(info.value)
    with pytest.raises(ConfigError, match="webhook_mode"):
        Settings(webhook_mode="sometimes").validate()


async def test_unreachable_receiver_is_retried_then_given_up(tmp_path: Path) -> None:
    from tests.dashboard.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: connection refused
    async with serve(make_settings(tmp_path, url)) as client:
        alerter = client.server.app[ALERTER]
        alerter.base_delay_s = 0.01
        alerter.max_attempts = 3
        api = Api(client)
        token = await api.enrol("stb-3")
        status, _ = await api.upload(token, batch("stb-3", [survey_record(score=0)]))
        assert status == 200
        await asyncio.wait_for(alerter.drain(), 10)
        text = await (await client.get("/metrics")).text()
        # Uploads are never held up by a dead receiver.
        status, _ = await api.upload(token, batch("stb-3", [survey_record(score=9)]))
        assert status == 200
    assert 'nps_webhook_deliveries_total{result="retried"} 2' in text
    assert 'nps_webhook_deliveries_total{result="failed"} 1' in text


@pytest.mark.parametrize("status", [301, 307])
async def test_a_redirect_is_a_failed_delivery_not_followed(tmp_path: Path, status: int) -> None:
    """A receiver answering 301 or 307: the alert is neither re-sent as a GET that counts
    as delivered (301) nor re-posted to the host ``Location`` names (307); every attempt
    counts as failed and is retried per the policy."""
    hits: dict[str, list[str]] = {"hook": [], "elsewhere": []}

    async def elsewhere(request: web.Request) -> web.Response:
        hits["elsewhere"].append(request.method)
        return web.Response(status=200)

    other = web.Application()
    other.router.add_route("*", "/steal", elsewhere)
    other_server = TestServer(other)
    await other_server.start_server()

    async def hook(request: web.Request) -> web.Response:
        hits["hook"].append(request.method)
        # A redirect to another host (307 keeps the method and body; 301 turns a POST into
        # a GET in aiohttp, as in browsers): both would answer 200 if followed.
        return web.Response(status=status,
                            headers={"Location": str(other_server.make_url("/steal"))})

    app = web.Application()
    app.router.add_route("*", "/hook", hook)
    server = TestServer(app)
    await server.start_server()
    try:
        async with serve(make_settings(tmp_path, str(server.make_url("/hook")))) as client:
            alerter = client.server.app[ALERTER]
            alerter.base_delay_s = 0.01
            alerter.max_attempts = 3
            api = Api(client)
            token = await api.enrol("stb-r")
            status_code, _ = await api.upload(token, batch("stb-r", [survey_record(score=1)]))
            assert status_code == 200
            await asyncio.wait_for(alerter.drain(), 10)
            text = await (await client.get("/metrics")).text()
    finally:
        await server.close()
        await other_server.close()
    assert hits["hook"] == ["POST"] * 3
    assert hits["elsewhere"] == []
    assert 'nps_webhook_deliveries_total{result="delivered"}' not in text
    assert 'nps_webhook_deliveries_total{result="retried"} 2' in text
    assert 'nps_webhook_deliveries_total{result="failed"} 1' in text
