"""GET /v1/at-risk (contract section 7) against references written here.

* The window's figures and ``last_score`` are recomputed from the records uploaded, as
  section 7 words them.
* ``risk`` is recomputed from the model docs/impact.md describes, fitted by statsmodels'
  ``Logit`` on training rows built here, and averaged over each box's window sessions:
  agreement within 1e-6 (absolute, on a probability), which is well above the two
  fits' convergence tolerances (1e-10 on the coefficients here, 1e-12 in statsmodels'
  Newton) and far below any difference that would change a ranking in these fleets.
* The logistic fit alone is checked against statsmodels on generated data within
  1e-6 · max(1, |coefficient|).
* A planted fleet: boxes whose streams go bad in the last days (half of them never
  asked) fill the top of the list.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import optimize

from collector import at_risk
from collector.at_risk import fit_logit
from collector.settings import Settings
from tests.collector.conftest import ADMIN, Api, batch, iso, serve, session_record, survey_record

TO = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
REGIONS = ["NL-NH", "NL-ZH"]
MODELS = ["X-200", "Z-1"]


# -- the fleet, kept as the test uploads it ------------------------------------------------

@dataclass
class Box:
    box_id: str
    attrs: dict[str, str]
    sessions: list[dict[str, Any]] = field(default_factory=list)
    surveys: list[dict[str, Any]] = field(default_factory=list)


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def upload(api: Api, boxes: list[Box]) -> None:
    for b in boxes:
        token = await api.enrol(b.box_id)
        records = b.sessions + b.surveys
        for i in range(0, len(records), 500):
            status, body = await api.upload(token, batch(b.box_id, records[i:i + 500], box=b.attrs))
            assert status == 200 and not body["rejected"], body


async def at_risk_get(api: Api, **params: str) -> dict[str, Any]:
    resp = await api.client.get("/v1/at-risk", params=params, headers=api.admin)
    assert resp.status == 200, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


# -- the references --------------------------------------------------------------------------

def window_figures(boxes: list[Box], to: datetime, days: int,
                   **attrs: str) -> dict[str, dict[str, Any]]:
    """Section 7's figures per box over the sessions started in [to − days, to) whose
    batch attributes match ``attrs``."""
    lo = to - timedelta(days=days)
    out = {}
    for b in boxes:
        if any(b.attrs.get(k) != v for k, v in attrs.items()):
            continue
        ss = [s for s in b.sessions if lo <= when(s["started_at"]) < to]
        if not ss:
            continue
        q = [s["qos"] for s in ss]
        watch = math.fsum(x["watch_s"] for x in q)
        starts = [x["startup_ms"] / 1000 for x in q if x["startup_ms"] is not None]
        weights = math.fsum(x["watch_s"] for x in q if x["avg_bitrate_kbps"] is not None)
        out[b.box_id] = {
            "sessions": len(ss),
            "rebuffer_pct": 100 * math.fsum(x["rebuffer_s"] for x in q) / watch if watch else None,
            "startup_s": sum(starts) / len(starts) if starts else None,
            "bitrate_mbps": math.fsum(x["avg_bitrate_kbps"] / 1000 * x["watch_s"] for x in q
                                      if x["avg_bitrate_kbps"] is not None) / weights
            if weights else None,
            "failed_share": sum(x["failed"] for x in q) / len(q),
            "no_start_share": sum(x["startup_ms"] is None for x in q) / len(q),
        }
    return out


def last_answers(boxes: list[Box], to: datetime) -> dict[str, tuple[int, datetime]]:
    """Per box: the latest answered survey with answered_at before ``to``, ties to the
    larger id."""
    out = {}
    for b in boxes:
        answered = [v for v in b.surveys if v["outcome"] == "answered" and when(v["answered_at"]) < to]
        if answered:
            v = max(answered, key=lambda v: (when(v["answered_at"]), v["id"].lower()))
            out[b.box_id] = (v["score"], when(v["answered_at"]))
    return out


def reference_risks(boxes: list[Box], to: datetime, days: int,
                    figures: dict[str, dict[str, Any]], cap: int | None = None) -> dict[str, float]:
    """The model as docs/impact.md states it, fitted by statsmodels, and each listed
    box's risk: the mean of the model's probability over its window's sessions."""
    sessions = {s["id"]: s["qos"] for b in boxes for s in b.sessions}
    rows = []
    for b in boxes:
        for v in b.surveys:
            q = sessions.get(v["session_id"] or "")
            if (v["outcome"] != "answered" or q is None or when(v["answered_at"]) >= to
                    or not to - timedelta(days=90) <= when(v["shown_at"]) < to):
                continue
            if q["startup_ms"] is not None and q["avg_bitrate_kbps"] is None:
                continue
            rows.append((when(v["shown_at"]), v["id"].lower(), v["score"], q))
    # The newest answers (by shown_at, then id) up to the cap.
    rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
    if cap is None:
        assert len(rows) <= at_risk.TRAIN_MAX
    else:
        assert len(rows) > cap  # the cap must bite for the test to mean anything
        rows = rows[:cap]
    rows = [(score, q) for _, _, score, q in rows]
    framed = [q for _, q in rows if q["startup_ms"] is not None]
    su_fill = sum(q["startup_ms"] / 1000 for q in framed) / len(framed)
    br_fill = sum(q["avg_bitrate_kbps"] / 1000 for q in framed) / len(framed)
    x = np.array([[1.0,
                   100 * (q["rebuffer_s"] / q["watch_s"] if q["watch_s"] else 0.0),
                   q["startup_ms"] / 1000 if q["startup_ms"] is not None else su_fill,
                   q["avg_bitrate_kbps"] / 1000 if q["startup_ms"] is not None else br_fill,
                   float(q["failed"]), float(q["startup_ms"] is None)] for _, q in rows])
    y = np.array([1.0 if score <= 6 else 0.0 for score, _ in rows])
    assert len(rows) >= at_risk.MIN_ANSWERS and min(y.sum(), len(y) - y.sum()) >= at_risk.MIN_CLASS
    keep = [j for j in range(x.shape[1]) if j == 0 or np.ptp(x[:, j]) > 0]
    fit = sm.Logit(y, x[:, keep]).fit(method="newton", maxiter=200, tol=1e-12, disp=False)
    coef = np.zeros(x.shape[1])
    coef[keep] = fit.params
    lo = to - timedelta(days=days)
    out = {}
    for b in boxes:
        if b.box_id not in figures:
            continue
        ps = []
        for sess in b.sessions:
            if not lo <= when(sess["started_at"]) < to:
                continue
            q = sess["qos"]
            feats = np.array([
                1.0, 100 * (q["rebuffer_s"] / q["watch_s"] if q["watch_s"] else 0.0),
                q["startup_ms"] / 1000 if q["startup_ms"] is not None else su_fill,
                q["avg_bitrate_kbps"] / 1000 if q["avg_bitrate_kbps"] is not None else br_fill,
                float(q["failed"]), float(q["startup_ms"] is None)])
            ps.append(1 / (1 + math.exp(-float(feats @ coef))))
        out[b.box_id] = sum(ps) / len(ps)
    return out


