"""Unit tests: session cookies, CSRF, the period-over-period test, CSV cells, periods."""

from __future__ import annotations

import math

import pytest
from aiohttp.test_utils import make_mocked_request
from scipy import stats as sps

from collector.dashboard.analysis import Counts, compare, periods, wilson95
from collector.dashboard.auth import Signer
from collector.dashboard.views import is_tls, same_origin
from collector.export import csv_cell
from protocol.timefmt import MIN_US
from protocol.units import DAY_US
from tests import reference as contract
from tests.collector.conftest import ADMIN, Api

KEY = b"k" * 32
ADMIN_HASH = b"h" * 32


def test_session_cookie_round_trip_and_tampering() -> None:
    signer = Signer(KEY, ADMIN_HASH, 3600)
    value, session = signer.new_session(now=1000.0)
    back = signer.read_session(value, now=1000.0 + 3599)
    assert back == session
    assert signer.read_session(value, now=1000.0 + 3600) is None  # expired
    payload, mac = value.split(".")
    assert signer.read_session(payload + "." + mac[::-1], now=1000.0) is None
    assert signer.read_session(payload[:-2] + "AA." + mac, now=1000.0) is None
    assert signer.read_session("", now=1000.0) is None and signer.read_session(None) is None
    # Another key (another data store) or a new admin token: the cookie is dead.
    assert Signer(b"x" * 32, ADMIN_HASH, 3600).read_session(value, now=1000.0) is None
    assert Signer(KEY, b"n" * 32, 3600).read_session(value, now=1000.0) is None
    # Another instance with the same key and admin token accepts it.
    assert Signer(KEY, ADMIN_HASH, 3600).read_session(value, now=1000.0) == session


def test_csrf_tokens() -> None:
    signer = Signer(KEY, ADMIN_HASH, 3600)
    _, one = signer.new_session()
    _, two = signer.new_session()
    assert signer.check_csrf(one, one.csrf)
    assert not signer.check_csrf(one, two.csrf)
    assert not signer.check_csrf(one, None)
    token = signer.login_token(now=5000.0)
    assert signer.check_login_token(token, now=5000.0 + 60)
    assert not signer.check_login_token(token, now=5000.0 + 7200)
    assert not signer.check_login_token(token.replace(".", "x", 1), now=5000.0)
    assert not Signer(b"x" * 32, ADMIN_HASH, 3600).check_login_token(token, now=5000.0)


@pytest.mark.parametrize(("headers", "secure"), [
    ({}, False), ({"X-Forwarded-Proto": "https"}, True), ({"X-Forwarded-Proto": "http"}, False),
])
def test_tls_detection(headers: dict[str, str], secure: bool) -> None:
    req = make_mocked_request("POST", "/dashboard/login", headers={"Host": "c.example", **headers})
    assert is_tls(req) is secure


def test_origin_check() -> None:
    def req(**h: str) -> bool:
        return same_origin(make_mocked_request("POST", "/", headers={"Host": "c.example:8080", **h}))

    assert req(Origin="http://c.example:8080")
    assert not req(Origin="http://evil.example")
    assert not req(Origin="null")
    assert req(Referer="http://c.example:8080/dashboard")
    assert not req(Referer="http://c.example:8080.evil.example/")
    assert req()  # no browser: the CSRF token decides


def test_comparison_is_the_z_test_on_adjusted_wald() -> None:
    now, before = Counts(400, 300, 150, 60), Counts(400, 300, 120, 90)
    result = compare(now, before)
    # The estimates and variances from §4's words (tests/reference.py), not the collector's.
    e1, v1 = contract.adjusted_wald(150, 60, 300)
    e2, v2 = contract.adjusted_wald(120, 90, 300)
    z = (e1 - e2) / math.sqrt(v1 + v2)
    assert result["z"] == pytest.approx(z)
    assert result["p_value"] == pytest.approx(math.erfc(abs(z) / math.sqrt(2)))
    assert result["significant"] and result["verdict"] == "significant rise"
    assert result["change"] == pytest.approx(100 * (90 / 300) - 100 * (30 / 300))
    small = compare(Counts(10, 10, 5, 3), Counts(10, 10, 4, 3))
    assert not small["significant"] and small["verdict"] == "no significant change"
    assert small["change"] == pytest.approx(10.0)
    empty = compare(Counts(5, 0, 0, 0), Counts(5, 4, 1, 1))
    assert empty["z"] is None and not empty["significant"]


