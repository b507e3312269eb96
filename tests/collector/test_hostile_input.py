"""Hostile input, round two (issue 16, findings 2 to 7 and 10): each test fails on the
code before its fix. Real collector on loopback HTTP (and real sockets where a client
misbehaves), on SQLite and PostgreSQL where the store matters."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import csv
import gzip
import io
import logging
import multiprocessing
import os
import re
import signal
import socket
import sqlite3
import struct
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from collector.app import SERVER_KWARGS, create_app
from collector.appkeys import BODY_DECODER, INGEST_LISTENERS
from collector.cli import main as cli_main
from collector.dashboard.analysis import iso_us
from collector.decoding import INLINE_MAX_BYTES, BodyDecoder
from collector.errors import OverloadedError
from collector.settings import Settings
from protocol import MalformedError, decode_batch, inflate
from protocol.limits import MAX_INFLATED_BYTES
from tests.collector.conftest import (
    ADMIN,
    Api,
    batch,
    new_id,
    session_record,
    survey_record,
)

# -- helpers ---------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def served(settings: Settings,
                 setup: Callable[[web.Application], None] | None = None,
                 ) -> AsyncIterator[tuple[TestClient[Any, Any], web.Application]]:
    app = create_app(settings)
    if setup is not None:
        setup(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(**SERVER_KWARGS)
    async with TestClient(server) as client:
        yield client, app


async def raw_request(host: str, port: int, data: bytes, *, read: bool = True) -> bytes:
    """Send bytes on a fresh connection; answer the head of the reply (or b"")."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(data)
    await writer.drain()
    head = b""
    if read:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    return head


async def metrics_text(client: TestClient[Any, Any]) -> str:
    resp = await client.get("/metrics")
    assert resp.status == 200
    return await resp.text()


def status_count(text: str, family: str, status: str) -> int:
    total = 0
    for line in text.splitlines():
        if line.startswith(family + "{") and f'status="{status}"' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


async def login_cookie(client: TestClient[Any, Any]) -> str:
    page = await (await client.get("/dashboard/login")).text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf is not None
    resp = await client.post("/dashboard/login", data={"csrf": csrf.group(1), "token": ADMIN},
                             allow_redirects=False)
    assert resp.status == 303
    cookie = resp.cookies["nps_dash"].value
    return cookie


# -- finding 10: box ids that end with a newline -------------------------------------------------

async def test_a_box_id_ending_with_a_newline_is_refused_everywhere(api: Api, tmp_path: Any) -> None:
    resp = await api.client.post("/v1/boxes", json={"box_id": "nlbox\n"}, headers=api.admin)
    assert resp.status == 400 and (await resp.json())["error"] == "malformed"
    token = await api.enrol("nlbox")
    status, body = await api.upload(token, batch("nlbox\n", [session_record()]))
    assert (status, body["error"]) == (400, "malformed") and body["detail"].startswith("box_id:")
    # The same full match for every pattern of the wire format: ids and times.
    good = orjson.loads(orjson.dumps(batch("nlbox", [session_record()])))
    rec = good["records"][0]
    for field, value in (("id", rec["id"] + "\n"), ("started_at", rec["started_at"] + "\n")):
        bad = {**good, "records": [{**rec, field: value}]}
        decoded = decode_batch(orjson.dumps(bad))
        assert not decoded.accepted and decoded.rejected[0].error.startswith(f"records[0].{field}:")
    with pytest.raises(MalformedError, match="sent_at"):
        decode_batch(orjson.dumps({**good, "sent_at": good["sent_at"] + "\n"}))
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    assert cli_main(["box-token", "nlbox\n", "--db", db]) == 2
    assert cli_main(["box-revoke", "nlbox\n", "--db", db]) == 2
    assert cli_main(["delete-box", "nlbox\n", "--db", db]) == 2


# -- finding 6: non-ASCII cookies and form tokens ---------------------------------------------------

