"""The dashboard's handlers: login and logout, the page, its data API and the CSV."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from protocol import CONTENT_TYPES, REASONS, to_micros
from protocol.timefmt import MAX_US, MIN_US
from protocol.units import DAY_US

from ..appkeys import ADMIN_HASH, SETTINGS, STORE
from ..at_risk import compute_at_risk, parse_at_risk_query
from ..errors import BadQueryError
from ..export import csv_line
from ..impact import compute_impact
from ..metrics import BY_NAME, METRICS, NAMES
from ..model import Filters
from ..query import parse_filters
from ..report import compute_report_data
from ..storage.base import BadQuality, DetractorRow
from ..tokens import same_token
from ..web import ApiError, json_response, require_admin
from . import html as h
from .analysis import (
    Counts,
    compare,
    default_range,
    iso_us,
    previous_period,
    qos_responses,
    response_by_qos,
    survey_counts,
    timeline,
    unanswered_counts,
)
from .auth import COOKIE, Session, Signer
from .keys import LOGIN_LIMITER, SIGNER
from .quality import (
    DEFAULT_RISK_DAYS,
    PAGE_AT_RISK,
    RISK_WINDOWS,
    SMALL_N,
    at_risk_section,
    costs_section,
    is_small_n,
    metric_rows,
    reasons_ranked,
    small_n_flags,
    unknown_rows,
    whatif,
)

#: The Content-Security-Policy of every dashboard page: scripts, styles and fonts only
#: from this collector, no inline script or style, no framing, forms only to itself.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on
    # our own form posts, and the Origin check could not tell them from a forgery.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
PAGE_DETRACTORS = 50
#: Values suggested per filter field.
SUGGESTIONS = 500
CSV_DETRACTORS = 100_000
#: The at-risk CSV: contract §7's largest ``limit``.
CSV_AT_RISK = 1000
BAD = BadQuality()
#: The largest dashboard form accepted: a login form is a few hundred bytes.
FORM_MAX_BYTES = 16 * 1024
LOGOUT_META = "dashboard_logout:"


def html_response(body: str, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """An HTML answer with the dashboard's security headers."""
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8",
                        headers={**SECURITY_HEADERS, **(headers or {})})


def is_tls(request: web.Request) -> bool:
    """Whether the browser reached us over TLS (directly or through a proxy that says so)."""
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or proto == "https"


def same_origin(request: web.Request) -> bool:
    """A state-changing form must come from this origin: ``Origin`` (or, where a browser
    left it out, ``Referer``) must name our scheme, host and port."""
    expected = f"{'https' if is_tls(request) else 'http'}://{request.host}".lower()
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin.lower() == expected
    referer = request.headers.get("Referer")
    if referer is not None:
        return referer.lower().startswith(expected + "/")
    return True  # not a browser: the CSRF token still has to match


async def current_session(request: web.Request) -> Session | None:
    """The logged-in session, or None (no, forged, expired or logged-out cookie)."""
    session = request.app[SIGNER].read_session(request.cookies.get(COOKIE))
    if session is None:
        return None
    # Logged-out sessions are kept in the store, so logging out holds on every instance.
    if await request.app[STORE].get_meta(LOGOUT_META + session.sid) is not None:
        return None
    return session


async def require_session(request: web.Request) -> None:
    """For the data endpoints: a dashboard session, or the admin bearer token (for
    scripts); else 401 (403 with a box token) in the contract's error form."""
    if "Authorization" in request.headers:
        await require_admin(request)
        return
    if await current_session(request) is None:
        raise ApiError(401, "unauthorized",
                       "dashboard: log in first (POST /dashboard/login) or send the admin token")


def _set_cookie(resp: web.StreamResponse, request: web.Request, value: str, max_age: int) -> None:
    resp.set_cookie(COOKIE, value, max_age=max_age, path="/dashboard", httponly=True,
                    samesite="Strict", secure=is_tls(request))


# -- login and logout ------------------------------------------------------------------------------

def _login_page(signer: Signer, message: str | None = None) -> str:
    note = f'<p class="error" role="alert">{h.e(message)}</p>' if message else ""
    body = (
        '<main class="login"><h1>NPS dashboard</h1>'
        "<p>Sign in with the collector's admin token.</p>"
        f"{note}"
        '<form method="post" action="/dashboard/login">'
        f'<input type="hidden" name="csrf" value="{h.e(signer.login_token())}">'
        '<label for="token">Admin token</label>'
        '<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>'
        '<button type="submit">Sign in</button></form></main>'
    )
    return h.page("Sign in · NPS dashboard", body)


