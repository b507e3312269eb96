"""What every benchmark needs to run a collector as its own process: a free port,
waiting until it answers ``/readyz``, and enrolling boxes."""

from __future__ import annotations

import asyncio
import socket

import aiohttp


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def enrol(http: aiohttp.ClientSession, url: str, admin_token: str, box_id: str) -> str:
    """Enrol ``box_id`` at the collector at ``url``; answer its token. Anything but 201
    is an error naming the status and the collector's answer."""
    async with http.post(f"{url}/v1/boxes", json={"box_id": box_id},
                         headers={"Authorization": f"Bearer {admin_token}"}) as r:
        if r.status != 201:
            raise RuntimeError(f"enrolling {box_id}: {r.status} {await r.text()}")
        token: str = (await r.json())["token"]
        return token


async def wait_ready(url: str, timeout_s: float = 30.0) -> None:
    """Return once the collector at ``url`` answers ``/readyz`` with 200."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with aiohttp.ClientSession() as http:
        while loop.time() < deadline:
            try:
                async with http.get(f"{url}/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"the collector at {url} was not ready within {timeout_s:g} s")
