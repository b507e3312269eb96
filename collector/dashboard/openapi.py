"""The OpenAPI 3.1 document served at ``/openapi.json``.

The upload body is :func:`protocol.batch_schema` itself (JSON Schema 2020-12, which
OpenAPI 3.1 schemas are); only its ``$defs`` move to ``components.schemas`` so its
references resolve inside this document.
"""

from __future__ import annotations

import copy
from typing import Any

from protocol import CONTENT_TYPES, REASONS, batch_schema

from ..impact import impact_schema
from ..metrics import NAMES as METRICS
from ..query import FILTER_PARAMS

_DEF_NAMES = {"session": "SessionRecord", "survey": "SurveyRecord"}


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str) and v.startswith("#/$defs/"):
                out[k] = "#/components/schemas/" + _DEF_NAMES[v.removeprefix("#/$defs/")]
            else:
                out[k] = _rewrite_refs(v)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node


def _batch_components() -> dict[str, Any]:
    schema = copy.deepcopy(batch_schema())
    defs = schema.pop("$defs")
    schema.pop("$schema", None)
    out = {"Batch": _rewrite_refs(schema)}
    for name, sub in defs.items():
        out[_DEF_NAMES[name]] = _rewrite_refs(sub)
    return out


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    resp = _json(_ref("Error"), description)
    if headers:
        resp["headers"] = headers
    return resp


_NUM_OR_NULL = {"type": ["number", "null"]}
_CI = {"type": ["array", "null"], "items": {"type": "number"}, "minItems": 2, "maxItems": 2,
       "description": "Adjusted-Wald 95 % interval in points; null with no answers."}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}
_ADMIN_ERRORS = {
    "400": _error("bad_query: a parameter is unknown, repeated or ill-formed; the detail names it."),
    "401": _error("unauthorized: no or unknown token."),
    "403": _error("forbidden: a box token."),
    "503": _error("unavailable: the data store failed.", _RETRY_AFTER),
}


def _filter_params() -> list[dict[str, Any]]:
    params = []
    for name in FILTER_PARAMS:
        schema: dict[str, Any] = {"type": "string"}
        if name in ("from", "to"):
            schema["format"] = "date-time"
            desc = f"RFC 3339; `{name}` bound of the half-open range (surveys by shown_at, sessions by started_at)."
        elif name == "content_type":
            schema["enum"] = list(CONTENT_TYPES)
            desc = "Only sessions of this content type (surveys through their session)."
        else:
            schema["minLength"] = 1
            desc = f"Only records with this {name}."
        params.append({"name": name, "in": "query", "required": False, "schema": schema,
                       "description": desc})
    return params


def _report_schema() -> dict[str, Any]:
    bucket = {
        "type": "object",
        "required": ["lo", "hi", "sessions", "n", "nps", "nps_ci95", "mean_score"],
        "properties": {
            "lo": {"type": "number"}, "hi": _NUM_OR_NULL,
            "sessions": {"type": "integer", "minimum": 0}, "n": {"type": "integer", "minimum": 0},
            "nps": _NUM_OR_NULL, "nps_ci95": _CI, "mean_score": _NUM_OR_NULL,
        },
    }
    corr = {
        "type": "object", "required": ["spearman", "p_value", "n"],
        "properties": {"spearman": _NUM_OR_NULL, "p_value": _NUM_OR_NULL,
                       "n": {"type": "integer", "minimum": 0}},
    }
    count = {"type": "integer", "minimum": 0}
    return {
        "type": "object",
        "required": ["sessions", "surveys", "promoters", "passives", "detractors", "nps",
                     "nps_ci95", "score_histogram", "reasons", "by_qos", "correlation"],
        "properties": {
            "sessions": {"type": "object",
                         "required": ["count", "surveyed", "failed", "exited_before_start",
                                      "start_failures"],
                         "properties": {"count": count, "surveyed": count, "failed": count,
                                        "exited_before_start": count, "start_failures": count}},
            "surveys": {"type": "object",
                        "required": ["shown", "answered", "dismissed", "timeout", "response_rate"],
                        "properties": {"shown": count, "answered": count, "dismissed": count,
                                       "timeout": count, "response_rate": _NUM_OR_NULL}},
            "promoters": count, "passives": count, "detractors": count,
            "nps": _NUM_OR_NULL, "nps_ci95": _CI,
            "score_histogram": {"type": "array", "items": count, "minItems": 11, "maxItems": 11},
            "reasons": {"type": "object", "additionalProperties": count,
                        "propertyNames": {"enum": list(REASONS)}},
            "by_qos": {"type": "object", "required": list(METRICS),
                       "properties": {m: {"type": "array", "items": bucket} for m in METRICS}},
            "correlation": {"type": "object", "required": list(METRICS),
                            "properties": dict.fromkeys(METRICS, corr)},
        },
    }