def test_periods_and_wilson() -> None:
    assert periods(0, 3 * DAY_US, "day") == [(0, DAY_US), (DAY_US, 2 * DAY_US), (2 * DAY_US, 3 * DAY_US)]
    assert periods(0, 10 * DAY_US, "week") == [(0, 7 * DAY_US), (7 * DAY_US, 10 * DAY_US)]
    # Too many points: whole weeks instead, at most 400 of them.
    long = periods(0, 1000 * DAY_US, "day")
    assert len(long) == 143 and long[0] == (0, 7 * DAY_US) and long[-1][1] == 1000 * DAY_US
    assert len(periods(MIN_US, 253402300799000000, "day")) <= 400
    assert wilson95(0, 0) is None


@pytest.mark.parametrize(("k", "n"), [(0, 10), (1, 10), (5, 10), (10, 10), (3, 7), (0, 1), (1, 1),
                                      (17, 400), (399, 400), (250, 1000), (1, 100000)])
def test_wilson_interval_is_scipys(k: int, n: int) -> None:
    got = wilson95(k, n)
    assert got is not None
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    # Both take z = norm.ppf(0.975) = 1.959964...: the ends agree to rounding (1.96 instead
    # moves them by up to 1e-5, a wrong term by far more).
    assert got == pytest.approx([ci.low, ci.high], abs=1e-12)
    # And exactly: Wilson's ends are the roots in p of (k/n - p)^2 = z^2 p (1 - p) / n.
    z, ph = float(sps.norm.ppf(0.975)), k / n
    a, b, c = 1 + z * z / n, -(2 * ph + z * z / n), ph * ph
    root = math.sqrt(b * b - 4 * a * c)
    assert got == pytest.approx([(-b - root) / (2 * a), (-b + root) / (2 * a)], abs=1e-12)


@pytest.mark.parametrize(("value", "cell"), [
    # Contract section 5: quoted, and the first four get a leading '.
    ("=HYPERLINK(1)", "\"'=HYPERLINK(1)\""), ("+1", "\"'+1\""), ("-x", "\"'-x\""),
    ("@a", "\"'@a\""), ("\tx", "\"\tx\""), ("\rx", "\"\rx\""), ("a,b", "\"a,b\""),
    ("a;b", "\"a;b\""), ('say "hi"', '"say ""hi"""'), ("a\nb", "\"a\nb\""),
    # Numbers as numbers, whatever their sign.
    ("NPO1", "NPO1"), (None, ""), (True, "true"), (-0.5, "-0.5"), (3, "3"),
])
def test_csv_cells_defuse_formulas(value: object, cell: str) -> None:
    assert csv_cell(value) == cell


async def test_cookie_is_secure_behind_tls(api: Api) -> None:
    page = await (await api.client.get("/dashboard/login")).text()
    csrf = page.split('name="csrf" value="')[1].split('"')[0]
    host = f"{api.client.host}:{api.client.port}"
    resp = await api.client.post(
        "/dashboard/login", data={"csrf": csrf, "token": ADMIN}, allow_redirects=False,
        headers={"X-Forwarded-Proto": "https", "Origin": f"https://{host}"})
    assert resp.status == 303
    cookie = resp.headers["Set-Cookie"]
    for attr in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/dashboard", "Max-Age=43200"):
        assert attr in cookie
    # Plain HTTP with an https Origin is another origin: refused.
    resp = await api.client.post(
        "/dashboard/login", data={"csrf": csrf, "token": ADMIN}, allow_redirects=False,
        headers={"Origin": f"https://{host}"})
    assert resp.status == 403