def close(a: float | None, b: float | None, rel: float = 1e-9) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= rel * max(1.0, abs(b))


def check_answer(data: dict[str, Any], boxes: list[Box], to: datetime, days: int,
                 limit: int = 1000, **attrs: str) -> None:
    """The whole answer against the references."""
    figures = window_figures(boxes, to, days, **attrs)
    risks = reference_risks(boxes, to, days, figures)
    last = last_answers(boxes, to)
    assert data["from"] == iso(to - timedelta(days=days)).replace("Z", ".000Z")
    assert data["to"] == iso(to).replace("Z", ".000Z")
    expected_order = sorted(figures, key=lambda b: (-risks[b], b))[:limit]
    got = data["boxes"]
    assert [e["box_id"] for e in got] == expected_order
    for e in got:
        f = figures[e["box_id"]]
        assert abs(e["risk"] - risks[e["box_id"]]) <= 1e-6, e
        assert e["sessions"] == f["sessions"]
        for k in ("rebuffer_pct", "startup_s", "bitrate_mbps", "failed_share"):
            assert close(e[k], f[k]), (k, e, f)
        score, at = last.get(e["box_id"], (None, None))
        assert e["last_score"] == score
        assert (when(e["last_answered_at"]) if e["last_answered_at"] else None) == at