async def _form(request: web.Request) -> Any:
    """The posted form; a body aiohttp cannot parse as one (a multipart type without a
    boundary, say) is the client's error, 400, not a 500.

    Bounded like an upload's body: it must arrive within ``--body-timeout`` (else 408,
    so that clients trickling a login form cannot hold connections open), and a form
    is small: at most :data:`FORM_MAX_BYTES`, with its length said up front (411)."""
    length = request.content_length
    if length is None and request.body_exists:
        # Browsers send a form's length; without one the only bound would be the app's
        # 2 MiB upload limit.
        raise ApiError(411, "length_required", "body: a form must be sent with Content-Length")
    if length is not None and length > FORM_MAX_BYTES:
        raise ApiError(413, "too_large", f"body: a form is at most {FORM_MAX_BYTES} bytes, "
                                         f"not {length}")
    try:
        async with asyncio.timeout(request.app[SETTINGS].body_timeout_s):
            return await request.post()
    except TimeoutError:
        raise ApiError(408, "timeout", "body: not received in time") from None
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        raise ApiError(400, "malformed", f"body: not a form ({exc})") from None


async def get_login(request: web.Request) -> web.Response:
    """The login form."""
    return html_response(_login_page(request.app[SIGNER]))


async def post_login(request: web.Request) -> web.Response:
    """Exchange the admin token for a session cookie.

    Attempts are rate-limited per client address, before the form is read: guessing the
    token must take forever. The address is the TCP peer's; ``X-Forwarded-For`` is not
    trusted (a client could name a fresh address each time), so behind a reverse proxy
    all logins share the proxy's limit."""
    wait_s = request.app[LOGIN_LIMITER].take(request.remote or "unknown")
    if wait_s:
        return html_response(_login_page(request.app[SIGNER], "Too many sign-in attempts from "
                                          f"this address; try again in {wait_s} s."),
                             status=429, headers={"Retry-After": str(wait_s)})
    signer = request.app[SIGNER]
    form = await _form(request)
    csrf = form.get("csrf")
    if not same_origin(request) or not signer.check_login_token(csrf if isinstance(csrf, str) else None):
        return html_response(_login_page(signer, "The form expired or came from elsewhere; try again."),
                             status=403)
    token = form.get("token")
    if not isinstance(token, str) or not same_token(token, request.app[ADMIN_HASH]):
        return html_response(_login_page(signer, "That is not the admin token."), status=401)
    value, _ = signer.new_session()
    resp = web.Response(status=303, headers={"Location": "/dashboard", **SECURITY_HEADERS})
    _set_cookie(resp, request, value, signer.lifetime_s)
    return resp


async def post_logout(request: web.Request) -> web.Response:
    """End the session here and on every instance."""
    session = await current_session(request)
    form = await _form(request)
    csrf = form.get("csrf")
    if session is not None:
        if not same_origin(request) or not request.app[SIGNER].check_csrf(
                session, csrf if isinstance(csrf, str) else None):
            return html_response(h.page("Forbidden", "<main><p>Bad form token.</p></main>"), status=403)
        await request.app[STORE].set_meta_once(LOGOUT_META + session.sid, str(session.expires))
    resp = web.Response(status=303, headers={"Location": "/dashboard/login", **SECURITY_HEADERS})
    resp.del_cookie(COOKIE, path="/dashboard")
    return resp


# -- filters ------------------------------------------------------------------------------------------

