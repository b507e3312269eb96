"""Tokens and the admin endpoints: enrolment, revocation, who may call what."""

from __future__ import annotations

import asyncio
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from collector.appkeys import STORE
from collector.errors import TokenRefusedError
from collector.model import UploadAuth
from collector.settings import Settings
from collector.storage import make_storage
from collector.tokens import TokenOwners, token_hash
from tests.collector.conftest import ADMIN, Api, batch, session_record
from tests.collector.test_scale import session_row


async def test_enrolment_over_http(api: Api) -> None:
    c = api.client
    resp = await c.post("/v1/boxes", json={"box_id": "stb-9"}, headers=api.admin)
    assert resp.status == 201
    body = await resp.json()
    assert body["box_id"] == "stb-9" and len(body["token"]) > 30
    # no token, unknown token: 401; a box token: 403; bad box id: 400
    assert (await c.post("/v1/boxes", json={"box_id": "x"})).status == 401
    assert (await c.post("/v1/boxes", json={"box_id": "x"},
                         headers={"Authorization": "Bearer zzz"})).status == 401
    resp = await c.post("/v1/boxes", json={"box_id": "x"},
                        headers={"Authorization": f"Bearer {body['token']}"})
    assert resp.status == 403 and (await resp.json())["error"] == "forbidden"
    for bad in ({"box_id": "has space"}, {"box_id": ""}, {"box_id": "x" * 65}, {}, [1], {"box_id": 5}):
        resp = await c.post("/v1/boxes", json=bad, headers=api.admin)
        assert resp.status == 400, bad
        assert (await resp.json())["detail"]


async def test_admin_endpoints_refuse_box_tokens(api: Api) -> None:
    token = await api.enrol("stb-1")
    for path in ("/v1/report", "/v1/export?kind=session"):
        resp = await api.client.get(path)
        assert resp.status == 401 and (await resp.json())["error"] == "unauthorized"
        resp = await api.client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 403 and (await resp.json())["error"] == "forbidden"


async def test_revocation_is_immediate_and_later_tokens_work(api: Api) -> None:
    t1 = await api.enrol("stb-1")
    t2 = await api.enrol("stb-1")
    assert t1 != t2
    for t in (t1, t2):  # earlier tokens keep working
        assert (await api.upload(t, batch("stb-1", [session_record()])))[0] == 200
    other = await api.enrol("stb-2")
    app = api.client.app
    assert app is not None
    assert await app[STORE].revoke_box("stb-1") == 2
    for t in (t1, t2):
        status, body = await api.upload(t, batch("stb-1", [session_record()]))
        assert (status, body["error"]) == (403, "forbidden")
    assert (await api.upload(other, batch("stb-2", [session_record()])))[0] == 200
    t3 = await api.enrol("stb-1")
    assert (await api.upload(t3, batch("stb-1", [session_record()])))[0] == 200


async def test_a_token_revoked_after_use_comes_before_every_other_fault(api: Api) -> None:
    """A token that has uploaded, then is revoked behind the app's back (as by
    ``box-revoke`` in another process): its next uploads store nothing, and the auth fault
    comes before the body's; a deleted box's token is unknown at once."""
    token = await api.enrol("stb-1")
    keep = await api.enrol("stb-2")
    assert (await api.upload(token, batch("stb-1", [session_record()])))[0] == 200
    app = api.client.app
    assert app is not None
    assert await app[STORE].revoke_box("stb-1") == 1
    # Revoked + a malformed body: 403, not 400; revoked + another box's id: 403 "revoked".
    status, body = await api.upload(token, None, raw=b"{not json")
    assert (status, body["error"], body["detail"]) == (
        403, "forbidden", "Authorization: this token was revoked")
    assert (await api.upload(token, batch("stb-1", [session_record()])))[0] == 403
    status, body = await api.upload(token, batch("stb-2", [session_record()]))
    assert (status, body["detail"]) == (403, "Authorization: this token was revoked")
    # A box whose data and tokens were deleted: its token is unknown at once.
    assert (await api.upload(keep, batch("stb-2", [session_record()])))[0] == 200
    await app[STORE].delete_box("stb-2")
    status, body = await api.upload(keep, batch("stb-2", [session_record()]))
    assert (status, body["error"]) == (401, "unauthorized")
    report = await api.report()
    assert report["sessions"]["count"] == 1  # stb-1's first upload; stb-2's went with the box