def _dashboard_schemas() -> dict[str, Any]:
    count = {"type": "integer", "minimum": 0}
    rate = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
    block = {
        "type": "object",
        "required": ["shown", "answered", "promoters", "detractors", "nps", "nps_ci95", "response_rate"],
        "properties": {"shown": count, "answered": count, "promoters": count, "detractors": count,
                       "nps": _NUM_OR_NULL, "nps_ci95": _CI, "response_rate": rate},
    }
    rr_bucket = {
        "type": "object",
        "required": ["lo", "hi", "sessions", "shown", "answered", "response_rate", "response_ci95"],
        "properties": {
            "lo": {"type": "number"}, "hi": _NUM_OR_NULL, "sessions": count, "shown": count,
            "answered": count, "response_rate": rate,
            "response_ci95": {"type": ["array", "null"], "items": {"type": "number"},
                              "minItems": 2, "maxItems": 2,
                              "description": "Wilson 95 % interval of the response rate."},
        },
    }
    span = {"type": "object", "required": ["from", "to"],
            "properties": {"from": {"type": "string", "format": "date-time"},
                           "to": {"type": "string", "format": "date-time"}}}
    return {
        "PeriodFigures": block,
        "DashboardData": {
            "type": "object",
            "required": ["filters", "granularity", "report", "timeline", "response_by_qos",
                         "comparison", "bucket_labels"],
            "properties": {
                "filters": {"type": "object", "additionalProperties": {"type": "string"},
                            "description": "The /v1/report query these figures are for."},
                "granularity": {"type": "string", "enum": ["day", "week"]},
                "report": _ref("Report"),
                "timeline": {"type": "array", "items": {"allOf": [
                    {"$ref": "#/components/schemas/PeriodFigures"}, span]}},
                "response_by_qos": {"type": "object", "required": list(METRICS),
                                    "properties": {m: {"type": "array", "items": rr_bucket}
                                                   for m in METRICS}},
                "comparison": {
                    "type": "object",
                    "required": ["current", "previous", "previous_period", "change", "z",
                                 "p_value", "significant", "alpha", "verdict"],
                    "properties": {
                        "current": _ref("PeriodFigures"), "previous": _ref("PeriodFigures"),
                        "previous_period": span, "change": _NUM_OR_NULL, "z": _NUM_OR_NULL,
                        "p_value": _NUM_OR_NULL, "significant": {"type": "boolean"},
                        "alpha": {"type": "number"}, "verdict": {"type": "string"},
                    },
                    "description": "Two-sided z-test on the adjusted-Wald NPS estimates of "
                                   "this period and the one of the same length before it.",
                },
                "bucket_labels": {"type": "object", "additionalProperties": {
                    "type": "array", "items": {"type": "string"}}},
                "unknown_by_qos": {
                    "type": "object", "additionalProperties": {"type": "object"},
                    "description": "Per metric, what falls in no bucket because the session's "
                                   "metric is null: sessions, shown, answered, response_rate, "
                                   "n, nps, nps_ci95."},
                "small_n": {"type": "object", "additionalProperties": {
                    "type": "array", "items": {"type": "boolean"}},
                    "description": "Per metric and bucket: under 3 answers, or the point outside "
                                   "its own interval (drawn hollow and grey)."},
                "reasons_order": {"type": "array", "items": {"type": "string"},
                                  "description": "Reasons most given first, ties in the contract's order."},
            },
        },
    }