# -- a mixed fleet for the figures --------------------------------------------------------------

def p_detractor(q: dict[str, Any]) -> float:
    ratio = q["rebuffer_s"] / q["watch_s"] if q["watch_s"] else 0.0
    eta = -2.0 + 40 * ratio + 0.3 * ((q["startup_ms"] or 8000) / 1000) + 1.5 * q["failed"]
    return 1 / (1 + math.exp(-eta))


def mixed_fleet(seed: int) -> list[Box]:
    rng = random.Random(seed)
    boxes = []
    for i in range(36):
        b = Box(f"stb-{i:03d}", {"region": REGIONS[i % 2], "model": MODELS[i % 3 == 0],
                                 "firmware": "4.2.1"})
        for _ in range(rng.randint(3, 12)):
            started = TO - timedelta(seconds=rng.randint(60, 20 * 86400))
            watch = rng.choice([0.0, rng.uniform(60, 7200), rng.uniform(600, 3600)])
            framed = rng.random() > 0.1
            s = session_record(
                started=started, watch_s=watch,
                rebuffer_s=watch * rng.choice([0.0, 0.0, 0.002, 0.01, 0.05]) if framed else 0.0,
                startup_ms=rng.randint(300, 9000) if framed else None,
                bitrate=rng.uniform(800, 9000) if framed and rng.random() > 0.08 else None,
                failed=rng.random() < (0.5 if not framed else 0.05))
            b.sessions.append(s)
            if rng.random() < 0.55:
                shown = started + timedelta(seconds=watch + 4)
                r = rng.random()
                outcome = "answered" if r < 0.8 else "dismissed"
                score = (rng.randint(0, 6) if rng.random() < p_detractor(s["qos"])
                         else rng.randint(7, 10)) if outcome == "answered" else None
                b.surveys.append(survey_record(session_id=s["id"], shown=shown, outcome=outcome,
                                               score=score))
        boxes.append(b)
    # Ties: three boxes with identical sessions rank by box_id in code points
    # ("Alpha" < "Zeta" < "alpha"); one of them answered at the same moment twice.
    twin = [session_record(started=TO - timedelta(days=2, hours=h), watch_s=1800.0, rebuffer_s=9.0,
                           startup_ms=2500, bitrate=3000.0) for h in range(3)]
    for name in ("alpha", "Zeta", "Alpha"):
        b = Box(name, {"region": "NL-NH", "model": "X-200", "firmware": "4.2.1"})
        b.sessions = [{**s, "id": session_record()["id"]} for s in twin]
        boxes.append(b)
    at = TO - timedelta(days=3)
    ids = sorted(survey_record()["id"] for _ in range(2))
    boxes[-1].surveys = [survey_record(id=ids[0], session_id=None, shown=at, score=2),
                         survey_record(id=ids[1], session_id=None, shown=at, score=8)]
    # Edges: a session exactly at the window's start counts, one at its end does not; a
    # survey answered at `to` is not the last one before it.
    edge = Box("edge", {"region": "NL-ZH", "model": "Z-1", "firmware": "4.3.0"})
    edge.sessions = [session_record(started=TO - timedelta(days=7), rebuffer_s=30.0),
                     session_record(started=TO, failed=True)]
    edge.surveys = [survey_record(session_id=None, shown=TO - timedelta(days=10), score=5),
                    survey_record(session_id=None, shown=TO - timedelta(seconds=5), score=10)]
    boxes.append(edge)
    return boxes


