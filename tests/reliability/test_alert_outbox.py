"""Detractor alerts kept in the store's outbox (finding 11 of issue 16).

An alert is written in the transaction that stores the upload raising it, so it survives
a SIGKILL of the collector before delivery and is sent after the restart, while the
box's resent batch (all duplicates) raises nothing twice; one box cannot fill the outbox.
On SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from collector.dashboard.keys import ALERTER
from collector.settings import Settings
from tests.collector.conftest import ADMIN as API_ADMIN
from tests.collector.conftest import Api, batch, serve, session_record, survey_record
from tests.dashboard.test_webhook import verify

from .conftest import CollectorProcess, enrol

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class Receiver:
    """A webhook receiver that fails (503) until told to take alerts."""

    url: str = ""
    accept: bool = False
    attempts: int = 0
    delivered: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        assert verify(SECRET, request.headers, body)
        rec.attempts += 1
        if not rec.accept:
            return web.Response(status=503)
        rec.delivered.append({"webhook_id": request.headers["webhook-id"], **orjson.loads(body)})
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    rec.url = str(server.make_url("/hook"))
    try:
        yield rec
    finally:
        await server.close()


async def _until(cond: Any, timeout_s: float, what: str) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def _upload(http: aiohttp.ClientSession, url: str, token: str, doc: Any) -> dict[str, Any]:
    async with http.post(url + "/v1/batches", data=orjson.dumps(doc), headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"}) as resp:
        assert resp.status == 200, await resp.text()
        answer: dict[str, Any] = await resp.json()
        return answer


async def test_an_alert_survives_a_sigkill_before_delivery(
        tmp_path: Path, receiver: Receiver, db_url: str) -> None:
    env = {"NPS_WEBHOOK_URL": receiver.url, "NPS_WEBHOOK_SECRET": SECRET}
    proc = CollectorProcess(tmp_path / "c.db", tmp_path / "collector.log", None, env=env,
                            url=db_url)
    await proc.start()
    box = f"outbox-{secrets.token_hex(4)}"
    s = session_record()
    detractor = survey_record(session_id=s["id"], score=2, reason="buffering")
    doc = batch(box, [s, detractor, survey_record(score=10)])
    try:
        async with aiohttp.ClientSession() as http:
            token = await enrol(http, proc.url, box)
            assert (await _upload(http, proc.url, token, doc))["accepted"] == 3
            # The receiver refuses: the alert is raised, and not delivered.
            await _until(lambda: receiver.attempts >= 1, 20, "a first delivery attempt")
            await proc.kill9()
            receiver.accept = True
            await proc.start()
            # The box never heard its answer: it sends the batch again, all duplicates.
            assert (await _upload(http, proc.url, token, doc))["duplicates"] == 3
            await _until(lambda: receiver.delivered, 20, "the alert after the restart")
            await asyncio.sleep(1.0)  # nothing more comes: once delivered, it is gone
        assert await proc.stop() == 0
    finally:
        if proc.proc is not None and proc.proc.returncode is None:
            await proc.kill9()
    assert [d["data"]["survey_id"] for d in receiver.delivered] == [detractor["id"]]
    msg = receiver.delivered[0]
    assert msg["webhook_id"] == "msg_" + detractor["id"].replace("-", "")
    assert msg["type"] == "nps.detractor" and msg["data"]["box_id"] == box
    assert msg["data"]["score"] == 2 and msg["data"]["session"]["channel"] == s["channel"]


def _metric(text: str, result: str) -> int:
    m = re.search(rf'nps_webhook_deliveries_total{{result="{result}"}} (\d+)', text)
    return int(m.group(1)) if m else 0


async def test_one_box_cannot_fill_the_outbox(
        tmp_path: Path, receiver: Receiver, db_url: str) -> None:
    """At most --webhook-box-pending alerts of one box wait; the rest are dropped and
    counted; another box's alert still gets through."""
    settings = Settings(db=db_url, admin_token=API_ADMIN, webhook_url=receiver.url,
                        webhook_secret=SECRET, webhook_box_pending=5)
    flooder, other = f"flood-{secrets.token_hex(4)}", f"calm-{secrets.token_hex(4)}"
    async with serve(settings) as client:
        alerter = client.server.app[ALERTER]
        alerter.base_delay_s = alerter.max_delay_s = 0.05
        alerter.max_attempts = 2
        alerter.outbox_poll_s = 0.1
        api = Api(client)
        t_flood, t_other = await api.enrol(flooder), await api.enrol(other)
        flood = [survey_record(score=0) for _ in range(40)]
        for i in range(0, 40, 10):  # several uploads: the cap holds across them
            status, answer = await api.upload(t_flood, batch(flooder, flood[i:i + 10]))
            assert status == 200 and answer["accepted"] == 10
        calm = survey_record(score=3)
        status, _ = await api.upload(t_other, batch(other, [calm]))
        assert status == 200
        text = await (await client.get("/metrics")).text()
        assert _metric(text, "dropped") == 35
        receiver.accept = True
        await _until(lambda: len(receiver.delivered) >= 6, 20, "the 6 alerts kept")
        await asyncio.wait_for(alerter.drain(), 20)
        # Room again once delivered: the flooder's next alert is kept.
        status, _ = await api.upload(t_flood, batch(flooder, [survey_record(score=1)]))
        assert status == 200
        await _until(lambda: len(receiver.delivered) >= 7, 20, "the 7th alert")
        await asyncio.wait_for(alerter.drain(), 20)
        text = await (await client.get("/metrics")).text()
    got = [d["data"]["survey_id"] for d in receiver.delivered]
    assert sorted(got[:6]) == sorted([r["id"] for r in flood[:5]] + [calm["id"]])
    assert len(got) == 7 and len(set(got)) == 7
    assert _metric(text, "dropped") == 35
    assert _metric(text, "delivered") == 7