def _at_risk_schema() -> dict[str, Any]:
    num = {"type": ["number", "null"]}
    box = {
        "type": "object",
        "required": ["box_id", "risk", "sessions", "rebuffer_pct", "startup_s", "bitrate_mbps",
                     "failed_share", "last_score", "last_answered_at"],
        "properties": {
            "box_id": {"type": "string"},
            "risk": {"type": "number", "minimum": 0, "maximum": 1,
                     "description": "Estimated chance this box's viewer would answer now as a "
                                    "detractor (0-6), given the window's stream quality."},
            "sessions": {"type": "integer", "minimum": 1},
            "rebuffer_pct": num, "startup_s": num, "bitrate_mbps": num,
            "failed_share": {"type": "number", "minimum": 0, "maximum": 1},
            "last_score": {"type": ["integer", "null"], "minimum": 0, "maximum": 10},
            "last_answered_at": {"type": ["string", "null"], "format": "date-time"},
        },
    }
    return {"type": "object", "required": ["from", "to", "boxes"],
            "properties": {"from": {"type": "string", "format": "date-time"},
                           "to": {"type": "string", "format": "date-time"},
                           "boxes": {"type": "array", "items": box}}}


def _at_risk_params() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"name": "window_days", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": 90, "default": 7},
         "description": "The window: sessions started in [to - window_days days, to)."},
        {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
         "description": "At most this many boxes, riskiest first."},
        {"name": "to", "in": "query", "required": False,
         "schema": {"type": "string", "format": "date-time"},
         "description": "RFC 3339; the window's end (excluded). Default: now."},
    ]
    for name in ("region", "model", "firmware"):
        out.append({"name": name, "in": "query", "required": False,
                    "schema": {"type": "string", "minLength": 1},
                    "description": f"Only sessions sent with this box {name}."})
    return out


