"""GET /v1/export: fields as received plus the collector's, JSON lines and CSV, streamed."""

from __future__ import annotations

import csv
import io
import tracemalloc
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import orjson

from collector.export import CSV_COLUMNS, export_chunks
from collector.storage import ExportRow
from tests.collector.conftest import Api, batch, session_record, survey_record


async def test_jsonl_and_csv(api: Api) -> None:
    token = await api.enrol("stb-1")
    s = session_record(channel='Kanaal "1", ok', startup_ms=None, extra_unknown=1)
    s["started_at"] = s["started_at"].replace("Z", "+00:00")
    v = survey_record(session_id=s["id"], score=4, reason="price")
    d = survey_record(outcome="dismissed", score=None)
    await api.upload(token, batch("stb-1", [s, v, d], box={"model": "X-200", "region": "NL-NH"}))
    h = api.admin
    resp = await api.client.get("/v1/export", params={"kind": "session"}, headers=h)
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("application/x-ndjson")
    lines = [orjson.loads(x) for x in (await resp.read()).splitlines()]
    assert len(lines) == 1
    got = lines[0]
    assert got["started_at"] == s["started_at"] and got["qos"] == s["qos"] and got["channel"] == s["channel"]
    assert "extra_unknown" not in got
    assert got["box_id"] == "stb-1" and got["clock_shift_s"] == 0
    assert got["box"] == {"model": "X-200", "firmware": None, "region": "NL-NH"}
    assert abs(datetime.fromisoformat(got["received_at"]) - datetime.now(UTC)) < timedelta(minutes=1)

    resp = await api.client.get("/v1/export", params={"kind": "survey", "format": "csv"}, headers=h)
    assert resp.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO((await resp.read()).decode())))
    assert list(rows[0]) == list(CSV_COLUMNS["survey"])
    by_id = {r["id"]: r for r in rows}
    assert by_id[v["id"]]["score"] == "4" and by_id[v["id"]]["reason"] == "price"
    assert by_id[d["id"]]["score"] == "" and by_id[d["id"]]["answered_at"] == ""
    assert by_id[d["id"]]["box_model"] == "X-200" and by_id[d["id"]]["box_firmware"] == ""

    resp = await api.client.get("/v1/export", params={"kind": "session", "format": "csv"}, headers=h)
    (row,) = csv.DictReader(io.StringIO((await resp.read()).decode()))
    assert row["channel"] == s["channel"] and row["qos_startup_ms"] == "" and row["qos_failed"] == "false"
    assert row["qos_watch_s"] == str(s["qos"]["watch_s"])


async def test_video_height_round_trip(api: Api) -> None:
    token = await api.enrol("stb-1")
    tall = session_record()
    tall["qos"]["video_height"] = 2160
    unknown = session_record()
    unknown["qos"]["video_height"] = None
    older = session_record()  # a box whose player does not tell: the field absent
    status, body = await api.upload(token, batch("stb-1", [tall, unknown, older]))
    assert status == 200 and body["accepted"] == 3, body
    resp = await api.client.get("/v1/export", params={"kind": "session"}, headers=api.admin)
    by_id = {x["id"]: x for x in map(orjson.loads, (await resp.read()).splitlines())}
    # Each exported as it was received: the value, null, absent.
    assert by_id[tall["id"]]["qos"] == tall["qos"] and by_id[tall["id"]]["qos"]["video_height"] == 2160
    assert by_id[unknown["id"]]["qos"] == unknown["qos"]
    assert by_id[older["id"]]["qos"] == older["qos"] and "video_height" not in by_id[older["id"]]["qos"]
    resp = await api.client.get("/v1/export", params={"kind": "session", "format": "csv"},
                                headers=api.admin)
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO((await resp.read()).decode()))}
    assert "qos_video_height" in CSV_COLUMNS["session"]
    assert rows[tall["id"]]["qos_video_height"] == "2160"
    assert rows[unknown["id"]]["qos_video_height"] == rows[older["id"]]["qos_video_height"] == ""
    # And the report counts it (2160 is above 1080), the others in no bucket.
    rep = await api.report()
    assert [b["sessions"] for b in rep["by_qos"]["video_height"]] == [0, 0, 0, 1]


