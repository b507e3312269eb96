"""The collector's aiohttp application: :func:`create_app` builds it from :class:`Settings`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from aiohttp import ClientPayloadError, web
from aiohttp.http_exceptions import PayloadEncodingError

from protocol import (
    BatchError,
    TooLargeError,
    check_media_type,
    utcnow,
)
from protocol.limits import BOX_ID_PATTERN, MAX_BODY_BYTES
from protocol.timefmt import to_micros

from .appkeys import (
    ADMIN_HASH,
    BODY_DECODER,
    INGEST_LISTENERS,
    LOG_BOX_ID,
    LOG_COUNTS,
    RATE_LIMITER,
    SETTINGS,
    STORE,
    TOKEN_OWNERS,
)
from .at_risk import compute_at_risk, parse_at_risk_query
from .dashboard import setup_dashboard
from .decoding import BodyDecoder
from .errors import BadQueryError, CollectorError, OverloadedError, StorageError, TokenRefusedError
from .export import export_chunks
from .impact import compute_impact
from .ingest import reject_out_of_range, rows_from_batch
from .model import UploadAuth
from .query import parse_filters
from .ratelimit import BoxRateLimiter
from .report import build_report
from .settings import Settings
from .storage import Storage, make_storage
from .tokens import TokenOwners, bearer, new_admin_token, new_box_token, token_hash
from .web import CLIENT_ABORT_STATUS, ApiError, client_gone, json_response, principal, require_admin

log = logging.getLogger("collector")
access = logging.getLogger("collector.access")

#: Keyword arguments for the server under the app: the collector inflates gzip itself,
#: with a limit, so aiohttp must hand the body over as sent.
SERVER_KWARGS: dict[str, Any] = {"auto_decompress": False, "max_field_size": 8190,
                                 "max_line_size": 8190,
                                 # aiohttp closes a connection that has not sent a whole
                                 # request head this long after it opened (or after the last
                                 # answer): the header-read timeout against slowloris.
                                 "keepalive_timeout": 15}

_BOX_ID = re.compile(BOX_ID_PATTERN)

# -- handlers -------------------------------------------------------------------------------

async def post_boxes(request: web.Request) -> web.Response:
    """Enrol a box: answers a new token for it."""
    await require_admin(request)
    try:
        doc = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "malformed", f"body: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "malformed", "body: must be a JSON object")
    box_id = doc.get("box_id")
    if not isinstance(box_id, str) or not _BOX_ID.fullmatch(box_id):
        raise ApiError(400, "malformed", "box_id: must be 1 to 64 of A-Z a-z 0-9 . _ : -")
    token = await issue_box_token(request.app[STORE], box_id)
    request[LOG_BOX_ID] = box_id
    return json_response({"box_id": box_id, "token": token}, status=201)


async def issue_box_token(store: Storage, box_id: str) -> str:
    """Make, keep (hashed) and answer a new token for ``box_id``."""
    token = new_box_token()
    await store.add_box_token(box_id, token_hash(token), to_micros(utcnow()))
    return token


def _upload_refused(kind: str) -> ApiError:
    """The answer to an upload whose token is not a valid box token."""
    if kind in ("none", "unknown"):
        return ApiError(401, "unauthorized", "Authorization: a valid box bearer token is required")
    if kind == "revoked":
        return ApiError(403, "forbidden", "Authorization: this token was revoked")
    return ApiError(403, "forbidden", "Authorization: the admin token cannot upload")


async def post_batches(request: web.Request) -> web.Response:
    """Ingest a batch: the contract's section 3, every check in its order.

    A token seen valid lately (:class:`TokenOwners`) is not looked up before the body is
    read: the store checks it in the transaction that keeps the records. Should another
    answer be due, the token is looked up first, so that an auth fault still comes before
    every other, as the contract orders them.
    """
    owners = request.app[TOKEN_OWNERS]
    token = bearer(request.headers.get("Authorization"))
    hashed = token_hash(token) if token is not None else None
    token_box = owners.get(hashed) if hashed is not None else None
    hinted = token_box is not None
    if not hinted:
        kind, token_box = await principal(request)
        if kind != "box":
            raise _upload_refused(kind)
        assert token_box is not None and hashed is not None
        owners.remember(hashed, token_box)
    assert token_box is not None and hashed is not None
    request[LOG_BOX_ID] = token_box
    try:
        # Before the body is read (contract section 3 allows it): a box over its rate
        # costs no reading, inflating or decoding.
        wait_s = request.app[RATE_LIMITER].take(token_box)
        if wait_s:
            raise ApiError(429, "overloaded", "this box is over its upload rate; retry later",
                           headers={"Retry-After": str(wait_s)})
        return await _ingest(request, token_box, hashed)
    except TokenRefusedError:
        # Revoked or deleted since it was seen (nothing was stored): say which.
        owners.forget(hashed)
        kind, _ = await principal(request)
        raise _upload_refused(kind if kind != "box" else "revoked") from None
    except ApiError:
        if hinted:
            # Answered on the hint: an auth fault must still come before this one.
            kind, _ = await principal(request)
            if kind != "box":
                owners.forget(hashed)
                raise _upload_refused(kind) from None
        raise


async def _ingest(request: web.Request, token_box: str, hashed: bytes) -> web.Response:
    """The rest of an upload, its token's box known: body, checks, load, store."""
    try:
        gzipped = check_media_type(
            request.headers.get("Content-Type"), request.headers.get("Content-Encoding")
        )
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise TooLargeError(
                f"body is {request.content_length} bytes; at most {MAX_BODY_BYTES} as sent"
            )
        try:
            async with asyncio.timeout(request.app[SETTINGS].body_timeout_s):
                body = await _read_limited(request)
        except TimeoutError:
            raise ApiError(408, "timeout", "body: not received in time") from None
        except (ClientPayloadError, PayloadEncodingError) as exc:
            if client_gone(request):
                raise  # the client went away mid-body: a client abort, not an answer
            raise ApiError(400, "malformed", f"body: could not be read ({exc})") from None
        batch = await request.app[BODY_DECODER].decode(body, gzipped=gzipped)
    except BatchError as exc:
        raise ApiError(exc.status, exc.code, exc.detail) from None
    except OverloadedError as exc:
        raise ApiError(503, "overloaded", "too many large bodies wait to be decoded; retry later",
                       headers={"Retry-After": str(exc.retry_after_s)}) from None
    env = batch.envelope
    if env.box_id != token_box:
        raise ApiError(403, "forbidden", f"box_id: this token belongs to another box than {env.box_id}")
    received_at = utcnow()
    batch = reject_out_of_range(batch, received_at)
    indexed = rows_from_batch(batch, received_at)
    try:
        fresh = await request.app[STORE].ingest([row for _, row in indexed],
                                                UploadAuth(hashed, token_box))
    except OverloadedError as exc:
        raise ApiError(503, "overloaded", "the collector is shedding load; retry later",
                       headers={"Retry-After": str(exc.retry_after_s)}) from None
    rows = [row for _, row in indexed]
    for listener in request.app[INGEST_LISTENERS]:
        try:
            listener(rows, fresh)
        except Exception:
            # The records are committed: the box must hear so, or it resends them for
            # ever. A listener's fault is the listener's (logged), never the upload's.
            log.exception("ingest listener failed; the upload is stored and answered",
                          extra={"box_id": env.box_id, "listener": getattr(listener, "__qualname__", "?")})
    accepted = sum(fresh)
    duplicates = len(fresh) - accepted
    rejected = [{"index": r.index, "id": r.id, "error": r.error} for r in batch.rejected]
    request[LOG_COUNTS] = {"records": len(batch.records), "accepted": accepted,
                             "duplicates": duplicates, "rejected": len(rejected)}
    if rejected:
        log.info("records rejected", extra={"box_id": env.box_id,
                                            "errors": [r["error"] for r in rejected[:5]]})
    return json_response({"accepted": accepted, "duplicates": duplicates, "rejected": rejected})