def openapi_document() -> dict[str, Any]:
    """The whole document."""
    admin: list[dict[str, list[str]]] = [{"adminBearer": []}]
    dash: list[dict[str, list[str]]] = [{"dashboardSession": []}]
    html = {"description": "An HTML page.", "content": {"text/html": {"schema": {"type": "string"}}}}
    to_login = {"description": "Not logged in: redirect to the login page.",
                "headers": {"Location": {"schema": {"type": "string"}}}}
    form = {
        "required": True,
        "content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object", "required": ["csrf"],
            "properties": {"csrf": {"type": "string"}, "token": {"type": "string"}},
        }}},
    }
    forbidden_form = {"description": "A missing or wrong CSRF token, or a foreign Origin.",
                      "content": {"text/html": {"schema": {"type": "string"}}}}
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object", "required": ["error", "detail"],
            "properties": {"error": {"type": "string", "description": "A stable code."},
                           "detail": {"type": "string", "description": "What is wrong, naming the field."}},
        },
        **_batch_components(),
        "BatchAnswer": {
            "type": "object", "required": ["accepted", "duplicates", "rejected"],
            "properties": {
                "accepted": {"type": "integer", "minimum": 0},
                "duplicates": {"type": "integer", "minimum": 0},
                "rejected": {"type": "array", "items": {
                    "type": "object", "required": ["index", "id", "error"],
                    "properties": {"index": {"type": "integer", "minimum": 0},
                                   "id": {"type": ["string", "null"]},
                                   "error": {"type": "string"}}}},
            },
        },
        "Report": _report_schema(),
        "Impact": impact_schema(),
        "AtRisk": _at_risk_schema(),
        **_dashboard_schemas(),
    }
    page_params: list[dict[str, Any]] = [
        *({"name": n, "in": "query", "required": False,
           "description": "A UTC day, YYYY-MM-DD; `to_day` is included. Empty (as the "
                          "form sends it): the last 28 days.",
           "schema": {"type": "string", "anyOf": [{"format": "date"}, {"maxLength": 0}]}}
          for n in ("from_day", "to_day")),
        *({"name": n, "in": "query", "required": False,
           "description": f"Only this {n}; empty means any.",
           "schema": {"type": "string"}} for n in ("region", "model", "firmware", "channel")),
        {"name": "content_type", "in": "query", "required": False,
         "schema": {"type": "string", "enum": ["", *CONTENT_TYPES]}},
        {"name": "granularity", "in": "query", "required": False,
         "schema": {"type": "string", "enum": ["", "day", "week"]}},
        {"name": "risk_days", "in": "query", "required": False,
         "description": "The at-risk list's window, in days up to the period's end.",
         "schema": {"type": "string", "enum": ["", "7", "14", "28", "90"]}},
    ]
    paths: dict[str, Any] = {
        "/v1/batches": {"post": {
            "summary": "Upload a batch of records from one box",
            "description": "Each record is checked on its own: one that does not match its "
                           "schema is listed in `rejected` of a 200 answer, not refused with the "
                           "batch. The body may be sent gzipped with `Content-Encoding: gzip` "
                           "(at most 1 MiB as sent, 8 MiB inflated).",
            "security": [{"boxBearer": []}],
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": _ref("Batch")}}},
            "responses": {
                "200": _json(_ref("BatchAnswer"), "Every record accepted, duplicate or rejected."),
                "400": _error("malformed, unsupported_protocol or too_many_records."),
                "401": _error("unauthorized: no or unknown token."),
                "403": _error("forbidden: revoked token, the admin token, or another box's token."),
                "408": _error("timeout: the body was not received in time."),
                "413": _error("too_large: over 1 MiB as sent or 8 MiB inflated."),
                "415": _error("unsupported_media_type: not JSON, or an unknown encoding."),
                "429": _error("overloaded: this box is over its upload rate (checked before the "
                              "body is read).", _RETRY_AFTER),
                "503": _error("overloaded (the write queue, or too many large bodies waiting to "
                              "be decoded), or the store failed.", _RETRY_AFTER),
            },
        }},
        "/v1/boxes": {"post": {
            "summary": "Enrol a box: a new upload token for it",
            "security": admin,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["box_id"],
                "properties": {"box_id": {"type": "string", "pattern": "^[A-Za-z0-9._:\\-]{1,64}$"}},
            }}}},
            "responses": {
                "201": _json({"type": "object", "required": ["box_id", "token"],
                              "properties": {"box_id": {"type": "string"}, "token": {"type": "string"}}},
                             "The box's new token."),
                "400": _error("malformed: not JSON, or a bad box_id."),
                "401": _ADMIN_ERRORS["401"], "403": _ADMIN_ERRORS["403"], "503": _ADMIN_ERRORS["503"],
            },
        }},
        "/v1/report": {"get": {
            "summary": "NPS against stream quality (contract section 4)",
            "security": admin, "parameters": _filter_params(),
            "responses": {"200": _json(_ref("Report"), "The report."), **_ADMIN_ERRORS},
        }},
        "/v1/impact": {"get": {
            "summary": "What quality costs in NPS points (contract section 6)",
            "description": "OLS slopes of NPS on the stream-quality regressors, unadjusted "
                           "and with segment fixed effects, box-clustered; the points won "
                           "by fixing each; the NPS post-stratified for who answers.",
            "security": admin, "parameters": _filter_params(),
            "responses": {"200": _json(_ref("Impact"), "The figures."), **_ADMIN_ERRORS},
        }},
        "/v1/export": {"get": {
            "summary": "Stream every stored record of one kind (contract section 5)",
            "security": admin,
            "parameters": [
                {"name": "kind", "in": "query", "required": True,
                 "schema": {"type": "string", "enum": ["session", "survey"]}},
                {"name": "format", "in": "query", "required": False,
                 "schema": {"type": "string", "enum": ["jsonl", "csv"], "default": "jsonl"}},
                *_filter_params(),
            ],
            "responses": {
                "200": {"description": "One record a line, or CSV with a header row.",
                        "content": {"application/x-ndjson": {"schema": {"type": "string"}},
                                    "text/csv": {"schema": {"type": "string"}}}},
                **_ADMIN_ERRORS,
            },
        }},
        "/v1/at-risk": {"get": {
            "summary": "Who to call first: boxes ranked by detractor risk (contract section 7)",
            "description": "Every box with a session in the window, ranked by the estimated "
                           "chance its viewer would answer now as a detractor, learned from the "
                           "answered surveys (docs/impact.md).",
            "security": admin, "parameters": _at_risk_params(),
            "responses": {"200": _json(_ref("AtRisk"), "The list."), **_ADMIN_ERRORS},
        }},
        "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": {
            "200": _json({"type": "object", "required": ["status"],
                          "properties": {"status": {"const": "ok"}}}, "The process answers.")}}},
        "/readyz": {"get": {"summary": "Readiness: the store answers", "security": [], "responses": {
            "200": _json({"type": "object", "required": ["status"],
                          "properties": {"status": {"const": "ready"},
                                         "sessions": {"type": "integer"}, "surveys": {"type": "integer"}}},
                         "Ready, with stored record counts."),
            "503": _error("not_ready: the store fails.")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "security": [], "responses": {
            "200": {"description": "Text exposition format 0.0.4.",
                    "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {
            "200": _json({"type": "object"}, "OpenAPI 3.1.")}}},
        "/dashboard": {"get": {
            "summary": "The operators' dashboard (HTML)",
            "description": "Without a session, a redirect to the login form.",
            # Optional: a browser without the cookie is sent to the login form (303).
            "security": [*dash, {}],
            "parameters": page_params,
            "responses": {"200": html, "303": to_login,
                          "400": {"description": "A bad filter.", "content": {"text/html": {"schema": {"type": "string"}}}}},
        }},
        "/dashboard/": {"get": {"summary": "Redirect to /dashboard", "security": [], "responses": {
            "303": {"description": "To /dashboard.", "headers": {"Location": {"schema": {"type": "string"}}}}}}},
        "/": {"get": {"summary": "Redirect to /dashboard", "security": [], "responses": {
            "303": {"description": "To /dashboard.", "headers": {"Location": {"schema": {"type": "string"}}}}}}},
        "/dashboard/api/impact": {"get": {
            "summary": "What quality costs: the /v1/impact figures and the what-if's steps",
            "description": "`impact` is contract section 6's answer for the filters; `whatif` "
                           "gives, per metric (rebuffer_pct, startup_s, bitrate_mbps) and per "
                           "step of the page's slider, the mean gap to the target over the rows "
                           "and the NPS points won, with the adjusted slope's interval.",
            "security": [*dash, *admin], "parameters": _filter_params(),
            "responses": {"200": _json({"type": "object", "required": ["filters", "impact", "whatif"]},
                                       "The figures."),
                          "400": _ADMIN_ERRORS["400"], "401": _error("unauthorized: not logged in."),
                          "403": _ADMIN_ERRORS["403"]},
        }},
        "/dashboard/part/costs": {"get": {
            "summary": "The page's \"What quality costs\" and \"Who to call first\" sections (HTML)",
            "description": "Fetched by the page's script once the rest is drawn: their read of "
                           "every answered survey of the period takes seconds on a big store. "
                           "The page's query.",
            "security": [*dash, *admin], "parameters": page_params,
            "responses": {"200": html, "400": _ADMIN_ERRORS["400"],
                          "401": _error("unauthorized: not logged in."), "403": _ADMIN_ERRORS["403"]},
        }},
        "/dashboard/api/at-risk": {"get": {
            "summary": "Who to call first: contract section 7's answer (top 50 by default)",
            "security": [*dash, *admin], "parameters": _at_risk_params(),
            "responses": {"200": _json({"type": "object", "required": ["from", "to", "boxes"]},
                                       "The boxes, highest risk first."),
                          "400": _ADMIN_ERRORS["400"], "401": _error("unauthorized: not logged in."),
                          "403": _ADMIN_ERRORS["403"]},
        }},
        "/dashboard/at-risk.csv": {"get": {
            "summary": "The at-risk list as CSV (top 1000 by default)",
            "security": [*dash, *admin], "parameters": _at_risk_params(),
            "responses": {"200": {"description": "CSV with a header row: rank, then section 7's fields.",
                                  "content": {"text/csv": {"schema": {"type": "string"}}}},
                          "400": _ADMIN_ERRORS["400"], "401": _error("unauthorized: not logged in."),
                          "403": _ADMIN_ERRORS["403"]},
        }},
        "/dashboard/login": {
            "get": {"summary": "The login form", "security": [], "responses": {"200": html}},
            "post": {
                "summary": "Exchange the admin token for a session cookie", "security": [],
                "requestBody": form,
                "responses": {
                    "303": {"description": "Logged in: the cookie is set; on to the dashboard.",
                            "headers": {"Set-Cookie": {"schema": {"type": "string"}},
                                        "Location": {"schema": {"type": "string"}}}},
                    "401": {"description": "Wrong token: the form again.", "content": html["content"]},
                    "400": _error("malformed: the body cannot be read as a form."),
                    "403": forbidden_form,
                    "408": _error("timeout: the form was not received within --body-timeout."),
                    "411": _error("length_required: a form sent without Content-Length."),
                    "413": _error("too_large: a form over 16 KiB."),
                    "429": {"description": "Too many attempts from this address: the form "
                                           "again, with Retry-After.",
                            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                            "content": html["content"]},
                },
            },
        },
        "/dashboard/logout": {"post": {
            "summary": "End the session",
            "description": "With a session, the form's CSRF token is required; without "
                           "one, there is nothing to end and the answer is the redirect.",
            "security": [*dash, {}],
            "requestBody": {"required": False, "content": {"application/x-www-form-urlencoded": {
                "schema": {"type": "object", "properties": {"csrf": {"type": "string"}}}}}},
            "responses": {"303": {"description": "Logged out: the cookie is cleared.",
                                  "headers": {"Location": {"schema": {"type": "string"}}}},
                          "400": _error("malformed: the body cannot be read as a form."),
                          "403": forbidden_form,
                          "408": _error("timeout: the form was not received within --body-timeout."),
                          "411": _error("length_required: a form sent without Content-Length."),
                          "413": _error("too_large: a form over 16 KiB.")},
        }},
        "/dashboard/api/data": {"get": {
            "summary": "Everything the dashboard's charts draw",
            "description": "The report for the filters, NPS per day or week with intervals, "
                           "response rate by QoS bucket, and the period-over-period test.",
            "security": [*dash, *admin],
            "parameters": [*_filter_params(),
                           {"name": "granularity", "in": "query", "required": False,
                            "schema": {"type": "string", "enum": ["day", "week"]}}],
            "responses": {
                "200": _json(_ref("DashboardData"), "The figures."),
                "400": _ADMIN_ERRORS["400"], "401": _error("unauthorized: not logged in."),
                "403": _ADMIN_ERRORS["403"],
            },
        }},
        "/dashboard/detractors.csv": {"get": {
            "summary": "Detractors after bad-quality sessions, newest first, as CSV",
            "security": [*dash, *admin], "parameters": _filter_params(),
            "responses": {"200": {"description": "CSV with a header row.",
                                  "content": {"text/csv": {"schema": {"type": "string"}}}},
                          "400": _ADMIN_ERRORS["400"], "401": _error("unauthorized: not logged in."),
                          "403": _ADMIN_ERRORS["403"]},
        }},
        "/dashboard/static/{name}": {"get": {
            "summary": "The dashboard's scripts and styles (served locally: no internet needed)",
            "security": [],
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "The file.",
                                  "content": {"*/*": {"schema": {"type": "string"}}}},
                          "404": _error("not_found.")},
        }},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "IPTV NPS collector", "version": "1",
                 "description": "The wire protocol, report and export of CONTRACT v1, and the "
                                "operators' dashboard, metrics and health endpoints."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "adminBearer": {"type": "http", "scheme": "bearer", "description": "The admin token."},
                "boxBearer": {"type": "http", "scheme": "bearer", "description": "A box's upload token."},
                "dashboardSession": {"type": "apiKey", "in": "cookie", "name": "nps_dash",
                                     "description": "The dashboard's signed session cookie."},
            },
        },
    }
