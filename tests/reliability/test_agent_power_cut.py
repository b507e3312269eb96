"""Real power cuts on the box: the agent's data directory on LazyFS.

A real ``stb-widget run`` keeps its buffer on a LazyFS mount (the fixture of
tests/reliability/test_power_cut.py: a FUSE file system that keeps every write in its own
cache until the program syncs it). A viewer plays session after session into the agent's
event feed; each session is asked, and the fake presenter answers at once, logging each
answer's id once ``confirmed()`` returned (what the screen acknowledges). At random
moments (seeded) the power is cut: the agent is frozen (SIGSTOP: nothing more reaches the
disk), ``lazyfs::clear-cache`` drops every unsynced write, the agent is SIGKILLed and
started again on what survived. The collector (a real ``nps-collector serve``) is up for
some rounds and down for others, so that cuts also hit a buffer holding a backlog.

Proved, after a last drain:

- the buffer always opens: it passes ``integrity_check`` after every cut, the agent
  starts on it, and it is never set aside as corrupt;
- every answer confirmed before a cut is at the collector exactly once (its export),
  and so is the session it followed; nothing is stored twice, and the report counts
  exactly the stored records;
- the bound on what a cut loses: only sessions the agent stored after its last sync.
  Sessions are committed without an fsync (``synchronous=NORMAL``: flash wear); the next
  synced commit (a confirmed answer, ``synchronous=FULL``, or a WAL checkpoint) makes
  them durable. So a session lost in a round must have ended after the session whose
  answer was the last confirmed before that round's cut. (Here every session is asked,
  so that is at most the few sessions of the last moments; on a box where one session in
  N is asked, it is every session since the last answer or checkpoint that the collector
  had not acknowledged.)

Needs what test_power_cut.py needs (root, /dev/fuse, the LazyFS build): skips with a
message where missing, and fails under CI.

Short mode: 5 cuts; long mode: 30.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from .conftest import (
    ADMIN,
    CollectorProcess,
    check_report_counts_acknowledged,
    enrol,
    fetch_report,
    scale,
)
from .test_agent_kill9 import CONFIG, Agent, drain_and_check
from .test_power_cut import LazyFS, lazyfs  # noqa: F401  (the fixture, reused)


async def export_records(http: aiohttp.ClientSession, base: str, kind: str) -> list[dict[str, Any]]:
    async with http.get(base + "/v1/export", params={"kind": kind},
                        headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.read()
    return [orjson.loads(line) for line in body.splitlines() if line.strip()]


def integrity_of_copy(db: Path, into: Path) -> str:
    """``integrity_check`` of a copy of the buffer as the cut left it (opening the file
    itself would recover and checkpoint its WAL: the agent must meet the cut's state)."""
    into.mkdir()
    if not db.exists():
        return "ok"  # cut before the buffer was made
    for suffix in ("", "-wal"):
        src = Path(f"{db}{suffix}")
        if src.exists():
            shutil.copyfile(src, into / f"{db.name}{suffix}")
    con = sqlite3.connect(into / db.name)
    try:
        return str(con.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        con.close()


@pytest.mark.timeout(1800)
async def test_power_cuts_on_the_box(lazyfs: LazyFS, tmp_path: Path) -> None:  # noqa: F811
    cuts = scale(5, 30)
    rng = random.Random(15)
    collector = CollectorProcess(tmp_path / "collector.db", tmp_path / "collector.log", None,
                                 "--box-rate", "100000", "--box-burst", "100000")
    await collector.start()
    async with aiohttp.ClientSession() as http:
        token = await enrol(http, collector.url, "stb-cut")
        agent = Agent(tmp_path, "stb-cut", collector.url + "/", token)
        # The buffer on LazyFS; the confirmed-answer log (the test's own) stays off it.
        agent.data = lazyfs.mount / "box"
        agent.db = agent.data / "buffer.sqlite3"
        agent.cfg.write_text(CONFIG.format(box="stb-cut", data=agent.data,
                                           url=collector.url + "/", token=token,
                                           sock=agent.sock))
        # Per round: the last session fed, and the answers confirmed when the power went.
        fed_at_cut: list[int] = []
        confirmed_at_cut: list[set[str]] = []
        collector_up = True
        stop = asyncio.Event()
        try:
            for k in range(cuts):
                await agent.start()
                assert not list(agent.data.glob("*.corrupt-*")), "the buffer was set aside"
                viewer = asyncio.create_task(agent.view(stop))
                await asyncio.sleep(rng.uniform(0.3, 2.0))
                assert agent.proc is not None
                agent.proc.send_signal(signal.SIGSTOP)  # the power goes: nothing more written
                confirmed_at_cut.append(set(agent.confirmed()))
                await asyncio.to_thread(lazyfs.clear_cache)
                await agent.kill9()
                stop.set()
                await viewer
                stop.clear()
                # Sessions the viewer fed to the frozen agent count in this round: never
                # received, they are after the last sync too.
                fed_at_cut.append(agent.session_no)
                ok = integrity_of_copy(agent.db, tmp_path / f"cut{k}")
                assert ok == "ok", f"cut {k}: the buffer fails integrity_check: {ok}"
                # The collector down for some rounds: cuts then hit a backlog.
                want_up = rng.random() < 0.6 or k == cuts - 1
                if want_up and not collector_up:
                    await collector.start()
                elif not want_up and collector_up:
                    assert await collector.stop() == 0
                collector_up = want_up
            assert collector_up
            # Drained after the last cut: every confirmed answer at the collector once.
            confirmed_n, stored_n = await drain_and_check(agent, collector.url, http)
            sessions = await export_records(http, collector.url, "session")
            surveys = await export_records(http, collector.url, "survey")
            report = await fetch_report(http, collector.url)
        finally:
            stop.set()
            if agent.proc is not None and agent.proc.returncode is None:
                await agent.kill9()
            await collector.stop()

    assert "is corrupt" not in agent.log.read_text()
    confirmed = agent.confirmed()
    assert confirmed_n == len(confirmed) > 0
    survey_by_id = {str(v["id"]): v for v in surveys}
    session_by_id = {str(s["id"]): s for s in sessions}
    assert len(survey_by_id) == len(surveys) and len(session_by_id) == len(sessions)
    assert stored_n == len(sessions) + len(surveys)
    # The report counts exactly the stored records, each once.
    check_report_counts_acknowledged(report, sessions + surveys)
    # Each confirmed answer is there, as confirmed, and so is the session it followed.
    for aid in confirmed:
        v = survey_by_id[aid]
        assert v["outcome"] == "answered" and v["score"] == 3, v
        assert str(v["session_id"]) in session_by_id, f"answer {aid}: its session was lost"
    # The bound: a session lost in round k ended after the session of the last answer
    # confirmed before cut k (the agent's last sync).
    number = {sid: int(str(s["channel"])[2:]) for sid, s in session_by_id.items()}
    stored_numbers = set(number.values())
    first = 1
    lost_per_cut = []
    for k, (fed, answers) in enumerate(zip(fed_at_cut, confirmed_at_cut, strict=True)):
        synced = [number[str(survey_by_id[a]["session_id"])] for a in answers
                  if first <= number[str(survey_by_id[a]["session_id"])] <= fed]
        last_sync = max(synced, default=first - 1)
        lost = [n for n in range(first, fed + 1) if n not in stored_numbers]
        assert all(n > last_sync for n in lost), (
            f"cut {k}: sessions {[n for n in lost if n <= last_sync]} lost although the "
            f"answer after session {last_sync} was confirmed (synced) before the cut")
        lost_per_cut.append(len(lost))
        first = fed + 1
    # The cuts hit an agent at work: answers were confirmed in most rounds.
    assert sum(1 for k in range(cuts) if confirmed_at_cut[k] - (
        confirmed_at_cut[k - 1] if k else set())) >= cuts // 2
    print(f"\nbox power cuts (LazyFS): {cuts} cuts, {len(confirmed)} answers confirmed, all "
          f"uploaded once; {len(sessions)} sessions stored, lost per cut {lost_per_cut} "
          "(each after the last sync), buffer intact after every cut")
