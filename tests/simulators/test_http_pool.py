"""The fleet's lean HTTP client: real HTTP/1.1 to a real server, kept-alive, failing as
the agent's own client does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from simulators.http_pool import Gate, HttpPool
from stb_widget.errors import NetworkError, NetworkTimeout, ResponseTooLarge

pytestmark = pytest.mark.timeout(60)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def server() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    servers: list[TestServer] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_post("/{tail:.*}", handler)
        srv = TestServer(app)
        await srv.start_server()
        servers.append(srv)
        return str(srv.make_url("/")).rstrip("/")

    yield start
    for srv in servers:
        await srv.close()


async def test_posts_and_keeps_the_connection(server: Callable[[Handler], Awaitable[str]]) -> None:
    seen: list[tuple[str, bytes, str, str]] = []

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append((request.path, body, request.headers["Authorization"],
                     request.headers["Host"]))
        return web.json_response({"n": len(body)}, headers={"Retry-After": "7"})

    url = await server(echo)
    pool = HttpPool(url)
    try:
        for i in range(5):
            resp = await pool.post(url + "/v1/batches", body=b"x" * i,
                                   headers={"Authorization": "Bearer t"})
            assert resp.status == 200
            assert resp.body == f'{{"n": {i}}}'.encode()
            assert resp.headers["retry-after"] == "7"
            assert resp.headers["content-type"].startswith("application/json")
    finally:
        await pool.close()
    assert [s[1] for s in seen] == [b"x" * i for i in range(5)]
    assert {s[0] for s in seen} == {"/v1/batches"} and {s[2] for s in seen} == {"Bearer t"}
    assert seen[0][3] == url.removeprefix("http://")
    assert pool.connections_opened == 1


async def test_concurrent_requests_use_their_own_connections(
        server: Callable[[Handler], Awaitable[str]]) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.05)
        return web.Response(text=(await request.read()).decode())

    url = await server(slow)
    pool = HttpPool(url)
    try:
        answers = await asyncio.gather(*(pool.post(url + "/a", body=str(i).encode(), headers={})
                                         for i in range(8)))
        assert [a.body for a in answers] == [str(i).encode() for i in range(8)]
        assert pool.connections_opened == 8
        await pool.post(url + "/a", body=b"again", headers={})
        assert pool.connections_opened == 8  # an idle one was reused
    finally:
        await pool.close()


async def test_chunked_answers_and_connection_close(
        server: Callable[[Handler], Awaitable[str]]) -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=503)
        resp.enable_chunked_encoding()
        if request.path == "/close":
            resp.force_close()
        await resp.prepare(request)
        for part in (b"over", b"load", b"ed"):
            await resp.write(part)
        await resp.write_eof()
        return resp

    url = await server(chunked)
    pool = HttpPool(url)
    try:
        resp = await pool.post(url + "/x", body=b"", headers={})
        assert (resp.status, resp.body) == (503, b"overloaded")
        resp = await pool.post(url + "/close", body=b"", headers={})
        assert (resp.status, resp.body) == (503, b"overloaded")
        resp = await pool.post(url + "/x", body=b"", headers={})
        assert resp.body == b"overloaded"
        assert pool.connections_opened == 2  # the server closed the first one
    finally:
        await pool.close()


async def test_failures_are_the_agents_errors(server: Callable[[Handler], Awaitable[str]]) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path == "/slow":
            await asyncio.sleep(5)
        if request.path == "/big":
            return web.Response(body=b"x" * 2048)
        if request.path == "/drop":
            assert request.transport is not None
            request.transport.close()
            await asyncio.sleep(1)
        return web.Response(text="ok")

    url = await server(handler)
    pool = HttpPool(url, timeout_s=0.2, max_body=1024)
    try:
        with pytest.raises(NetworkTimeout):
            await pool.post(url + "/slow", body=b"", headers={})
        with pytest.raises(ResponseTooLarge):
            await pool.post(url + "/big", body=b"", headers={})
        with pytest.raises(NetworkError):
            await pool.post(url + "/drop", body=b"", headers={})
        # After each failure the connection was dropped; the next request still works.
        assert (await pool.post(url + "/fine", body=b"", headers={})).body == b"ok"
    finally:
        await pool.close()


async def test_unreachable_collector() -> None:
    pool = HttpPool("http://127.0.0.1:9")
    with pytest.raises(NetworkError):
        await pool.post("http://127.0.0.1:9/v1/batches", body=b"", headers={})
    await pool.close()
    with pytest.raises(ValueError):
        HttpPool("https://collector.example.net/")


async def test_gate_bounds_holders_first_come_first_served() -> None:
    gate = Gate(2)
    inside = 0
    most = 0
    order: list[int] = []

    async def holder(i: int, hold: float) -> None:
        nonlocal inside, most
        async with gate:
            order.append(i)
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(hold)
            inside -= 1

    tasks = [asyncio.create_task(holder(i, 0.01)) for i in range(6)]
    await asyncio.sleep(0)
    # One waiter gives up while queued, one as soon as it is let in: neither keeps a place.
    quitter = asyncio.create_task(holder(99, 0.01))
    await asyncio.sleep(0)
    quitter.cancel()
    await asyncio.gather(*tasks)
    assert order == list(range(6)) and most == 2
    late = [asyncio.create_task(holder(i, 0.01)) for i in (10, 11)]
    handed = asyncio.create_task(holder(12, 0.01))
    await asyncio.sleep(0)
    await asyncio.sleep(0.011)  # 10 and 11 leave: 12 is handed a place, then cancelled
    handed.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    async with gate, gate:  # both places are free again
        pass
    with pytest.raises(ValueError):
        Gate(0)