def _day(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadQueryError(f"{name}: must be a day, YYYY-MM-DD") from None


def page_filters(query: Mapping[str, str]) -> tuple[Filters, dict[str, str], str]:
    """The page's form (days, inclusive) as report filters, the form's values, granularity."""
    known = ("from_day", "to_day", "region", "model", "firmware", "channel", "content_type",
             "granularity", "risk_days")
    for key in query:
        if key not in known:
            raise BadQueryError(f"{key}: unknown parameter")
    values = {k: query.get(k, "").strip() for k in known}
    lo, hi = default_range(datetime.now(UTC))
    span = timedelta(microseconds=hi - lo - DAY_US)  # 27 days: 28 days, both ends included
    given_first = _day(values["from_day"], "from_day") if values["from_day"] else None
    given_last = _day(values["to_day"], "to_day") if values["to_day"] else None
    if given_first is not None and given_last is not None:
        first, last = sorted((given_first, given_last))  # typed in the wrong order: the range meant
    elif given_first is not None:
        first, last = given_first, max(given_first, date.fromisoformat(iso_us(hi - 1)[:10]))
    elif given_last is not None:
        first, last = (given_last - span if given_last - date.min > span else date.min), given_last
    else:
        first, last = date.fromisoformat(iso_us(lo)[:10]), date.fromisoformat(iso_us(hi - 1)[:10])
    params: dict[str, str] = {
        "from": f"{first.isoformat()}T00:00:00Z",
        "to": (f"{(last + timedelta(days=1)).isoformat()}T00:00:00Z" if last < date.max
               else "9999-12-31T23:59:59.999999Z"),
    }
    for k in ("region", "model", "firmware", "channel", "content_type"):
        if values[k]:
            params[k] = values[k]
    granularity = values["granularity"] or "day"
    if granularity not in ("day", "week"):
        raise BadQueryError("granularity: must be day or week")
    filters = parse_filters(params, params.keys())
    assert filters.from_us is not None and filters.to_us is not None
    values["from_day"] = iso_us(filters.from_us)[:10]
    values["to_day"] = iso_us(filters.to_us - 1)[:10]
    values["granularity"] = granularity
    values["risk_days"] = str(risk_days(values["risk_days"] or str(DEFAULT_RISK_DAYS)))
    return filters, values, granularity


def risk_days(value: str) -> int:
    """The at-risk window of the page's form: one of :data:`RISK_WINDOWS` days."""
    if value not in {str(d) for d in RISK_WINDOWS}:
        raise BadQueryError(f"risk_days: must be one of {', '.join(map(str, RISK_WINDOWS))}")
    return int(value)


#: The segment filters matched against the known values, and what the page calls them.
SEGMENT_FILTERS = {"region": "region", "model": "model", "firmware": "firmware", "channel": "channel"}


def match_known(filters: Filters, values: dict[str, str], known: Mapping[str, list[str]]
                ) -> tuple[Filters, list[str]]:
    """Segment filters typed in another case than stored are matched to the stored value
    (``nl-zh`` finds ``NL-ZH``); a value matching none is kept, and the notes say so.

    The store compares exactly, as ``/v1/report`` does; the page matches here, where it
    knows the values, and tells the operator what it did."""
    notes: list[str] = []
    changes: dict[str, str] = {}
    for key, label in SEGMENT_FILTERS.items():
        typed = getattr(filters, key)
        options = known.get(key)
        if typed is None or options is None or typed in options:
            continue
        same = [v for v in options if v.casefold() == typed.casefold()]
        if len(same) == 1:
            changes[key] = values[key] = same[0]
            notes.append(f"{label} {typed!r} matched the stored {same[0]!r} (case is ignored).")
        elif len(same) > 1:
            notes.append(f"{label} {typed!r} matches {', '.join(map(repr, same))} but for case; "
                         "type one of them exactly.")
        else:
            shown = ", ".join(options[:20]) + (" …" if len(options) > 20 else "")
            notes.append(f"No {label} {typed!r} is known, so nothing matches; known: {shown or 'none'}.")
    return dataclasses.replace(
        filters, region=changes.get("region", filters.region), model=changes.get("model", filters.model),
        firmware=changes.get("firmware", filters.firmware),
        channel=changes.get("channel", filters.channel)), notes


def api_filters(query: Mapping[str, str], keys: Any) -> tuple[Filters, str]:
    """The data API's query: the report's filters plus ``granularity``; a range is required
    (the default is the last 28 days)."""
    filters = parse_filters(query, keys, allowed_extra=("granularity",))
    granularity = query.get("granularity", "day")
    if granularity not in ("day", "week"):
        raise BadQueryError("granularity: must be day or week")
    if filters.from_us is None or filters.to_us is None:
        # One end missing: 28 days up to ``to``, or from ``from`` to the end of today.
        lo, hi = default_range(datetime.now(UTC))
        to_us = filters.to_us if filters.to_us is not None else min(
            MAX_US, max(hi, (filters.from_us or 0) + DAY_US))
        from_us = filters.from_us if filters.from_us is not None else max(MIN_US, to_us - (hi - lo))
        filters = dataclasses.replace(filters, from_us=from_us, to_us=to_us)
    return filters, granularity


def report_query(filters: Filters) -> dict[str, str]:
    """The ``/v1/report`` query that gives the same figures as ``filters``."""
    out: dict[str, str] = {}
    if filters.from_us is not None:
        out["from"] = iso_us(filters.from_us)
    if filters.to_us is not None:
        out["to"] = iso_us(filters.to_us)
    for k in ("region", "model", "firmware", "channel", "content_type"):
        v = getattr(filters, k)
        if v is not None:
            out[k] = v
    return out


# -- figures -------------------------------------------------------------------------------------------

async def dashboard_data(request: web.Request, filters: Filters, granularity: str) -> dict[str, Any]:
    """Everything the page shows, from the store's report queries."""
    store = request.app[STORE]
    prev = previous_period(filters)
    # The report from its counts, kept to find what falls in no bucket (the "unknown" rows).
    counts, unanswered, prev_counts, line = await asyncio.gather(
        store.report_data(filters), unanswered_counts(store, filters), survey_counts(store, prev),
        timeline(store, filters, granularity),
    )
    report = compute_report_data(counts)
    responses = qos_responses(report, unanswered)
    assert prev.from_us is not None and prev.to_us is not None
    return {
        "filters": report_query(filters),
        "granularity": granularity,
        "report": report,
        "timeline": line,
        "response_by_qos": response_by_qos(responses, report),
        "unknown_by_qos": unknown_rows(counts, report, responses),
        "small_n": small_n_flags(report),
        "reasons_order": reasons_ranked(report["reasons"], REASONS),
        "comparison": {
            "previous_period": {"from": iso_us(prev.from_us), "to": iso_us(prev.to_us)},
            **compare(Counts.of_report(report), prev_counts),
        },
        "bucket_labels": {m.name: [h.bucket_label(m.name, i) for i in range(len(m.buckets))]
                          for m in METRICS},
    }


async def get_data(request: web.Request) -> web.Response:
    """``GET /dashboard/api/data``: the figures as JSON."""
    await require_session(request)
    filters, granularity = api_filters(request.query, [k for k, _ in request.query.items()])
    resp = json_response(await dashboard_data(request, filters, granularity))
    resp.headers.update(SECURITY_HEADERS)
    return resp


async def impact_data(request: web.Request, filters: Filters) -> dict[str, Any]:
    """What the "What quality costs" section shows: contract §6's figures as they are, and
    the what-if's points at every slider step, from the same rows."""
    store = request.app[STORE]
    # One read of the survey rows for both: the estimator's rows are the what-if's.
    data = await store.impact_data(filters)
    impact = await compute_impact(store, filters, data)
    rows = data.rows
    # Sorting a few hundred thousand values takes a second: off the event loop, so that
    # uploads keep being answered meanwhile.
    steps = await asyncio.to_thread(lambda: whatif(metric_rows(
        rows.rebuffer_ratio.tolist(), rows.startup_ms.tolist(), rows.avg_bitrate_kbps.tolist()), impact))
    return {"filters": report_query(filters), "impact": impact, "whatif": steps}


async def get_impact(request: web.Request) -> web.Response:
    """``GET /dashboard/api/impact``: the section's figures as JSON (the report's filters)."""
    await require_session(request)
    filters, _ = api_filters(request.query, [k for k, _ in request.query.items()])
    resp = json_response(await impact_data(request, filters))
    resp.headers.update(SECURITY_HEADERS)
    return resp


def at_risk_query(query: Mapping[str, str], keys: Any, default_limit: int) -> dict[str, Any]:
    """``compute_at_risk``'s keyword arguments from contract §7's query (the API's own
    parser), with this page's default ``limit``."""
    out = parse_at_risk_query(query, keys)
    if "limit" not in query:
        out["limit"] = default_limit
    return out


def risk_end_us(filters: Filters, now: datetime | None = None) -> int:
    """Where the page's at-risk window ends: where the period ends, or now (to the second)
    if that is sooner; the page and its CSV link then name the same window."""
    now_us = to_micros((now or datetime.now(UTC)).replace(microsecond=0))
    return now_us if filters.to_us is None else min(filters.to_us, now_us)


def at_risk_link(filters: Filters, window_days: int, end_us: int) -> str:
    """The at-risk query of the page's filters, for a window ending at ``end_us``."""
    q: dict[str, str] = {"window_days": str(window_days), "to": iso_us(end_us)}
    for key in ("region", "model", "firmware"):
        value = getattr(filters, key)
        if value is not None:
            q[key] = value
    return urlencode(q)


async def get_at_risk(request: web.Request) -> web.Response:
    """``GET /dashboard/api/at-risk``: contract §7's answer, for the session cookie."""
    await require_session(request)
    args = at_risk_query(request.query, [k for k, _ in request.query.items()], PAGE_AT_RISK)
    resp = json_response(await compute_at_risk(request.app[STORE], **args))
    resp.headers.update(SECURITY_HEADERS)
    return resp


AT_RISK_COLUMNS = ("rank", "box_id", "risk", "sessions", "rebuffer_pct", "startup_s", "bitrate_mbps",
                   "failed_share", "last_score", "last_answered_at")


async def get_at_risk_csv(request: web.Request) -> web.Response:
    """``GET /dashboard/at-risk.csv``: the call list, up to 1000 boxes (``limit``)."""
    await require_session(request)
    args = at_risk_query(request.query, [k for k, _ in request.query.items()], CSV_AT_RISK)
    answer = await compute_at_risk(request.app[STORE], **args)
    # The same cells as /v1/export's CSV (contract section 5: no cell a spreadsheet runs).
    lines = [csv_line(AT_RISK_COLUMNS)]
    lines.extend(csv_line((rank, *(b[k] for k in AT_RISK_COLUMNS[1:])))
                 for rank, b in enumerate(answer["boxes"], 1))
    return web.Response(
        text="".join(lines), content_type="text/csv", charset="utf-8",
        headers={**SECURITY_HEADERS, "Content-Disposition": 'attachment; filename="at-risk.csv"'},
    )


async def _detractors(request: web.Request, filters: Filters, limit: int) -> list[DetractorRow]:
    return await request.app[STORE].bad_detractors(filters, BAD, limit)


CSV_COLUMNS = ("shown_at", "box_id", "score", "reason", "region", "model", "firmware",
               "survey_id", "session_id", "channel", "content_type", "startup_ms", "watch_s",
               "rebuffer_count", "rebuffer_ratio", "avg_bitrate_kbps", "failed")


async def get_detractors_csv(request: web.Request) -> web.Response:
    """``GET /dashboard/detractors.csv``: the call-back list for the report's filters."""
    await require_session(request)
    filters, _ = api_filters(request.query, [k for k, _ in request.query.items()])
    rows = await _detractors(request, filters, CSV_DETRACTORS)
    # The same cells as /v1/export's CSV (contract section 5: no cell a spreadsheet runs).
    lines = [csv_line(CSV_COLUMNS)]
    lines.extend(csv_line((
        iso_us(r.shown_us), r.box_id, r.score, r.reason, r.region, r.model, r.firmware,
        r.survey_id, r.session_id, r.channel, r.content_type, r.startup_ms, r.watch_s,
        r.rebuffer_count, r.rebuffer_ratio, r.avg_bitrate_kbps, r.failed)) for r in rows)
    return web.Response(
        text="".join(lines), content_type="text/csv", charset="utf-8",
        headers={**SECURITY_HEADERS, "Content-Disposition": 'attachment; filename="detractors.csv"'},
    )


# -- the page ------------------------------------------------------------------------------------------

def _filter_form(values: Mapping[str, str], known: Mapping[str, list[str]]) -> str:
    def text(name: str, label: str, kind: str = "text") -> str:
        if name not in known:
            return (f'<label>{h.e(label)}<input type="{kind}" name="{name}" id="f-{name}" '
                    f'value="{h.e(values.get(name, ""))}"></label>')
        # A text input with suggestions: the values seen so far, any other typed freely.
        options = "".join(f'<option value="{h.e(v)}"></option>' for v in known[name])
        return (f'<label>{h.e(label)}<input type="{kind}" name="{name}" id="f-{name}" '
                f'list="dl-{name}" autocomplete="off" value="{h.e(values.get(name, ""))}">'
                f'<datalist id="dl-{name}">{options}</datalist></label>')

    ct = values.get("content_type", "")
    options = "".join(
        f'<option value="{h.e(c)}"{" selected" if c == ct else ""}>{h.e(c or "any")}</option>'
        for c in ("", *CONTENT_TYPES)
    )
    gran = values.get("granularity", "day")
    gopts = "".join(f'<option value="{g}"{" selected" if g == gran else ""}>{g}</option>'
                    for g in ("day", "week"))
    return (
        '<form class="filters" method="get" action="/dashboard" id="filters">'
        f'{text("from_day", "From", "date")}{text("to_day", "To (inclusive)", "date")}'
        f'{text("region", "Region")}{text("model", "Model")}{text("firmware", "Firmware")}'
        f'{text("channel", "Channel")}'
        f'<label>Content<select name="content_type" id="f-content_type">{options}</select></label>'
        f'<label>Per<select name="granularity" id="f-granularity">{gopts}</select></label>'
        '<button type="submit" id="apply">Apply</button>'
        '<a class="button secondary" href="/dashboard">Reset</a></form>'
    )


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _kpis(data: Mapping[str, Any]) -> str:
    r = data["report"]
    c = data["comparison"]
    change = c["change"]
    if change is None:
        delta = f'<span class="delta neutral" id="cmp-verdict">{h.e(c["verdict"])}</span>'
    else:
        cls = "neutral" if not c["significant"] else ("up" if change > 0 else "down")
        delta = (f'<span class="delta {cls}" id="cmp-verdict">{change:+.1f} vs previous period: '
                 f'{h.e(c["verdict"])} ({_p(c["p_value"])})</span>')
    return (
        '<section class="kpis">'
        f'<div class="kpi"><span class="label">NPS</span><span class="value" id="kpi-nps">{h.fmt_nps(r["nps"])}</span>'
        f'<span class="sub">95 % CI <span id="kpi-ci">{h.fmt_ci(r["nps_ci95"])}</span></span>{delta}</div>'
        f'<div class="kpi"><span class="label">Answers</span><span class="value" id="kpi-answered">{r["surveys"]["answered"]}</span>'
        f'<span class="sub"><span id="kpi-promoters">{r["promoters"]}</span> promoters · '
        f'<span id="kpi-passives">{r["passives"]}</span> passives · '
        f'<span id="kpi-detractors">{r["detractors"]}</span> detractors</span></div>'
        f'<div class="kpi"><span class="label">Response rate</span><span class="value" id="kpi-response-rate">{h.fmt_pct(r["surveys"]["response_rate"])}</span>'
        f'<span class="sub"><span id="kpi-shown">{r["surveys"]["shown"]}</span> shown · '
        f'{r["surveys"]["dismissed"]} dismissed · {r["surveys"]["timeout"]} timed out</span></div>'
        f'<div class="kpi"><span class="label">Sessions</span><span class="value" id="kpi-sessions">{r["sessions"]["count"]}</span>'
        f'<span class="sub">{r["sessions"]["surveyed"]} surveyed · '
        f'<span id="kpi-failed">{r["sessions"]["failed"]}</span> failed · no picture: '
        f'<span id="kpi-exited">{r["sessions"]["exited_before_start"]}</span> left waiting, '
        f'<span id="kpi-start-failures">{r["sessions"]["start_failures"]}</span> failed to start</span></div>'
        "</section>"
    )


def _qos_tables(data: Mapping[str, Any]) -> str:
    out = []
    for m in NAMES:
        rows = []
        for i, (b, rr) in enumerate(zip(data["report"]["by_qos"][m], data["response_by_qos"][m], strict=True)):
            small = data["small_n"][m][i]
            rows.append(
                f'<tr data-metric="{m}" data-bucket="{i}"{_small_attrs(small, b["n"])}>'
                f'<th scope="row">{h.e(h.bucket_label(m, i))}</th>'
                f'<td class="num">{b["sessions"]}</td><td class="num">{rr["shown"]}</td>'
                f'<td class="num rr">{h.fmt_pct(rr["response_rate"])}</td>'
                f'<td class="num n">{b["n"]}</td><td class="num nps">{h.fmt_nps(b["nps"])}</td>'
                f'<td class="num ci">{h.fmt_ci(b["nps_ci95"])}</td></tr>'
            )
        u = data["unknown_by_qos"][m]
        rows.append(
            f'<tr data-metric="{m}" data-bucket="unknown" class="unknown'
            f'{" small-n" if is_small_n(u["n"], u["nps"], u["nps_ci95"]) else ""}">'
            f'<th scope="row">unknown <span class="sub">({h.e(BY_NAME[m].unknown_why)})</span></th>'
            f'<td class="num">{u["sessions"]}</td><td class="num">{u["shown"]}</td>'
            f'<td class="num rr">{h.fmt_pct(u["response_rate"])}</td>'
            f'<td class="num n">{u["n"]}</td><td class="num nps">{h.fmt_nps(u["nps"])}</td>'
            f'<td class="num ci">{h.fmt_ci(u["nps_ci95"])}</td></tr>'
        )
        corr = data["report"]["correlation"][m]
        rho = "—" if corr["spearman"] is None else f'{corr["spearman"]:.2f} (p = {corr["p_value"]:.2g}, n = {corr["n"]})'
        small_note = ('<p class="sub small-n-note">Hollow grey points: buckets with too few answers '
                      f'(under {SMALL_N}) for a point to mean much; read their interval, not the point.</p>'
                      if any(data["small_n"][m]) else "")
        out.append(
            f'<section class="card qos" id="qos-{m}"><h2>{h.e(h.METRIC_TITLES[m])}</h2>'
            f'<div class="charts2"><div class="chart"><canvas id="chart-nps-{m}" aria-label="NPS by {h.e(h.METRIC_TITLES[m])}"></canvas></div>'
            f'<div class="chart"><canvas id="chart-rr-{m}" aria-label="Response rate by {h.e(h.METRIC_TITLES[m])}"></canvas></div></div>'
            f'{small_note}<p class="sub">Spearman ρ of score with {h.e(h.METRIC_TITLES[m].lower())}: {h.e(rho)}</p>'
            '<table><thead><tr><th>Bucket</th><th>Sessions</th><th>Surveys shown</th><th>Response rate</th>'
            f'<th>Answers</th><th>NPS</th><th>95 % CI</th></tr></thead><tbody>{"".join(rows)}</tbody></table></section>'
        )
    return "".join(out)


def _small_attrs(small: bool, n: int) -> str:
    return f' class="small-n" title="n = {n}: too few answers to read the point"' if small else ""


def _reasons(data: Mapping[str, Any]) -> str:
    reasons = data["report"]["reasons"]
    # The chart draws the same order (data["reasons_order"]): most given first.
    rows = "".join(
        f'<tr data-reason="{h.e(k)}"><th scope="row">{h.e(h.REASON_TITLES.get(k, k))}</th><td class="num">{reasons[k]}</td></tr>'
        for k in data["reasons_order"]
    ) or '<tr><td colspan="2">No reasons given.</td></tr>'
    return f"<table class=\"compact\"><tbody>{rows}</tbody></table>"


@dataclasses.dataclass(frozen=True, slots=True)
class CostsPart:
    """The "What quality costs" part of the page: the figures (or why there are none), the
    at-risk list (or why not) and its window."""

    impact: dict[str, Any] | str
    at_risk: dict[str, Any] | str
    risk_days: int
    at_risk_query: str


def _costs_html(data: Mapping[str, Any], values: Mapping[str, str], part: CostsPart) -> str:
    if isinstance(part.impact, str):
        costs = ('<section class="card" id="quality-costs"><h2>What quality costs</h2>'
                 f'<p class="error" id="impact-unavailable">{h.e(part.impact)}</p></section>')
    else:
        costs = costs_section(part.impact["impact"], data["report"], h.e)
    hidden = {k: v for k, v in values.items() if k != "risk_days"}
    segment = ("Filtered by region, model and firmware as above; channel and content type "
               "do not apply to boxes.")
    return costs + at_risk_section(part.at_risk, part.risk_days, hidden, part.at_risk_query,
                                   segment, h.e)


def costs_placeholder(values: Mapping[str, str]) -> str:
    """Where the page's script puts :func:`get_costs_part`'s sections once the rest of the
    page is drawn: ``/v1/impact``'s read of every answered survey of the period takes
    seconds on a big store, and the page does not wait for it."""
    query = urlencode({k: v for k, v in values.items() if v})
    return (f'<div id="costs-part" data-src="/dashboard/part/costs?{h.e(query)}">'
            '<section class="card" id="costs-loading"><h2>What quality costs</h2>'
            '<p class="sub">Reading the answers of the period…</p></section></div>')


def dashboard_page(data: Mapping[str, Any], values: Mapping[str, str], session: Session,
                   detractors: list[DetractorRow], csv_query: str,
                   known: Mapping[str, list[str]], notes_said: Sequence[str] = (),
                   costs: str = "") -> str:
    """The whole dashboard page; ``costs`` is what stands for "What quality costs" and
    "Who to call first" (:func:`costs_placeholder`, or nothing)."""
    f = data["filters"]
    notes = "".join(f'<p class="notice" role="status">{h.e(n)}</p>' for n in notes_said)
    c = data["comparison"]
    period = f'{h.e(f["from"])} ≤ t &lt; {h.e(f["to"])}'
    if not detractors:
        det_body = '<p class="sub" id="detractors-empty">No detractor after a bad-quality session in this period.</p>'
    else:
        det_body = (
            '<table id="detractors"><thead><tr><th>Shown</th><th>Box</th><th>Score</th><th>Reason</th>'
            "<th>Channel</th><th>Content</th><th>Rebuffer</th><th>Startup</th><th>Bitrate</th>"
            "<th>Failed</th><th>Region / model / firmware</th></tr></thead>"
            f"<tbody>{h.detractor_rows_html(detractors)}</tbody></table>"
        )
    body = (
        '<header class="top"><h1>NPS × stream quality</h1>'
        '<form method="post" action="/dashboard/logout" class="logout">'
        f'<input type="hidden" name="csrf" value="{h.e(session.csrf)}">'
        '<button type="submit" class="secondary" id="logout">Sign out</button></form></header>'
        f"<main>{_filter_form(values, known)}"
        f'<p class="period" id="period">Period: {period} (surveys by shown_at, sessions by started_at) · '
        f'previous period {h.e(c["previous_period"]["from"])} ≤ t &lt; {h.e(c["previous_period"]["to"])}: '
        f'NPS <span id="prev-nps">{h.fmt_nps(c["previous"]["nps"])}</span> (n = {c["previous"]["answered"]})</p>'
        f"{notes}{_kpis(data)}"
        '<section class="card"><h2>NPS over time <span class="sub">with its 95 % interval</span></h2>'
        '<div class="chart wide"><canvas id="chart-timeline" aria-label="NPS over time"></canvas></div></section>'
        f"{costs}"
        f"{_qos_tables(data)}"
        '<div class="row2 scores"><section class="card"><h2>Scores</h2>'
        '<div class="chart"><canvas id="chart-histogram" aria-label="Score histogram"></canvas></div></section>'
        '<section class="card"><h2>Main reasons <span class="sub">most given first</span></h2>'
        f'<div class="reasons"><div class="chart"><canvas id="chart-reasons" aria-label="Reasons"></canvas></div>{_reasons(data)}</div></section></div>'
        '<section class="card" id="close-the-loop"><h2>Call back: detractors after a bad stream</h2>'
        f'<p class="sub">Score 0–6 after a session that failed, rebuffered over {100 * BAD.rebuffer_ratio_above:g} % of its time, '
        f'took over {BAD.startup_ms_above / 1000:g} s to start or played at {BAD.bitrate_kbps_at_most:g} kbps or less; newest first'
        f'{"" if not detractors else f" (the latest {len(detractors)})"}. '
        f'<a href="/dashboard/detractors.csv?{h.e(csv_query)}" id="detractors-csv" download>Download CSV</a></p>'
        f"{det_body}</section>"
        "</main>"
        f'<script type="application/json" id="dash-data">{h.json_for_script(data)}</script>'
    )
    return h.page("NPS dashboard", body, scripts=("chart.umd.min.js", "dashboard.js"))


async def get_dashboard(request: web.Request) -> web.Response:
    """``GET /dashboard``: the page, or a redirect to the login form."""
    # The filters first: a bad link is a 400 whether or not one is logged in.
    try:
        filters, values, granularity = page_filters(request.query)
    except BadQueryError as exc:
        body = (f'<main><p class="error" role="alert">{h.e(exc)}</p>'
                '<p><a href="/dashboard">Back to the dashboard</a></p></main>')
        return html_response(h.page("Bad filter · NPS dashboard", body), status=400)
    session = await current_session(request)
    if session is None:
        return web.Response(status=303, headers={"Location": "/dashboard/login", **SECURITY_HEADERS})
    # The known values first: a segment typed in another case is matched to the stored one.
    known = await _segment_values(request)
    filters, notes = match_known(filters, values, known)
    data, detractors = await asyncio.gather(
        dashboard_data(request, filters, granularity),
        _detractors(request, filters, PAGE_DETRACTORS),
    )
    return html_response(dashboard_page(data, values, session, detractors,
                                        urlencode(report_query(filters)), known, notes,
                                        costs_placeholder(values)))


async def get_costs_part(request: web.Request) -> web.Response:
    """``GET /dashboard/part/costs`` (the page's query): the "What quality costs" and "Who
    to call first" sections as HTML, with the figures the page's script draws; fetched by
    the page once the rest is drawn (see :func:`costs_placeholder`)."""
    await require_session(request)
    filters, values, _ = page_filters(request.query)
    filters, _ = match_known(filters, values, await _segment_values(request))
    days = int(values["risk_days"])
    end_us = risk_end_us(filters)
    store = request.app[STORE]
    counts, impact, at_risk = await asyncio.gather(
        store.report_data(filters),
        _part(impact_data(request, filters)),
        _part(compute_at_risk(
            store, to=from_us(end_us), window_days=days, limit=PAGE_AT_RISK,
            region=filters.region, model=filters.model, firmware=filters.firmware)),
    )
    part = CostsPart(impact, at_risk, days, at_risk_link(filters, days, end_us))
    body = _costs_html({"report": compute_report_data(counts)}, values, part)
    if not isinstance(impact, str):
        body += f'<script type="application/json" id="impact-data">{h.json_for_script(impact)}</script>'
    return html_response(body)


async def _part(work: Awaitable[dict[str, Any]]) -> dict[str, Any] | str:
    """A part of the page, or why it cannot be shown: filters it refuses (the message names
    what is wrong). The rest of the page still shows."""
    try:
        return await work
    except BadQueryError as exc:
        return f"Not for these filters: {exc}"


def from_us(us: int) -> datetime:
    """µs since the epoch as an aware UTC datetime (exact: no float on the way)."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


async def _segment_values(request: web.Request) -> dict[str, list[str]]:
    return await request.app[STORE].segment_values(SUGGESTIONS)
