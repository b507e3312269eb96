"""Clients that go away mid-request (issue 16, finding 7), against a real
``nps-collector serve``: a box whose network drops in the middle of its upload, an
operator who closes a download. Each is one INFO line and a ``client_abort`` count,
never an ERROR with a traceback nor a 500 in the metrics an alert would watch."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from pathlib import Path

import aiohttp
import orjson

from tests.collector.conftest import batch, new_id, session_record

from .conftest import ADMIN, collector_process, enrol


def _count(metrics: str, family: str, *labels: str) -> int:
    total = 0
    for line in metrics.splitlines():
        if line.startswith(family + "{") and all(label in line for label in labels):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


async def test_half_bodies_and_closed_exports_are_client_aborts(tmp_path: Path) -> None:
    async with collector_process(tmp_path, "--box-rate", "100000", "--box-burst", "1000") as c, \
            aiohttp.ClientSession() as http:
        token = await enrol(http, c.url, "stb-gone")
        body = orjson.dumps(batch("stb-gone", [session_record() for _ in range(50)]))
        head = (f"POST /v1/batches HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        for _ in range(4):
            reader, writer = await asyncio.open_connection("127.0.0.1", c.port)
            writer.write(head + body[: len(body) // 2])
            await writer.drain()
            await asyncio.sleep(0.2)  # the collector is reading the body now
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        # Enough rows that the export is still being written when the reader leaves.
        records = [session_record(channel="c" * 400) for _ in range(500)]
        for _ in range(24):
            async with http.post(c.url + "/v1/batches", data=orjson.dumps(
                    batch("stb-gone", [{**r, "id": new_id()} for r in records])), headers={
                    "Authorization": f"Bearer {token}", "Content-Type": "application/json"}) as resp:
                assert resp.status == 200
        for _ in range(3):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", c.port))
            sock.setblocking(False)
            reader, writer = await asyncio.open_connection(sock=sock)
            writer.write(f"GET /v1/export?kind=session HTTP/1.1\r\nHost: x\r\n"
                         f"Authorization: Bearer {ADMIN}\r\n\r\n".encode())
            got = await asyncio.wait_for(reader.read(4096), 10)
            assert got.startswith(b"HTTP/1.1 200")
            await asyncio.sleep(0.3)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()  # a reset, as from a killed client
        await asyncio.sleep(1.0)
        async with http.get(c.url + "/metrics") as resp:
            metrics = await resp.text()
        assert _count(metrics, "nps_batches_total", 'status="client_abort"') == 4, metrics
        assert _count(metrics, "nps_http_requests_total", 'route="/v1/export"',
                      'status="client_abort"') == 3, metrics
        assert _count(metrics, "nps_batches_total", 'status="500"') == 0
        assert _count(metrics, "nps_http_requests_total", 'status="500"') == 0
        # Served as before.
        async with http.post(c.url + "/v1/batches", data=orjson.dumps(
                batch("stb-gone", [session_record()])), headers={
                "Authorization": f"Bearer {token}", "Content-Type": "application/json"}) as resp:
            assert resp.status == 200
    log = (tmp_path / "collector.log").read_text()
    lines = [orjson.loads(line) for line in log.splitlines() if line.startswith("{")]
    aborts = [r for r in lines if r.get("msg") == "client aborted"]
    assert len(aborts) == 7, log[-3000:]
    assert {r["level"] for r in aborts} == {"info"}
    assert "Traceback" not in log and not [r for r in lines if r.get("level") in ("error", "critical")], log[-3000:]
