"""Benchmark of the box agent (issue 3): idle memory, idle CPU, bytes per record.

Starts ``stb-widget run`` as a process (source ``events``) against an in-process fake
collector, plays 20 sessions through the events socket, lets them upload, then measures:

- resident memory (VmRSS) of the idle agent (goal: 30 MB);
- CPU time (user + system) the agent uses in 10 s of idleness (goal: 0.0 s);
- bytes on the wire per session record after gzip, in the agent's real uploads and in
  batches of 1, 10, 100 and 500 records built with the same protocol code.

With ``--https`` the fake collector serves TLS (a self-signed certificate made with the
``openssl`` command) and the agent verifies it against the system's CA bundle with that
certificate appended (``SSL_CERT_FILE``), so the CA store it loads is a real box's.

Usage: ``.venv/bin/python bench/agent_idle.py [--idle-s 10] [--https]``. Prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import ssl
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from aiohttp import web

from protocol import Batch, BoxInfo, Qos, SessionRecord, encode_batch, gzip_body
from stb_widget.ids import uuid7

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def private_mb(pid: int) -> tuple[float, float]:
    """(USS, PSS) in MB: memory only this process holds, and its fair share of the rest."""
    rows = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        rows[name] = int(value.split()[0])
    return (rows["Private_Clean"] + rows["Private_Dirty"]) / 1024, rows["Pss"] / 1024


def sample_session(rng: random.Random, when: datetime) -> SessionRecord:
    watch = rng.uniform(60, 7200)
    return SessionRecord(
        id=uuid7(int(when.timestamp() * 1000)), kind="session", started_at=when,
        ended_at=when + timedelta(seconds=watch + rng.uniform(0, 600)),
        channel=rng.choice(["NPO1", "NPO2", "RTL4", "SBS6", "Ziggo Sport", "Discovery"]),
        content_type=rng.choice(["live", "live", "vod", "catchup"]),
        qos=Qos(startup_ms=rng.randint(300, 4000), watch_s=round(watch, 3),
                rebuffer_count=rng.choice([0, 0, 0, 1, 2, 5]),
                rebuffer_s=round(rng.uniform(0, 20), 3),
                avg_bitrate_kbps=round(rng.uniform(1500, 8000), 3),
                bitrate_switches=rng.randint(0, 6), failed=rng.random() < 0.02),
    )


def batch_bytes(n: int) -> float:
    rng = random.Random(n)
    start = datetime(2026, 11, 22, 20, tzinfo=UTC)
    records = tuple(sample_session(rng, start + timedelta(minutes=30 * i)) for i in range(n))
    batch = Batch(box_id="stb-000123", sent_at=start, records=records,
                  box=BoxInfo(model="X-200", firmware="4.2.1", region="NL-NH"))
    return len(gzip_body(encode_batch(batch))) / n


def tls_files(tmp: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context with a new self-signed certificate for 127.0.0.1, and a CA bundle:
    the system's (what ``ssl.create_default_context()`` loads on a box) plus that one."""
    cert, key, bundle = tmp / "cert.pem", tmp / "key.pem", tmp / "bundle.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    paths = ssl.get_default_verify_paths()
    system = Path(paths.cafile or paths.openssl_cafile)
    bundle.write_bytes((system.read_bytes() if system.is_file() else b"") + cert.read_bytes())
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context, bundle


async def main(idle_s: float, https: bool) -> None:
    wire: list[tuple[int, int]] = []

    async def batches(request: web.Request) -> web.Response:
        n = len(orjson.loads(await request.read())["records"])
        wire.append((int(request.headers["Content-Length"]), n))
        return web.json_response({"accepted": n, "duplicates": 0, "rejected": []})

    app = web.Application()
    app.router.add_post("/v1/batches", batches)
    runner = web.AppRunner(app)
    await runner.setup()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        server_tls = None
        if https:
            server_tls, bundle = tls_files(Path(tmp))
            env["SSL_CERT_FILE"] = str(bundle)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        scheme = "https" if https else "http"
        sock = Path(tmp) / "ev.sock"
        cfg = Path(tmp) / "agent.toml"
        cfg.write_text(f"""
box_id = "stb-bench"
data_dir = "{tmp}/data"
[box]
model = "X-200"
firmware = "4.2.1"
region = "NL-NH"
[collector]
url = "{scheme}://127.0.0.1:{port}/"
token = "t"
upload_delay_s = 1
boot_jitter_s = 0
[player]
source = "events"
events_socket = "{sock}"
[survey]
tty = "/dev/null"
""")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stb_widget.cli", "run", "--config", str(cfg), cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=env,
        )
        try:
            for _ in range(200):
                if sock.exists():
                    break
                await asyncio.sleep(0.05)
            start_rss = rss_mb(proc.pid)
            _, writer = await asyncio.open_unix_connection(str(sock))
            rng = random.Random(7)
            for i in range(20):
                t = i * 1000.0
                for ev in ({"event": "play", "channel": "NPO1", "content_type": "live", "at": t},
                           {"event": "first_frame", "at": t + rng.uniform(0.3, 3)},
                           {"event": "bitrate", "kbps": 5400, "at": t + 1},
                           {"event": "stall_start", "at": t + 300},
                           {"event": "stall_end", "at": t + 302.5},
                           {"event": "bitrate", "kbps": 3000, "at": t + 400},
                           {"event": "stop", "at": t + rng.uniform(600, 900)}):
                    writer.write(orjson.dumps(ev) + b"\n")
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            for _ in range(200):
                if sum(n for _, n in wire) >= 20:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # settle
            idle_rss = rss_mb(proc.pid)
            uss, pss = private_mb(proc.pid)
            cpu0 = cpu_s(proc.pid)
            await asyncio.sleep(idle_s)
            idle_cpu = cpu_s(proc.pid) - cpu0
            rss_after = rss_mb(proc.pid)
        finally:
            proc.terminate()
            await proc.wait()
    await runner.cleanup()
    sent = sum(b for b, _ in wire)
    records = sum(n for _, n in wire)
    print(f"collector over {'https (TLS verified)' if https else 'http'}\n")
    print("| figure | value | goal |")
    print("| --- | --- | --- |")
    print(f"| RSS at start | {start_rss:.1f} MB | |")
    print(f"| RSS idle, after 20 sessions uploaded | {idle_rss:.1f} MB | 30 MB |")
    print(f"| unique memory (USS) idle / proportional (PSS) | {uss:.1f} MB / {pss:.1f} MB | |")
    print(f"| RSS after {idle_s:g} s idle | {rss_after:.1f} MB | |")
    print(f"| CPU time in {idle_s:g} s idle | {idle_cpu:.2f} s | 0.0 s |")
    print(f"| wire bytes per session record, agent's uploads ({records} records in "
          f"{len(wire)} batch(es)) | {sent / max(records, 1):.0f} B | |")
    for n in (1, 10, 100, 500):
        print(f"| wire bytes per session record, gzip batch of {n} | {batch_bytes(n):.0f} B | |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idle-s", type=float, default=10.0)
    parser.add_argument("--https", action="store_true",
                        help="serve TLS; the agent verifies it (needs the openssl command)")
    args = parser.parse_args()
    asyncio.run(main(args.idle_s, args.https))