async def test_the_store_refuses_an_upload_whose_token_it_does_not_hold(
        settings_factory: Callable[..., Settings], caplog: pytest.LogCaptureFixture) -> None:
    """In one group commit: uploads with a good, an unknown, a revoked and another box's
    token, and one the store is given without a token (nothing to check); only the good
    ones and the one without a token are stored."""
    store = make_storage(settings_factory())
    await store.open()
    try:
        good, revoked = token_hash("nbx_good"), token_hash("nbx_revoked")
        await store.add_box_token("stb-1", good, 1)
        await store.add_box_token("stb-1", revoked, 1)
        await store.revoke_box("stb-1")
        await store.add_box_token("stb-1", good := token_hash("nbx_good2"), 2)
        rng = random.Random(3)
        now_us = int(time.time() * 1e6)
        rows = [[session_row(rng, started_us=now_us - 3_600_000_000)] for _ in range(6)]
        # A good upload after the refused ones too: a refusal must not end the group.
        auths = [UploadAuth(good, "stb-1"), UploadAuth(token_hash("nbx_unknown"), "stb-1"),
                 UploadAuth(revoked, "stb-1"), UploadAuth(good, "stb-9"), UploadAuth(good, "stb-1"),
                 None]
        answers = await asyncio.gather(*(store.ingest(r, a) for r, a in zip(rows, auths, strict=True)),
                                       return_exceptions=True)
        assert answers[0] == [True] and answers[4] == [True] and answers[5] == [True]
        assert [getattr(a, "kind", a) for a in answers[1:4]] == ["unknown", "revoked", "other_box"]
        assert all(isinstance(a, TokenRefusedError) for a in answers[1:4])
        assert (await store.counts())["sessions"] == 3
        # Refusals are answers, not failures: the group was not written again in parts.
        assert "writing it in parts" not in caplog.text
        # Refused rows were not stored: the same ids, under a good token, are new.
        assert await store.ingest(rows[1], UploadAuth(good, "stb-1")) == [True]
    finally:
        await store.close()


async def test_tokens_are_not_stored_in_plain_text(api: Api, db_url: str) -> None:
    token = await api.enrol("stb-1")
    await api.upload(token, batch("stb-1", [session_record()]))
    secret = token.split("_", 1)[1].encode()
    if db_url.startswith("sqlite"):
        path = Path(db_url.removeprefix("sqlite:///"))
        blob = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    else:
        import asyncpg

        conn = await asyncpg.connect(db_url)
        try:
            tables = [r[0] for r in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]
            blob = b""
            for t in tables:
                rows = await conn.fetch(f'SELECT * FROM "{t}"')
                blob += repr([tuple(r) for r in rows]).encode()
        finally:
            await conn.close()
    assert b"stb-1" in blob  # the store was read...
    assert token.encode() not in blob and secret not in blob  # ...and holds no token


def _cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collector.cli", *args], capture_output=True,
                          text=True, timeout=60, env=env, cwd=cwd, check=False)