async def _read_limited(request: web.Request) -> bytes:
    body = bytearray()
    async for chunk in request.content.iter_chunked(65536):
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise TooLargeError(f"body is over {MAX_BODY_BYTES} bytes as sent")
    return bytes(body)


async def get_report(request: web.Request) -> web.Response:
    """The report for the query's filters."""
    await require_admin(request)
    filters = parse_filters(request.query, [k for k, _ in request.query.items()])
    return json_response(await build_report(request.app[STORE], filters))


async def get_impact(request: web.Request) -> web.Response:
    """What quality costs in NPS points (contract section 6), for the report's filters."""
    await require_admin(request)
    filters = parse_filters(request.query, [k for k, _ in request.query.items()])
    return json_response(await compute_impact(request.app[STORE], filters))


async def get_export(request: web.Request) -> web.StreamResponse:
    """Stream every stored record of a kind, as JSON lines or CSV."""
    await require_admin(request)
    q = request.query
    filters = parse_filters(q, [k for k, _ in q.items()], allowed_extra=("kind", "format"))
    kind = q.get("kind")
    if kind not in ("session", "survey"):
        raise BadQueryError("kind: required, session or survey")
    fmt = q.get("format", "jsonl")
    if fmt not in ("jsonl", "csv"):
        raise BadQueryError("format: must be jsonl or csv")
    resp = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson",
        "Content-Disposition": f'attachment; filename="{kind}s.{fmt}"',
    })
    chunks = export_chunks(kind, fmt, request.app[STORE].export_rows(kind, filters))
    # Closed here whatever happens (a client gone mid-export included), not left to the
    # garbage collector.
    async with contextlib.aclosing(chunks):
        first = await anext(chunks, b"")  # fail before the 200 is sent, where the store fails
        await resp.prepare(request)
        if first:
            await resp.write(first)
        async for chunk in chunks:
            await resp.write(chunk)
    await resp.write_eof()
    return resp