async def test_video_height_2_31_is_refused_naming_the_field(api: Api) -> None:
    token = await api.enrol("stb-1")
    bad, good = session_record(), session_record()
    bad["qos"]["video_height"] = 2**31
    good["qos"]["video_height"] = 2**31 - 1
    status, body = await api.upload(token, batch("stb-1", [bad, good]))
    assert status == 200 and body["accepted"] == 1, body
    (rejected,) = body["rejected"]
    assert rejected["index"] == 0 and rejected["error"].startswith("records[0].qos.video_height:"), rejected
    rep = await api.report()
    assert [b["sessions"] for b in rep["by_qos"]["video_height"]] == [0, 0, 0, 1]


async def test_dropped_frames_are_stored_and_exported(api: Api) -> None:
    token = await api.enrol("stb-1")
    some, none, older = session_record(), session_record(), session_record()
    some["qos"]["dropped_frames"] = 12
    none["qos"]["dropped_frames"] = None
    bad = session_record()
    bad["qos"]["dropped_frames"] = 2**31
    status, body = await api.upload(token, batch("stb-1", [some, none, older, bad]))
    assert status == 200 and body["accepted"] == 3, body
    assert [(r["index"], r["error"].split(":")[0]) for r in body["rejected"]] == [
        (3, "records[3].qos.dropped_frames")]
    resp = await api.client.get("/v1/export", params={"kind": "session"}, headers=api.admin)
    by_id = {x["id"]: x for x in map(orjson.loads, (await resp.read()).splitlines())}
    assert by_id[some["id"]]["qos"]["dropped_frames"] == 12
    assert by_id[none["id"]]["qos"] == none["qos"] and by_id[older["id"]]["qos"] == older["qos"]
    resp = await api.client.get("/v1/export", params={"kind": "session", "format": "csv"},
                                headers=api.admin)
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO((await resp.read()).decode()))}
    assert rows[some["id"]]["qos_dropped_frames"] == "12"
    assert rows[none["id"]]["qos_dropped_frames"] == rows[older["id"]]["qos_dropped_frames"] == ""


async def test_export_filters_and_errors(api: Api) -> None:
    token = await api.enrol("stb-1")
    old = session_record(started=datetime(2026, 1, 1, tzinfo=UTC), channel="A")
    new = session_record(started=datetime(2026, 6, 1, tzinfo=UTC), channel="B")
    await api.upload(token, batch("stb-1", [old, new]))
    resp = await api.client.get("/v1/export", headers=api.admin,
                                params={"kind": "session", "from": "2026-03-01T00:00:00Z"})
    assert [orjson.loads(x)["id"] for x in (await resp.read()).splitlines()] == [new["id"]]
    resp = await api.client.get("/v1/export", headers=api.admin, params={"kind": "session", "channel": "A"})
    assert [orjson.loads(x)["id"] for x in (await resp.read()).splitlines()] == [old["id"]]
    for params in ({}, {"kind": "heartbeat"}, {"kind": "session", "format": "xml"}, {"kind": "session", "x": "1"}):
        resp = await api.client.get("/v1/export", headers=api.admin, params=params)
        assert resp.status == 400 and (await resp.json())["error"] == "bad_query"


async def test_export_streams_with_flat_memory() -> None:
    raw = orjson.dumps(session_record())

    async def rows(n: int) -> AsyncIterator[ExportRow]:
        for _ in range(n):
            yield ExportRow(raw, "stb-1", 1_700_000_000_000_000, "X", None, "NL", 0.0)

    async def peak(n: int, fmt: str) -> tuple[int, int]:
        tracemalloc.start()
        total = 0
        try:
            async for chunk in export_chunks("session", fmt, rows(n)):
                total += len(chunk)
                assert len(chunk) < 200_000
            return tracemalloc.get_traced_memory()[1], total
        finally:
            tracemalloc.stop()

    for fmt in ("jsonl", "csv"):
        small, _ = await peak(2_000, fmt)
        big, size = await peak(40_000, fmt)
        assert size > 5_000_000
        assert big < 2 * small + 500_000, (fmt, small, big)