async def test_operator_commands_in_real_processes(tmp_path: Path) -> None:
    """serve, box-token, box-revoke and admin-token as an operator runs them."""
    env = {k: v for k, v in os.environ.items() if k != "NPS_ADMIN_TOKEN"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    # The default store: ./nps-data/collector.db, relative to the working directory.
    out = _cli("box-token", "stb-7", env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    t1 = out.stdout.strip()
    assert re.fullmatch(r"\S{20,}", t1) and out.stdout.count("\n") == 1
    assert (tmp_path / "nps-data" / "collector.db").exists()
    db = f"sqlite:///{tmp_path / 'nps-data' / 'collector.db'}"
    t2 = _cli("box-token", "stb-7", "--db", db, env=env).stdout.strip()
    assert _cli("box-token", "bad id!", env=env, cwd=tmp_path).returncode == 2
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "collector.cli", "serve", "--db", db, "--port", str(port),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        printed = ""
        while "admin token" not in printed:
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line, "serve exited early"
            printed += line.decode()
        assert "nps-collector admin-token" in printed and str(tmp_path) in printed
        admin = _cli("admin-token", "--db", db, env=env).stdout.strip()
        assert admin and admin not in printed  # the location is printed, not the secret
        import aiohttp

        from protocol import utcnow

        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            for _ in range(100):
                try:
                    async with http.get(f"{url}/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            doc = batch("stb-7", [session_record()], sent_at=utcnow())
            for t in (t1, t2):
                async with http.post(f"{url}/v1/batches", json=doc,
                                     headers={"Authorization": f"Bearer {t}"}) as r:
                    assert r.status == 200
            assert _cli("box-revoke", "stb-7", "--db", db, env=env).returncode == 0
            for t in (t1, t2):
                async with http.post(f"{url}/v1/batches", json=doc,
                                     headers={"Authorization": f"Bearer {t}"}) as r:
                    assert r.status == 403
            t3 = _cli("box-token", "stb-7", "--db", db, env=env).stdout.strip()
            async with http.post(f"{url}/v1/batches", json=doc,
                                 headers={"Authorization": f"Bearer {t3}"}) as r:
                assert r.status == 200 and (await r.json())["duplicates"] == 1
            async with http.get(f"{url}/v1/report", headers={"Authorization": f"Bearer {admin}"}) as r:
                assert r.status == 200 and (await r.json())["sessions"]["count"] == 1
            async with http.get(f"{url}/v1/report", headers={"Authorization": f"Bearer {ADMIN}"}) as r:
                assert r.status == 401
    finally:
        proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    logged = err.decode()
    assert '"path": "/v1/batches"' in logged or '"path":"/v1/batches"' in logged
    for secret in (t1, t2, admin):
        assert secret not in logged


async def test_rebuild_aggregates_command_gives_the_same_report(tmp_path: Path) -> None:
    """After the aggregates are lost (a restore from a records-only backup, say), the
    command rebuilds them and the report is what it was."""
    import aiosqlite

    from collector.settings import Settings
    from tests.collector.conftest import serve, survey_record

    db = f"sqlite:///{tmp_path / 'c.db'}"
    settings = Settings(db=db, admin_token=ADMIN)
    async with serve(settings) as client:
        api = Api(client)
        token = await api.enrol("stb-1")
        recs = []
        for i in range(30):
            s = session_record(rebuffer_s=float(i), watch_s=1000.0)
            recs += [s, survey_record(session_id=s["id"], score=i % 11)]
        await api.upload(token, batch("stb-1", recs))
        before = await api.report()
    async with aiosqlite.connect(tmp_path / "c.db") as conn:
        tables = [r[0] for r in await conn.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'agg%'")]
        assert tables
        for t in tables:
            await conn.execute(f'DELETE FROM "{t}"')
        await conn.commit()
    env = {k: v for k, v in os.environ.items() if k != "NPS_ADMIN_TOKEN"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    async with serve(settings) as client:
        assert (await Api(client).report())["sessions"]["count"] == 0  # the aggregates are gone
    out = _cli("rebuild-aggregates", "--db", db, env=env)
    assert out.returncode == 0, out.stderr
    async with serve(settings) as client:
        assert await Api(client).report() == before


def test_token_owners_stay_bounded() -> None:
    """The hint never grows past its bound; a forgotten or dropped token is a miss (and
    costs one look-up), never a wrong owner."""
    owners = TokenOwners(max_entries=3)
    for i in range(3):
        owners.remember(bytes([i]), f"stb-{i}")
    assert [owners.get(bytes([i])) for i in range(3)] == ["stb-0", "stb-1", "stb-2"]
    owners.remember(b"\x09", "stb-9")  # full: starts again
    assert owners.get(b"\x00") is None and owners.get(b"\x09") == "stb-9"
    owners.forget(b"\x09")
    assert owners.get(b"\x09") is None