async def get_at_risk(request: web.Request) -> web.Response:
    """The boxes whose viewers are likeliest to answer as detractors now (contract §7)."""
    await require_admin(request)
    # items(), not keys(): multidict's keys() view lists a repeated key once.
    query = parse_at_risk_query(request.query, [k for k, _ in request.query.items()])
    return json_response(await compute_at_risk(request.app[STORE], **query))


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the store answers."""
    try:
        counts = await request.app[STORE].counts()
    except CollectorError as exc:
        raise ApiError(503, "not_ready", f"store: {exc}") from None
    return json_response({"status": "ready", **counts})


# -- middlewares ------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_and_access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Convert every failure to the contract's error body; one log line per request."""
    start = time.perf_counter()
    err: ApiError
    try:
        resp = await handler(request)
    except ApiError as exc:
        err = exc
    except BadQueryError as exc:
        err = ApiError(400, "bad_query", str(exc))
    except BatchError as exc:
        err = ApiError(exc.status, exc.code, exc.detail)
    except web.HTTPException as exc:
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status, "http_error")
        err = ApiError(exc.status, code, exc.reason, headers=_allow(exc))
    except StorageError as exc:
        log.error("store failed", extra={"path": request.path, "error": str(exc)})
        err = ApiError(503, "unavailable", "the data store failed; retry later", headers={"Retry-After": "5"})
    except asyncio.CancelledError:
        # A server made with handler_cancellation (aiohttp's test server) cancels the
        # handler of a client that went away: the same client abort, then cancelled.
        if client_gone(request):
            log.info("client aborted", extra={"path": request.path, "error": "CancelledError"})
            _log_request(request, CLIENT_ABORT_STATUS, start)
        raise
    except Exception as exc:
        if _client_aborted(request, exc):
            # An ordinary event (a box losing its network mid-upload, an operator closing
            # a download): one line, no traceback, and no 500 in the metrics.
            log.info("client aborted", extra={"path": request.path, "error": type(exc).__name__})
            _log_request(request, CLIENT_ABORT_STATUS, start)
            return web.Response(status=CLIENT_ABORT_STATUS)
        log.exception("unhandled error", extra={"path": request.path})
        err = ApiError(500, "internal", "internal error")
    else:
        _log_request(request, resp.status, start)
        return resp
    _log_request(request, err.status, start)
    return err.response()



def _client_aborted(request: web.Request, exc: Exception) -> bool:
    """Whether ``exc`` is the client going away: a connection error, or a body cut short,
    with the connection closed. Checking the transport keeps a connection error of the
    store (a database refusing connections) from passing for one."""
    return client_gone(request) and isinstance(
        exc, (ConnectionError, ClientPayloadError, PayloadEncodingError))


def _log_request(request: web.Request, status: int, start: float) -> None:
    extra: dict[str, Any] = {
        "method": request.method, "path": request.path, "status": status,
        "latency_ms": round((time.perf_counter() - start) * 1000, 2),
    }
    if request.get(LOG_BOX_ID):
        extra["box_id"] = request[LOG_BOX_ID]
    counts: dict[str, int] | None = request.get(LOG_COUNTS)
    if counts:
        extra.update(counts)
    access.info("request", extra=extra)


def _allow(exc: web.HTTPException) -> dict[str, str] | None:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else None


# -- the factory --------------------------------------------------------------------------------

async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    store = make_storage(settings)
    await store.open()
    app[STORE] = store
    try:
        app[ADMIN_HASH] = token_hash(await admin_token(store, settings))
        yield
    finally:
        await store.close()


async def _decoder_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[BODY_DECODER].close()


async def admin_token(store: Storage, settings: Settings) -> str:
    """The admin token: ``NPS_ADMIN_TOKEN``, else the one kept in the store (made once)."""
    if settings.admin_token:
        return settings.admin_token
    existing = await store.get_meta("admin_token")
    if existing is None:
        existing = await store.set_meta_once("admin_token", new_admin_token())
        log.warning("admin token generated", extra={"kept_in": f"{store.location} (nps_meta.admin_token)"})
    print(
        f"NPS_ADMIN_TOKEN is unset: the admin token is kept in the data store at {store.location} "
        f"(table nps_meta, key admin_token); print it with: nps-collector admin-token --db {settings.db}",
        flush=True,
    )
    return existing


def create_app(settings: Settings) -> web.Application:
    """The collector's application; the store opens and closes with it."""
    app = web.Application(
        middlewares=[errors_and_access_log],
        client_max_size=MAX_BODY_BYTES + 1,
    )
    app[SETTINGS] = settings
    app[RATE_LIMITER] = BoxRateLimiter(settings.box_rate_per_min, settings.box_burst)
    app[TOKEN_OWNERS] = TokenOwners()
    app[BODY_DECODER] = BodyDecoder()
    app.cleanup_ctx.append(_store_ctx)
    app.cleanup_ctx.append(_decoder_ctx)
    app.router.add_post("/v1/boxes", post_boxes)
    app.router.add_post("/v1/batches", post_batches)
    app.router.add_get("/v1/report", get_report)
    app.router.add_get("/v1/export", get_export)
    app.router.add_get("/v1/impact", get_impact)
    app.router.add_get("/v1/at-risk", get_at_risk)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app[INGEST_LISTENERS] = []
    setup_dashboard(app)
    return app