async def test_an_alert_that_cannot_be_made_never_fails_the_upload(
        tmp_path: Path, receiver: Receiver, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The alert rule runs in the write transaction: should it fail on a record (a time
    at the very end of year 9999, say), the uploads are stored all the same."""
    import collector.dashboard.webhook as webhook

    settings = Settings(db=db_url, admin_token=API_ADMIN, webhook_url=receiver.url,
                        webhook_secret=SECRET)
    box = f"rule-{secrets.token_hex(4)}"
    real = webhook.Alerter._detractor_message

    def broken(r: Any, session: Any) -> Any:
        if r.score == 0:
            raise ValueError("cannot format this time")
        return real(r, session)

    monkeypatch.setattr(webhook.Alerter, "_detractor_message", staticmethod(broken))
    async with serve(settings) as client:
        api = Api(client)
        token = await api.enrol(box)
        status, answer = await api.upload(token, batch(box, [survey_record(score=0)]))
        assert status == 200 and answer["accepted"] == 1
        receiver.accept = True
        status, answer = await api.upload(token, batch(box, [survey_record(score=1)]))
        assert status == 200 and answer["accepted"] == 1
        await _until(lambda: receiver.delivered, 20, "the second alert")
    assert [d["data"]["score"] for d in receiver.delivered] == [1]


async def test_a_threshold_alert_survives_a_sigkill_before_delivery(
        tmp_path: Path, receiver: Receiver, db_url: str) -> None:
    """A threshold alert is kept in the outbox with its hour's mark: raised once, and sent
    after a SIGKILL that came before its delivery."""
    env = {"NPS_WEBHOOK_URL": receiver.url, "NPS_WEBHOOK_SECRET": SECRET}
    proc = CollectorProcess(tmp_path / "c.db", tmp_path / "collector.log", None,
                            "--webhook-mode", "threshold", "--webhook-threshold", "2",
                            env=env, url=db_url)
    await proc.start()
    box = f"hour-{secrets.token_hex(4)}"
    # An hour of its own in the past, so that no other test's surveys count in it.
    from datetime import UTC, datetime, timedelta

    hour = datetime(2001, 1, 1, tzinfo=UTC) + timedelta(hours=secrets.randbelow(100_000))
    doc = batch(box, [survey_record(score=1, shown=hour + timedelta(minutes=m)) for m in (1, 2)])
    try:
        async with aiohttp.ClientSession() as http:
            token = await enrol(http, proc.url, box)
            assert (await _upload(http, proc.url, token, doc))["accepted"] == 2
            await _until(lambda: receiver.attempts >= 1, 20, "a first delivery attempt")
            await proc.kill9()
            receiver.accept = True
            await proc.start()
            await _until(lambda: receiver.delivered, 20, "the alert after the restart")
            # More detractors in the same hour raise nothing more.
            more = batch(box, [survey_record(score=0, shown=hour + timedelta(minutes=3))])
            assert (await _upload(http, proc.url, token, more))["accepted"] == 1
            await asyncio.sleep(1.0)
        assert await proc.stop() == 0
    finally:
        if proc.proc is not None and proc.proc.returncode is None:
            await proc.kill9()
    assert len(receiver.delivered) == 1
    msg = receiver.delivered[0]
    assert msg["type"] == "nps.detractor_threshold" and msg["data"]["detractors"] == 2
    assert msg["webhook_id"] == f"msg_threshold_{int(hour.timestamp())}"