async def test_non_ascii_cookies_and_form_tokens_are_refused_not_500(tmp_path: Any) -> None:
    settings = Settings(db=f"sqlite:///{tmp_path / 'c.db'}", admin_token=ADMIN)
    async with served(settings) as (client, _):
        host, port = client.server.host, client.server.port
        assert host is not None and port is not None
        for cookie in ("é.é".encode(), b"abc.\xff\xfe", "x.ä€".encode()):
            head = await raw_request(host, port, b"GET /dashboard/api/data HTTP/1.1\r\nHost: x\r\n"
                                     b"Cookie: nps_dash=" + cookie + b"\r\nConnection: close\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 401"), head
            head = await raw_request(host, port, b"GET /dashboard HTTP/1.1\r\nHost: x\r\n"
                                     b"Cookie: nps_dash=" + cookie + b"\r\nConnection: close\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 303"), head
        for form in ("csrf=1.%C3%A9.%C3%A9", "csrf=%D9%A1%D9%A2.n.%E2%82%AC", "csrf=1.2.%FF",
                     "csrf=1.2.\u00e9"):
            resp = await client.post("/dashboard/login", data=(form + "&token=" + ADMIN).encode(),
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert resp.status == 403, form
        cookie_value = await login_cookie(client)
        for token in ("é", "€" * 43):
            resp = await client.post("/dashboard/logout", data={"csrf": token},
                                     cookies={"nps_dash": cookie_value}, allow_redirects=False)
            assert resp.status == 403, token
        text = await metrics_text(client)
        assert status_count(text, "nps_http_requests_total", "500") == 0


# -- finding 5: times near year 9999 ----------------------------------------------------------------

def test_iso_us_is_exact_at_the_ends_of_time() -> None:
    # The reference: the RFC 3339 strings themselves, the latest and earliest writable.
    latest = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    us = (latest - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert iso_us(us) == "9999-12-31T23:59:59.999999Z"
    assert iso_us(us - 999999) == "9999-12-31T23:59:59Z"
    assert iso_us(-62_135_596_800_000_000) == "0001-01-01T00:00:00Z"
    assert iso_us(us + 3_600_000_000) == "9999-12-31T23:59:59.999999Z"  # an hour past: the end


async def test_times_near_year_9999_answer_200(tmp_path: Any) -> None:
    received: list[dict[str, Any]] = []

    async def receiver(request: web.Request) -> web.Response:
        received.append(orjson.loads(await request.read()))
        return web.Response(status=204)

    hook_app = web.Application()
    hook_app.router.add_post("/hook", receiver)
    hook = TestServer(hook_app, host="127.0.0.1")
    await hook.start_server()
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    settings = Settings(db=f"sqlite:///{tmp_path / 'c.db'}", admin_token=ADMIN,
                        webhook_url=str(hook.make_url("/hook")), webhook_secret=secret)
    try:
        async with served(settings) as (client, _):
            api = Api(client)
            resp = await client.get("/dashboard/api/data",
                                    params={"to": "9999-12-31T23:59:59.999999Z"}, headers=api.admin)
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["filters"]["to"] == "9999-12-31T23:59:59.999999Z"
            cookie = await login_cookie(client)
            resp = await client.get("/dashboard", params={"to_day": "9999-12-31"},
                                    cookies={"nps_dash": cookie})
            assert resp.status == 200, await resp.text()
            # A detractor at the very last instant: stored, answered 200, alert sent.
            token = await api.enrol("stb-end")
            end = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
            last = survey_record(shown=end - timedelta(seconds=5), score=2)
            last["answered_at"] = "9999-12-31T23:59:59.999999Z"
            last["shown_at"] = "9999-12-31T23:59:59.999999Z"
            status, body = await api.upload(token, batch("stb-end", [last]))
            assert (status, body["accepted"]) == (200, 1), body
            for _ in range(100):
                if received:
                    break
                await asyncio.sleep(0.05)
            assert received and received[0]["data"]["shown_at"] == "9999-12-31T23:59:59.999999Z"
            # A box clock at year 1 would push its times past 9999: those records are
            # rejected by name; the batch is answered and the rest stored.
            ok = session_record()
            far = session_record(started=datetime(9999, 1, 1, tzinfo=UTC))
            status, body = await api.upload(token, batch(
                "stb-end", [ok, far], sent_at=datetime(1, 1, 1, tzinfo=UTC)))
            assert status == 200 and body["accepted"] == 1
            assert [r["index"] for r in body["rejected"]] == [1]
            assert body["rejected"][0]["id"] == far["id"]
            assert body["rejected"][0]["error"].startswith("records[1].started_at:")
            assert "9999" in body["rejected"][0]["error"]
            # The stored record's export answers too.
            resp = await client.get("/v1/export", params={"kind": "session"}, headers=api.admin)
            assert resp.status == 200 and len((await resp.text()).splitlines()) == 1
    finally:
        await hook.close()


async def test_a_failing_listener_never_fails_a_committed_upload(
        tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    def broken(rows: Any, fresh: Any) -> None:
        raise RuntimeError("listener bug")

    settings = Settings(db=f"sqlite:///{tmp_path / 'c.db'}", admin_token=ADMIN)
    async with served(settings, lambda app: app[INGEST_LISTENERS].append(broken)) as (client, _):
        api = Api(client)
        token = await api.enrol("stb-l")
        rec = session_record()
        status, body = await api.upload(token, batch("stb-l", [rec]))
        assert (status, body["accepted"]) == (200, 1)
        status, body = await api.upload(token, batch("stb-l", [rec]))
        assert (status, body["duplicates"]) == (200, 1)  # it was stored the first time
    assert any("listener failed" in r.getMessage() for r in caplog.records)


# -- finding 2: decompression bombs ----------------------------------------------------------------

def empty_objects_bomb(box_id: str, size: int = 7_800_000) -> bytes:
    """The costliest JSON per byte to decode: an unknown key holding millions of {}."""
    doc = batch(box_id, [session_record()])
    head = orjson.dumps(doc)[:-1]
    n = (size - len(head)) // 3
    return gzip.compress(head + b',"pad":[' + b"{}," * (n - 1) + b"{}]}", 9)


async def test_large_bodies_are_decoded_off_the_event_loop(tmp_path: Any) -> None:
    """While bombs are decoded, the event loop keeps running: its longest stall stays well
    under what one bomb costs to decode on it (measured here, on this machine)."""
    bomb = empty_objects_bomb("stb-b")
    assert len(bomb) < 20_000
    start = time.perf_counter()
    decoded = decode_batch(inflate(bomb, gzipped=True))
    one_bomb_s = time.perf_counter() - start
    assert len(decoded.accepted) == 1
    settings = Settings(db=f"sqlite:///{tmp_path / 'c.db'}", admin_token=ADMIN,
                        box_rate_per_min=100_000, box_burst=1000)
    async with served(settings) as (client, app):
        api = Api(client)
        token = await api.enrol("stb-b")
        # Warm the worker up: its start is not what is measured.
        status, _ = await api.upload(token, None, raw=bomb, headers={"Content-Encoding": "gzip"})
        assert status == 200
        stalls: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                stalls.append(now - last)
                last = now

        tick = asyncio.create_task(ticker())
        answers = await asyncio.gather(*(
            api.upload(token, None, raw=bomb, headers={"Content-Encoding": "gzip"}) for _ in range(6)))
        done.set()
        await tick
        assert [s for s, _ in answers] == [200] * 6
        assert all(b["duplicates"] == 1 for _, b in answers)  # the same record each time
        assert app[BODY_DECODER].offloaded == 7
        assert max(stalls) < one_bomb_s / 2, (max(stalls), one_bomb_s)


async def test_the_worker_answers_as_the_event_loop_would(api: Api) -> None:
    token = await api.enrol("stb-w")
    # Over 8 MiB inflated: 413, from the worker.
    over = gzip.compress(b" " * (MAX_INFLATED_BYTES + 10), 9)
    status, body = await api.upload(token, None, raw=over, headers={"Content-Encoding": "gzip"})
    assert (status, body["error"]) == (413, "too_large")
    # Large and not JSON: 400 with the decoder's detail.
    status, body = await api.upload(token, None, raw=gzip.compress(b"[" * 200_000),
                                    headers={"Content-Encoding": "gzip"})
    assert (status, body["error"]) == (400, "malformed") and body["detail"].startswith("body:")
    # A large good batch, plain and gzipped: stored, answered as usual.
    records = [session_record(channel="c" * 1000) for _ in range(300)]
    doc = batch("stb-w", records)
    assert len(orjson.dumps(doc)) > INLINE_MAX_BYTES
    status, body = await api.upload(token, doc)
    assert (status, body["accepted"], body["rejected"]) == (200, 300, [])
    status, body = await api.upload(token, doc, gz=True)
    assert (status, body["duplicates"]) == (200, 300)
    report = await api.report()
    assert report["sessions"]["count"] == 300


async def test_too_many_bodies_waiting_for_the_worker_are_shed() -> None:
    decoder = BodyDecoder(workers=1, max_pending=1)
    bomb = empty_objects_bomb("stb-x")
    try:
        first = asyncio.ensure_future(decoder.decode(bomb, gzipped=True))
        await asyncio.sleep(0)  # the first one is now waiting for the worker
        with pytest.raises(OverloadedError):
            await decoder.decode(bomb, gzipped=True)
        assert len((await first).accepted) == 1
    finally:
        await decoder.close()


async def test_a_dead_worker_is_replaced() -> None:
    decoder = BodyDecoder()
    bomb = empty_objects_bomb("stb-y", 1_000_000)
    try:
        assert len((await decoder.decode(bomb, gzipped=True)).accepted) == 1
        workers = multiprocessing.active_children()
        assert workers
        for proc in workers:  # the decoder's own worker, started just above
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(5)
        with pytest.raises(OverloadedError):  # 503 with Retry-After for what it held
            await decoder.decode(bomb, gzipped=True)
        assert len((await decoder.decode(bomb, gzipped=True)).accepted) == 1
    finally:
        await decoder.close()


# -- finding 3: fields the contract does not name ---------------------------------------------------

async def stored_raw(db_url: str) -> list[bytes]:
    if db_url.startswith("sqlite:///"):
        conn = sqlite3.connect(db_url.removeprefix("sqlite:///"))
        try:
            return [bytes(r[0]) for t in ("sessions", "surveys")
                    for r in conn.execute(f"SELECT raw FROM {t}")]
        finally:
            conn.close()
    import asyncpg

    dsn, _, schema = db_url.partition("?search_path=")
    pg = await asyncpg.connect(dsn)
    try:
        await pg.execute(f"SET search_path TO {schema}")
        rows = [*await pg.fetch("SELECT raw FROM sessions"), *await pg.fetch("SELECT raw FROM surveys")]
        return [bytes(r["raw"]) if not isinstance(r["raw"], str) else r["raw"].encode() for r in rows]
    finally:
        await pg.close()


async def test_unnamed_fields_are_neither_stored_nor_exported(api: Api, db_url: str) -> None:
    token = await api.enrol("stb-p")
    sess = session_record()
    sess["qos"]["subscriber_msisdn"] = "+31612345678"
    sess["qos"]["blob"] = "x" * 7_000_000
    sess["qos"]["nested"] = {"deeper": {"subscriber_msisdn": "+31612345678"}}
    sess["subscriber_name"] = "A. Viewer"
    surv = survey_record(session_id=sess["id"])
    surv["subscriber_msisdn"] = "+31612345678"
    doc = batch("stb-p", [sess, surv], box={"model": "X", "imei": "356938035643809"})
    status, body = await api.upload(token, doc, gz=True)
    assert (status, body["accepted"]) == (200, 2), body
    raw = await stored_raw(db_url)
    assert len(raw) == 2
    for stored in raw:
        assert b"subscriber" not in stored and b"imei" not in stored and b"blob" not in stored
        assert len(stored) < 2000
    exported = ""
    for kind in ("session", "survey"):
        for fmt in ("jsonl", "csv"):
            resp = await api.client.get("/v1/export", params={"kind": kind, "format": fmt},
                                        headers=api.admin)
            assert resp.status == 200
            exported += await resp.text()
    assert "subscriber" not in exported and "356938035643809" not in exported
    assert len(exported) < 10_000
    line = orjson.loads((await (await api.client.get(
        "/v1/export", params={"kind": "session"}, headers=api.admin)).text()).splitlines()[0])
    assert set(line["qos"]) == {"startup_ms", "watch_s", "rebuffer_count", "rebuffer_s",
                                "avg_bitrate_kbps", "bitrate_switches", "failed"}


# -- finding 4: CSV formula injection --------------------------------------------------------------

HOSTILE = [
    "NPO;=cmd|' /C calc'!A0;", "=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)",
    "\t=1", "\r=1", "a,b", 'quote " in', "line\nbreak", "x\n=1+1", "y;\"=1", "z; -1",
    "NPO1",
]
FORMULA = ("=", "+", "-", "@")


def starts_formula(cell: str, blanks: str = "") -> bool:
    """Whether a spreadsheet would take ``cell`` for a formula (a number is a number);
    ``blanks``: leading characters to look through."""
    with contextlib.suppress(ValueError):
        float(cell)
        return False
    return cell.lstrip(blanks + '"')[:1] in FORMULA


def contract_cell(text: str) -> str:
    """Contract section 5, in its own words, for a text cell (the reference)."""
    quote = text[:1] in ("=", "+", "-", "@", "\t", "\r") or any(c in text for c in ",;\"\r\n")
    if text[:1] in FORMULA:
        text = "'" + text
    return '"' + text.replace('"', '""') + '"' if quote else text


def check_csv(text: str, columns: int) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert all(len(r) == columns for r in rows), [len(r) for r in rows]
    for row in rows:
        for cell in row:
            assert not starts_formula(cell), cell
    # A spreadsheet whose list separator is ";" (Excel in a Dutch locale): cells start
    # inside ours, so look through blanks too.
    for row in csv.reader(io.StringIO(text, newline=""), delimiter=";"):
        for cell in row:
            assert not starts_formula(cell, " \t\r\n"), repr(cell)
    return rows


async def test_csv_exports_quote_and_defuse_every_risky_cell(tmp_path: Any) -> None:
    settings = Settings(db=f"sqlite:///{tmp_path / 'c.db'}", admin_token=ADMIN)
    async with served(settings) as (client, _):
        api = Api(client)
        token = await api.enrol("stb-c")
        records: list[dict[str, Any]] = []
        for i, text in enumerate(HOSTILE):
            sess = session_record(channel=text, rebuffer_s=300.0, rebuffer_count=9, startup_ms=9000,
                                  started=datetime.now(UTC) - timedelta(hours=2, minutes=i))
            records += [sess, survey_record(session_id=sess["id"], score=1, locale=text,
                                            shown=datetime.now(UTC) - timedelta(hours=1, minutes=i))]
        # The box's clock an hour fast: clock_shift_s is a negative number.
        for text in HOSTILE:
            doc = batch("stb-c", records, box={"model": text, "firmware": text, "region": text},
                        sent_at=datetime.now(UTC) + timedelta(hours=1))
            status, body = await api.upload(token, doc)
            assert status == 200 and not body["rejected"], body
            records = [{**r, "id": new_id()} for r in records]
            for j in range(0, len(records), 2):
                records[j + 1]["session_id"] = records[j]["id"]
        # session: 6 record columns, the 9 qos fields of contract section 3, 6 collector columns.
        for kind, width in (("session", 21), ("survey", 15)):
            resp = await client.get("/v1/export", params={"kind": kind, "format": "csv"},
                                    headers=api.admin)
            text = await resp.text()
            rows = check_csv(text, width)
            header = rows[0]
            shift = [float(r[header.index("clock_shift_s")]) for r in rows[1:]]
            assert shift and all(-3700 < s < -3500 for s in shift)
            # Numbers as numbers: never quoted, never prefixed.
            assert not re.search(r"[\"']-3[56]\d\d", text)
            column = "channel" if kind == "session" else "locale"
            values = {r[header.index(column)] for r in rows[1:]}
            for hostile in HOSTILE:
                if not re.search(r"[;\r\n][\s\"]*[=+\-@]", hostile):
                    # The contract's rule exactly, checked on the text as written.
                    assert "," + contract_cell(hostile) + "," in text.replace("\r\n", "\n") \
                        or "," + contract_cell(hostile).replace("\r\n", "\n") + "," in text, hostile
                    expected = "'" + hostile if hostile[:1] in FORMULA else hostile
                    assert expected in values, hostile
        # The dashboard's detractors CSV: the same cells.
        resp = await client.get("/dashboard/detractors.csv", headers=api.admin)
        assert resp.status == 200
        text = await resp.text()
        rows = check_csv(text, 17)
        header = rows[0]
        assert {r[header.index("channel")] for r in rows[1:]} >= {"'=HYPERLINK(\"http://x\")", "NPO1"}
        assert "\"'=HYPERLINK(\"\"http://x\"\")\"" in text


# -- finding 7: clients that go away ---------------------------------------------------------------

async def test_clients_going_away_are_counted_as_aborts_not_500(
        tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    settings = Settings(db=f"sqlite:///{tmp_path / 'c.db'}", admin_token=ADMIN,
                        box_rate_per_min=100_000, box_burst=1000)
    async with served(settings) as (client, _):
        api = Api(client)
        host, port = client.server.host, client.server.port
        assert host is not None and port is not None
        token = await api.enrol("stb-a")
        # Half a body, then the connection closes.
        body = orjson.dumps(batch("stb-a", [session_record() for _ in range(50)]))
        for _ in range(3):
            await raw_request(host, port, (
                f"POST /v1/batches HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
                + body[: len(body) // 2], read=False)
        # An export read in part, then closed (reset): enough rows that it is still writing.
        records = [session_record(channel="c" * 400) for _ in range(500)]
        for _ in range(24):
            status, _ = await api.upload(token, batch("stb-a", [{**r, "id": new_id()} for r in records]))
            assert status == 200
        for _ in range(2):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect((host, port))
            sock.setblocking(False)
            reader, writer = await asyncio.open_connection(sock=sock)
            writer.write(f"GET /v1/export?kind=session HTTP/1.1\r\nHost: x\r\n"
                         f"Authorization: Bearer {ADMIN}\r\n\r\n".encode())
            got = await asyncio.wait_for(reader.read(4096), 10)
            assert got.startswith(b"HTTP/1.1 200")
            await asyncio.sleep(0.3)  # the server is blocked writing: the client reads no more
            # Closed with a reset (SO_LINGER 0), as a client killed or a network gone does.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        await asyncio.sleep(1.0)  # let the server notice
        text = await metrics_text(client)
        assert status_count(text, "nps_batches_total", "client_abort") == 3, text
        assert status_count(text, "nps_batches_total", "500") == 0
        assert status_count(text, "nps_http_requests_total", "500") == 0
        exports = [line for line in text.splitlines() if line.startswith("nps_http_requests_total{")
                   and 'route="/v1/export"' in line and 'status="client_abort"' in line]
        assert exports and int(exports[0].rsplit(" ", 1)[1]) == 2
        # The box can upload after all that.
        status, _ = await api.upload(token, batch("stb-a", [session_record()]))
        assert status == 200
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
    assert not any(r.exc_info for r in caplog.records)
    aborts = [r for r in caplog.records if r.getMessage() == "client aborted"]
    assert len(aborts) == 5 and all(r.levelno == logging.INFO for r in aborts)