async def test_figures_risk_order_and_last_score_match_the_reference(api: Api) -> None:
    boxes = mixed_fleet(11)
    await upload(api, boxes)
    data = await at_risk_get(api, to=iso(TO), limit="1000")
    check_answer(data, boxes, TO, 7)
    by_id = {e["box_id"]: e for e in data["boxes"]}
    # The planted edge cases, spelled out (the reference above covers them as well).
    assert by_id["edge"]["sessions"] == 1 and by_id["edge"]["failed_share"] == 0.0
    assert by_id["edge"]["last_score"] == 5
    assert by_id["Alpha"]["last_score"] == 8  # the larger id of two answered at once
    names = [e["box_id"] for e in data["boxes"]]
    assert names.index("Alpha") < names.index("Zeta") < names.index("alpha")
    assert by_id["Alpha"]["risk"] == by_id["Zeta"]["risk"] == by_id["alpha"]["risk"]
    # A longer window, and the filters (matched against each session's batch attributes).
    check_answer(await at_risk_get(api, to=iso(TO), window_days="21"), boxes, TO, 21, limit=50)
    check_answer(await at_risk_get(api, to=iso(TO), region="NL-ZH", limit="1000"),
                 boxes, TO, 7, region="NL-ZH")
    check_answer(await at_risk_get(api, to=iso(TO), model="Z-1", firmware="4.2.1", limit="1000"),
                 boxes, TO, 7, model="Z-1", firmware="4.2.1")
    assert (await at_risk_get(api, to=iso(TO), region="nowhere"))["boxes"] == []


