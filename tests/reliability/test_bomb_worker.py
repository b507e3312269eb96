"""The worker process that decodes large bodies (issue 16, finding 2) against a real
``nps-collector serve``: it answers bombs, and it does not outlive a collector killed
outright."""

from __future__ import annotations

import asyncio
import gzip
import os
import subprocess
from pathlib import Path

import aiohttp
import orjson

from tests.collector.conftest import batch, session_record

from .conftest import CollectorProcess, enrol


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def test_the_decoding_worker_answers_and_dies_with_the_collector(tmp_path: Path) -> None:
    c = CollectorProcess(tmp_path / "c.db", tmp_path / "c.log")
    await c.start()
    try:
        async with aiohttp.ClientSession() as http:
            token = await enrol(http, c.url, "stb-k")
            head = orjson.dumps(batch("stb-k", [session_record()]))[:-1]
            bomb = gzip.compress(head + b',"pad":[' + b"{}," * 2_000_000 + b"{}]}", 9)
            async with http.post(c.url + "/v1/batches", data=bomb, headers={
                    "Authorization": f"Bearer {token}", "Content-Type": "application/json",
                    "Content-Encoding": "gzip"}) as resp:
                assert resp.status == 200 and (await resp.json())["accepted"] == 1
        assert c.proc is not None
        workers = _children(c.proc.pid)
        assert workers, "no worker process was started for a 6 MB body"
    finally:
        await c.kill9()
    for _ in range(50):
        if not any(_alive(p) for p in workers):
            break
        await asyncio.sleep(0.1)
    left = [p for p in workers if _alive(p)]
    for p in left:  # do not leave them behind whatever the outcome
        os.kill(p, 9)
    assert not left, f"worker processes outlived the SIGKILLed collector: {left}"
