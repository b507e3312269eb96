"""One box's bad record must never fail the fleet's uploads (issue 16, finding 1).

Two layers, each tested on its own:
- the protocol refuses, record by record and naming the field, what a database would
  refuse (U+0000 in a string, a count of 2^31 or more: contract section 3);
- a write the database refuses anyway fails only the upload that holds the bad value:
  every other upload that shared its group commit is stored and answered as usual.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from collector.errors import StorageError
from collector.ingest import rows_from_batch
from collector.model import Row, SessionRow
from collector.settings import Settings
from collector.storage import Storage
from protocol import decode_batch

from .conftest import Api, batch, serve, session_record, survey_record

GOOD_BOXES = 8


def rows_of(box_id: str, records: list[dict[str, Any]]) -> list[Row]:
    decoded = decode_batch(orjson.dumps(batch(box_id, records)))
    assert not decoded.rejected, decoded.rejected
    return [row for _, row in rows_from_batch(decoded, datetime.now(UTC))]


def poisoned(db_url: str) -> list[Callable[[SessionRow], SessionRow]]:
    """Ways to make a row that passed the protocol but that the database refuses."""
    ways: list[Callable[[SessionRow], SessionRow]] = [
        # Beyond any integer column (and beyond what sqlite3 can bind).
        lambda r: r._replace(rebuffer_count=2**70),
    ]
    if db_url.startswith("postgresql"):
        # PostgreSQL text cannot hold U+0000; its count columns are 32-bit.
        ways.append(lambda r: r._replace(channel="NPO\x001"))
        ways.append(lambda r: r._replace(bitrate_switches=2**31))
    return ways


async def test_a_refused_upload_fails_alone(store: Storage, db_url: str) -> None:
    """Good uploads queued in the same group as a poisoned one are all stored."""
    for poison in poisoned(db_url):
        good = [rows_of(f"good-{i}", [session_record() for _ in range(5)])
                for i in range(GOOD_BOXES)]
        bad_rows = rows_of("attacker", [session_record(), session_record()])
        assert isinstance(bad_rows[1], SessionRow)
        bad = [bad_rows[0], poison(bad_rows[1])]
        # Submitted in one go, so the writer takes them as one group (the poisoned one in
        # the middle of it).
        tasks = [asyncio.ensure_future(store.ingest(rows)) for rows in good[:4]]
        tasks.append(asyncio.ensure_future(store.ingest(bad)))
        tasks += [asyncio.ensure_future(store.ingest(rows)) for rows in good[4:]]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        bad_result = results.pop(4)
        assert isinstance(bad_result, StorageError), bad_result
        for res in results:
            assert res == [True] * 5, res
        # Stored: every good record; nothing of the refused upload (its good record too:
        # an upload is stored whole or not at all).
        again = await asyncio.gather(*(store.ingest(rows) for rows in good))
        assert all(r == [False] * 5 for r in again)
        assert await store.ingest([bad_rows[0]]) == [True]


async def test_isolation_costs_only_the_bad_upload(store: Storage, db_url: str) -> None:
    """A report after a poisoned group counts every good session, once."""
    good = [rows_of(f"box-{i}", [session_record() for _ in range(3)]) for i in range(6)]
    bad_rows = rows_of("attacker", [session_record()])
    assert isinstance(bad_rows[0], SessionRow)
    bad = [bad_rows[0]._replace(rebuffer_count=2**70)]
    results = await asyncio.gather(*(store.ingest(r) for r in [bad, *good, bad]),
                                   return_exceptions=True)
    assert isinstance(results[0], StorageError) and isinstance(results[-1], StorageError)
    assert all(r == [True] * 3 for r in results[1:-1])


def _poison_records() -> list[tuple[dict[str, Any], str]]:
    """Records the protocol must refuse, each with the field it must name."""
    nul_channel = session_record(channel="NPO\u00001")
    nul_box_field = session_record()
    big_startup = session_record(startup_ms=2**31)
    big_count = session_record(rebuffer_count=2**31)
    big_switches = session_record()
    big_switches["qos"]["bitrate_switches"] = 2**31
    nul_locale = survey_record(locale="n\u0000l")
    del nul_box_field
    return [
        (nul_channel, "records[{i}].channel: must not contain U+0000"),
        (big_startup, "records[{i}].qos.startup_ms: must be <= 2147483647"),
        (big_count, "records[{i}].qos.rebuffer_count: must be <= 2147483647"),
        (big_switches, "records[{i}].qos.bitrate_switches: must be <= 2147483647"),
        (nul_locale, "records[{i}].locale: must not contain U+0000"),
    ]


async def test_protocol_rejects_what_a_database_refuses(api: Api) -> None:
    token = await api.enrol("picky")
    edge = session_record(startup_ms=2**31 - 1, rebuffer_count=2**31 - 1)
    poison = _poison_records()
    records = [session_record(), *[r for r, _ in poison], edge]
    status, body = await api.upload(token, batch("picky", records))
    assert status == 200, body
    assert body["accepted"] == 2 and body["duplicates"] == 0
    errors = {r["index"]: r["error"] for r in body["rejected"]}
    assert errors == {i + 1: msg.format(i=i + 1) for i, (_, msg) in enumerate(poison)}
    # A NUL in the box attributes spoils the whole envelope.
    status, body = await api.upload(
        token, batch("picky", [session_record()], box={"region": "NL\u0000"}))
    assert status == 400 and body["detail"] == "box.region: must not contain U+0000", body
    report = await api.report()
    assert report["sessions"]["count"] == 2


async def test_a_poisoning_box_changes_no_other_answer(
        settings_factory: Callable[..., Settings]) -> None:
    """8 good boxes upload while one box loops batches full of what the database refuses:
    every good upload is answered 200 with its records accepted, and the report counts
    exactly the good boxes' sessions."""
    # The attacker is let through its rate limit: what is tested is the store, not the
    # limiter.
    async with serve(settings_factory(box_rate_per_min=100_000, box_burst=100)) as client:
        api = Api(client)
        tokens = {f"good-{i}": await api.enrol(f"good-{i}") for i in range(GOOD_BOXES)}
        attacker = await api.enrol("attacker")
        stop = asyncio.Event()
        attacks: list[int] = []

        async def attack() -> None:
            bad = [r for r, _ in _poison_records()] * 20
            while not stop.is_set():
                status, body = await api.upload(attacker, batch("attacker", bad))
                assert status == 200 and body["accepted"] == 0, body
                attacks.append(status)

        async def good_box(box_id: str, token: str) -> int:
            sent = 0
            for _ in range(15):
                records = [session_record() for _ in range(4)]
                status, body = await api.upload(token, batch(box_id, records))
                assert status == 200, body
                assert body == {"accepted": 4, "duplicates": 0, "rejected": []}
                sent += 4
            return sent

        attacker_task = asyncio.ensure_future(attack())
        sent = await asyncio.gather(*(good_box(b, t) for b, t in tokens.items()))
        stop.set()
        await attacker_task
        assert attacks, "the attacker never got through"
        report = await api.report()
        assert report["sessions"]["count"] == sum(sent)


async def test_a_repeated_parameter_is_named_on_every_admin_endpoint(api: Api) -> None:
    """``?region=a&region=b`` is ambiguous: every endpoint that takes the report's filters
    answers 400 naming it (multidict's ``keys()`` lists a repeated key once, so each
    handler must look at every item)."""
    for path, extra in (("/v1/report", ""), ("/v1/impact", ""), ("/v1/export", "&kind=session"),
                        ("/v1/at-risk", "")):
        resp = await api.client.get(f"{path}?region=NL-NH&region=NL-ZH{extra}", headers=api.admin)
        body = await resp.json()
        assert resp.status == 400, (path, body)
        assert body == {"error": "bad_query", "detail": "region: given more than once"}, (path, body)