async def test_training_takes_the_newest_answers_up_to_the_cap(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    boxes = mixed_fleet(17)
    await upload(api, boxes)
    figures = window_figures(boxes, TO, 7)
    uncapped = reference_risks(boxes, TO, 7, figures)
    risks = reference_risks(boxes, TO, 7, figures, cap=70)
    monkeypatch.setattr(at_risk, "TRAIN_MAX", 70)
    data = await at_risk_get(api, to=iso(TO), limit="1000")
    assert any(abs(risks[b] - uncapped[b]) > 1e-3 for b in figures)  # the cap matters here
    for e in data["boxes"]:
        assert abs(e["risk"] - risks[e["box_id"]]) <= 1e-6, e


async def test_limit_takes_the_head_of_the_list(api: Api) -> None:
    boxes = mixed_fleet(5)
    await upload(api, boxes)
    full = (await at_risk_get(api, to=iso(TO), limit="1000"))["boxes"]
    assert len(full) > 10
    def same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
        # Sums of floats may differ in the last bit with the order the database adds
        # them in, which its plan chooses.
        return len(a) == len(b) and all(
            x.keys() == y.keys() and all(close(v, y[k], 1e-12) if isinstance(v, float)
                                         else v == y[k] for k, v in x.items())
            for x, y in zip(a, b, strict=True))

    for limit in (1, 3, 10):
        assert same((await at_risk_get(api, to=iso(TO), limit=str(limit)))["boxes"], full[:limit])
    # The default is 50, and the default window 7 days.
    assert same((await at_risk_get(api, to=iso(TO)))["boxes"], full[:50])
    assert not same(full[:3], full[1:4])


async def test_to_defaults_to_now_and_the_clock_is_corrected(api: Api) -> None:
    now = datetime.now(UTC)
    # The box's clock is three hours behind: its session, sent as started 7 days 2 h
    # before the collector's now (outside the window), started 6 days 23 h before it
    # once corrected: in the window.
    token = await api.enrol("slow-clock")
    sent = now - timedelta(hours=3)
    s = session_record(started=sent - timedelta(days=7, hours=-1), rebuffer_s=12.0)
    v = survey_record(session_id=s["id"], shown=sent - timedelta(days=1), score=4)
    status, _ = await api.upload(token, batch("slow-clock", [s, v], sent_at=sent))
    assert status == 200
    data = await at_risk_get(api)
    to = when(data["to"])
    assert abs((to - datetime.now(UTC)).total_seconds()) < 30
    assert when(data["from"]) == to - timedelta(days=7)
    (entry,) = data["boxes"]
    assert entry["box_id"] == "slow-clock" and entry["sessions"] == 1
    assert entry["last_score"] == 4
    expected = when(v["answered_at"]) + timedelta(hours=3)
    assert abs((when(entry["last_answered_at"]) - expected).total_seconds()) < 30
    # Too few answers to learn from: the base detractor rate (here 1 of 1).
    assert entry["risk"] == 1.0


async def test_base_rate_below_the_answers_needed_and_zero_with_none(api: Api) -> None:
    empty = await at_risk_get(api, to=iso(TO))
    assert empty["boxes"] == []
    boxes = []
    for i, score in enumerate([2, 9, 9, 10]):
        b = Box(f"b{i}", {})
        b.sessions = [session_record(started=TO - timedelta(days=1), rebuffer_s=100.0 * i)]
        b.surveys = [survey_record(session_id=b.sessions[0]["id"], shown=TO - timedelta(hours=20),
                                   score=score)]
        boxes.append(b)
    never = Box("never-asked", {})
    never.sessions = [session_record(started=TO - timedelta(days=1), failed=True)]
    boxes.append(never)
    await upload(api, boxes)
    data = await at_risk_get(api, to=iso(TO))
    assert [e["box_id"] for e in data["boxes"]] == ["b0", "b1", "b2", "b3", "never-asked"]
    assert {e["risk"] for e in data["boxes"]} == {0.25}
    # Before every answer: nothing learned, risk 0, the boxes still listed.
    early = await at_risk_get(api, to=iso(TO - timedelta(hours=21)), window_days="1")
    assert [(e["box_id"], e["risk"], e["last_score"]) for e in early["boxes"]] == [
        (f"b{i}", 0.0, None) for i in range(4)] + [("never-asked", 0.0, None)]


async def test_filters_match_each_sessions_own_batch_attributes(api: Api) -> None:
    """A box that moved region mid-window counts, under a region filter, only the
    sessions it sent with that region."""
    token = await api.enrol("mover")
    old = [session_record(started=TO - timedelta(days=3, hours=h), rebuffer_s=0.0) for h in (1, 2)]
    new = [session_record(started=TO - timedelta(days=1), rebuffer_s=120.0, watch_s=1200.0,
                          failed=True)]
    for records, region in ((old, "NL-NH"), (new, "NL-ZH")):
        status, _ = await api.upload(token, batch("mover", records, box={"region": region,
                                                                        "model": "X-200"}))
        assert status == 200
    (zh,) = (await at_risk_get(api, to=iso(TO), region="NL-ZH"))["boxes"]
    assert (zh["sessions"], zh["rebuffer_pct"], zh["failed_share"]) == (1, 10.0, 1.0)
    (nh,) = (await at_risk_get(api, to=iso(TO), region="NL-NH"))["boxes"]
    assert (nh["sessions"], nh["rebuffer_pct"], nh["failed_share"]) == (2, 0.0, 0.0)
    (both,) = (await at_risk_get(api, to=iso(TO), model="X-200"))["boxes"]
    assert both["sessions"] == 3 and both["failed_share"] == 1 / 3
    assert (await at_risk_get(api, to=iso(TO), region="nl-zh"))["boxes"] == []  # exact match


BAD = [
    ("window_days", "0"), ("window_days", "91"), ("window_days", "7.5"), ("window_days", "-1"),
    ("window_days", "seven"), ("window_days", ""), ("limit", "0"), ("limit", "1001"),
    ("limit", "1e3"), ("limit", " 5"), ("to", "yesterday"), ("to", "2026-11-30T12:00:00"),
    ("to", "0001-01-02T00:00:00Z"), ("region", ""), ("model", ""), ("firmware", ""),
    ("from", "2026-11-01T00:00:00Z"), ("channel", "NPO1"), ("bogus", "1"),
]


@pytest.mark.parametrize(("name", "value"), BAD)
async def test_every_bad_parameter_is_400_naming_it(api: Api, name: str, value: str) -> None:
    resp = await api.client.get("/v1/at-risk", params={name: value}, headers=api.admin)
    assert resp.status == 400
    body = await resp.json()
    assert body["error"] == "bad_query"
    assert body["detail"].startswith(f"{name}:"), body
    # The collector keeps serving.
    assert (await api.client.get("/v1/at-risk", headers=api.admin)).status == 200


async def test_repeated_parameter_and_tokens(api: Api) -> None:
    resp = await api.client.get("/v1/at-risk?limit=5&limit=6", headers=api.admin)
    assert resp.status == 400 and (await resp.json())["detail"].startswith("limit:")
    assert (await api.client.get("/v1/at-risk")).status == 401
    token = await api.enrol("some-box")
    resp = await api.client.get("/v1/at-risk", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 403


async def test_compute_at_risk_checks_its_arguments(api: Api) -> None:
    from collector.appkeys import STORE
    from collector.errors import BadQueryError

    store = api.client.server.app[STORE]
    base: dict[str, Any] = {"to": TO, "window_days": 7, "limit": 50, "region": None, "model": None,
                            "firmware": None}
    for key, value in (("window_days", 0), ("limit", 1001), ("region", ""),
                       ("to", datetime(2026, 1, 1))):
        with pytest.raises(BadQueryError, match=f"^{key}:"):
            await at_risk.compute_at_risk(store, **{**base, key: value})
    assert (await at_risk.compute_at_risk(store, **base))["boxes"] == []


# -- the same answer on both databases --------------------------------------------------------

@pytest.mark.postgres
async def test_sqlite_and_postgresql_give_the_same_answer(tmp_path: Path, postgres_url: str) -> None:
    boxes = mixed_fleet(23)
    answers = []
    for url in (f"sqlite:///{tmp_path / 'c.db'}", postgres_url):
        async with serve(Settings(db=url, admin_token=ADMIN)) as client:
            api = Api(client)
            await upload(api, boxes)
            answers.append([await at_risk_get(api, to=iso(TO), limit="1000", **p)
                            for p in ({}, {"window_days": "30"}, {"region": "NL-NH"})])
    lite, pg = answers
    for a, b in zip(lite, pg, strict=True):
        assert [e["box_id"] for e in a["boxes"]] == [e["box_id"] for e in b["boxes"]]
        for x, y in zip(a["boxes"], b["boxes"], strict=True):
            for k, v in x.items():
                assert close(v, y[k], 1e-12) if isinstance(v, float) else v == y[k], (k, x, y)


# -- the fit against statsmodels ------------------------------------------------------------------

def synthetic(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    no_start = rng.random(n) < 0.05
    rb = np.where(rng.random(n) < 0.3, rng.exponential(2.0, n), 0.0)
    su = np.where(no_start, 0.0, rng.lognormal(0.0, 0.5, n) * 1.5)
    br = np.where(no_start, 0.0, rng.uniform(1, 9, n))
    su[no_start] = su[~no_start].mean()
    br[no_start] = br[~no_start].mean()
    failed = (rng.random(n) < np.where(no_start, 0.5, 0.03)).astype(float)
    x = np.column_stack([np.ones(n), rb, su, br, failed, no_start.astype(float)])
    eta = x @ np.array([-1.6, 0.35, 0.25, -0.12, 1.2, 0.8])
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    return x, y


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fit_equals_statsmodels_logit(seed: int) -> None:
    x, y = synthetic(seed, 3000)
    ours = fit_logit(x, y)
    ref = sm.Logit(y, x).fit(method="newton", maxiter=200, tol=1e-12, disp=False)
    assert ours.ridge == 0.0 and ours.dropped == ()
    assert np.all(np.abs(ours.coef - ref.params) <= 1e-6 * np.maximum(1.0, np.abs(ref.params)))


def test_a_column_without_variation_is_dropped_and_the_rest_is_statsmodels() -> None:
    x, y = synthetic(4, 2000)
    x[:, 4] = 0.0  # no failed session among the answers
    x[:, 3] = 2 * x[:, 0]  # a bitrate that never varies: the intercept again
    ours = fit_logit(x, y)
    assert ours.dropped == (3, 4)
    keep = [0, 1, 2, 5]
    ref = sm.Logit(y, x[:, keep]).fit(method="newton", maxiter=200, tol=1e-12, disp=False)
    assert ours.coef[3] == 0.0 and ours.coef[4] == 0.0
    assert np.all(np.abs(ours.coef[keep] - ref.params) <= 1e-6 * np.maximum(1.0, np.abs(ref.params)))


def test_separation_falls_back_to_the_documented_ridge() -> None:
    x, y = synthetic(5, 1500)
    y[x[:, 4] == 1.0] = 1.0  # every failed session's viewer detracts: no finite MLE
    ours = fit_logit(x, y)
    assert ours.ridge == at_risk.RIDGE
    # The reference: the penalised log-likelihood on standardised slopes, maximised by
    # scipy from the words of the docs.
    mean, sd = x[:, 1:].mean(axis=0), x[:, 1:].std(axis=0)
    z = np.column_stack([np.ones(len(y)), (x[:, 1:] - mean) / sd])

    def loss(b: np.ndarray) -> float:
        eta = z @ b
        return float(-(y @ eta - np.logaddexp(0, eta).sum()) + at_risk.RIDGE / 2 * (b[1:] ** 2).sum())

    def grad(b: np.ndarray) -> np.ndarray:
        p = 1 / (1 + np.exp(-(z @ b)))
        g = -(z.T @ (y - p))
        g[1:] += at_risk.RIDGE * b[1:]
        return np.asarray(g)

    res = optimize.minimize(loss, np.zeros(6), jac=grad, method="BFGS", options={"gtol": 1e-10})
    slopes = res.x[1:] / sd
    intercept = res.x[0] - float((slopes * mean).sum())
    assert abs(ours.coef[0] - intercept) <= 1e-5 * max(1.0, abs(intercept))
    assert np.all(np.abs(ours.coef[1:] - slopes) <= 1e-5 * np.maximum(1.0, np.abs(slopes)))
    assert np.all(np.isfinite(ours.coef)) and ours.coef[4] > 0


# -- the planted fleet ------------------------------------------------------------------------------

def planted_fleet(seed: int) -> tuple[list[Box], set[str], set[str]]:
    """80 boxes over 28 days, 2 to 4 evening sessions a day; 10 of them have bad
    streams in the last 3 days, and 5 of those 10 were never asked. Viewers answer after
    about 8 % of sessions, more often detractors after a bad one (6 % of sessions are
    bad at random on every box, so the collector can learn what they cost). Returns
    (boxes, planted ids, never-asked ids)."""
    rng = random.Random(seed)
    boxes: list[Box] = []
    planted = {f"box-{i:02d}" for i in rng.sample(range(80), 10)}
    never = set(sorted(planted)[:5])

    def good(started: datetime) -> dict[str, Any]:
        watch = rng.uniform(600, 5400)
        return session_record(started=started, watch_s=watch,
                              rebuffer_s=watch * rng.choice([0.0, 0.0, 0.0, 0.001]),
                              startup_ms=rng.randint(500, 2000), bitrate=rng.uniform(4000, 8000),
                              failed=rng.random() < 0.01)

    def bad(started: datetime) -> dict[str, Any]:
        watch = rng.uniform(600, 5400)
        framed = rng.random() > 0.15
        return session_record(started=started, watch_s=watch,
                              rebuffer_s=watch * rng.uniform(0.03, 0.12) if framed else 0.0,
                              startup_ms=rng.randint(4000, 12000) if framed else None,
                              bitrate=rng.uniform(800, 2000) if framed else None,
                              failed=rng.random() < (0.6 if not framed else 0.15))

    for i in range(80):
        box_id = f"box-{i:02d}"
        b = Box(box_id, {"region": REGIONS[i % 2], "model": MODELS[i % 2], "firmware": "4.2.1"})
        for day in range(28):
            for _ in range(rng.randint(2, 4)):
                started = TO - timedelta(days=28 - day) + timedelta(hours=rng.uniform(14, 23))
                gone_bad = box_id in planted and day >= 25
                s = bad(started) if gone_bad or rng.random() < 0.06 else good(started)
                b.sessions.append(s)
                if box_id in never or rng.random() > 0.08:
                    continue
                q = s["qos"]
                hurt = (q["rebuffer_s"] > 0.01 * q["watch_s"] or q["failed"]
                        or (q["startup_ms"] or 99999) > 4000)
                score = rng.randint(0, 6) if rng.random() < (0.75 if hurt else 0.12) else rng.randint(7, 10)
                b.surveys.append(survey_record(session_id=s["id"],
                                               shown=started + timedelta(seconds=q["watch_s"] + 5),
                                               score=score))
        boxes.append(b)
    return boxes, planted, never


async def test_planted_bad_streams_fill_the_top_of_the_list(api: Api) -> None:
    boxes, planted, never = planted_fleet(2026)
    await upload(api, boxes)
    data = await at_risk_get(api, to=iso(TO), window_days="3", limit="10")
    top = [e["box_id"] for e in data["boxes"]]
    full = await at_risk_get(api, to=iso(TO), window_days="3", limit="1000")
    assert set(top) == planted, [(e["box_id"], e["risk"], e["rebuffer_pct"], e["failed_share"])
                                 for e in full["boxes"][:15]]
    by_id = {e["box_id"]: e for e in data["boxes"]}
    for box_id in never:
        assert by_id[box_id]["last_score"] is None  # never asked, ranked by what it lived through
    # The asked ones last said they were happy: the list is not a replay of the answers.
    said_happy = [b for b in planted - never if (by_id[b]["last_score"] or 0) >= 7]
    assert said_happy, {b: by_id[b]["last_score"] for b in planted}
    # And the whole list agrees with the reference model.
    check_answer(data, boxes, TO, 3, limit=10)


def test_every_reference_helper_can_fail() -> None:
    """The references are not vacuous: a wrong answer fails check_answer."""
    boxes = mixed_fleet(3)
    figures = window_figures(boxes, TO, 7)
    risks = reference_risks(boxes, TO, 7, figures)
    order = sorted(figures, key=lambda b: (-risks[b], b))
    last = last_answers(boxes, TO)

    def entry(b: str) -> dict[str, Any]:
        f = figures[b]
        score, at = last.get(b, (None, None))
        return {"box_id": b, "risk": risks[b], **{k: f[k] for k in (
            "sessions", "rebuffer_pct", "startup_s", "bitrate_mbps", "failed_share")},
                "last_score": score, "last_answered_at": iso(at) if at else None}

    good: dict[str, Any] = {"from": iso(TO - timedelta(days=7)).replace("Z", ".000Z"),
                            "to": iso(TO).replace("Z", ".000Z"), "boxes": [entry(b) for b in order]}
    check_answer(good, boxes, TO, 7)
    breakers: list[Callable[[dict[str, Any]], None]] = [
        lambda d: d["boxes"].reverse(),
        lambda d: d["boxes"][0].update(risk=d["boxes"][0]["risk"] + 1e-3),
        lambda d: d["boxes"][1].update(sessions=d["boxes"][1]["sessions"] + 1),
        lambda d: d["boxes"][2].update(failed_share=0.5),
    ]
    for breaker in breakers:
        bad = {**good, "boxes": [dict(e) for e in good["boxes"]]}
        breaker(bad)
        with pytest.raises(AssertionError):
            check_answer(bad, boxes, TO, 7)


def test_the_scale_benchmark_runs(tmp_path: Path) -> None:
    """bench/at_risk_scale.py still runs (a tiny size; its figures live in bench/README.md)."""
    import subprocess
    import sys

    import orjson

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, str(root / "bench" / "at_risk_scale.py"), "--backend", "sqlite",
         "--records", "20000", "--runs", "1", "--keep", str(tmp_path / "b.db")],
        capture_output=True, timeout=300, cwd=root, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    out = orjson.loads(done.stdout)
    assert out["stored"]["sessions"] == 20000
    assert out["7 days, limit 50 (the default)"]["boxes"] == 50
    assert out["model"]["kind"] == "logit" and out["model"]["answers"] > 0
    assert set(out["parts_ms (7 days, limit 50)"]) == {
        "training read", "fit", "ranking query", "figures of the 50", "last answers"}
