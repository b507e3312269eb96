"""``/openapi.json`` is a valid OpenAPI document covering every route, its upload body is
the protocol's schema, answers match it; ``/metrics`` counters move."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate

from collector.app import create_app
from collector.dashboard.metrics import rejection_reason
from collector.dashboard.openapi import openapi_document
from collector.settings import Settings
from protocol import batch_schema
from tests.collector.conftest import Api, batch, new_id, session_record, survey_record


def test_document_is_valid_openapi() -> None:
    doc = openapi_document()
    validate(doc)  # raises on any error
    assert doc["openapi"].startswith("3.1")


def test_document_covers_every_route(tmp_path: Path) -> None:
    app = create_app(Settings(db=f"sqlite:///{tmp_path / 'c.db'}", admin_token="test-admin-token-0123456789"))
    doc = openapi_document()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        path = route.resource.canonical if route.resource else ""
        assert path in doc["paths"], path
        assert route.method.lower() in doc["paths"][path], (route.method, path)


def test_upload_body_is_the_protocol_schema() -> None:
    doc = openapi_document()
    schemas = doc["components"]["schemas"]
    original = batch_schema()
    batch_doc = schemas["Batch"]
    assert batch_doc["properties"].keys() == original["properties"].keys()
    assert batch_doc["required"] == original["required"]
    assert schemas["SessionRecord"] == original["$defs"]["session"]
    assert schemas["SurveyRecord"] == original["$defs"]["survey"]
    body = doc["paths"]["/v1/batches"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/Batch"}


def _validator(doc: dict[str, Any], name: str) -> Any:
    """A JSON Schema validator for one component, resolving #/components refs."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    return jsonschema.Draft202012Validator(schema)


async def test_answers_match_the_document(api: Api) -> None:
    doc = openapi_document()
    token = await api.enrol("stb-doc")
    s = session_record()
    records = [s, survey_record(session_id=s["id"], score=4, reason="picture"), {"kind": "bogus"}]
    good = batch("stb-doc", records[:2], box={"region": "NL-NH"})
    _validator(doc, "Batch").validate(good)
    status, answer = await api.upload(token, batch("stb-doc", records))
    assert status == 200
    _validator(doc, "BatchAnswer").validate(answer)
    _validator(doc, "Report").validate(await api.report())
    _validator(doc, "Report").validate(await api.report(channel="none-such"))
    resp = await api.client.get("/v1/report?bogus=1", headers=api.admin)
    assert resp.status == 400
    _validator(doc, "Error").validate(await resp.json())
    resp = await api.client.get("/openapi.json")
    assert resp.status == 200 and (await resp.json())["openapi"] == doc["openapi"]


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


async def test_metrics_counters_move(api: Api) -> None:
    token = await api.enrol("stb-m")
    before = await (await api.client.get("/metrics")).text()
    s = session_record()
    bad1 = session_record()
    bad1["qos"]["startup_ms"] = -5
    bad2 = survey_record(score=11)
    doc = batch("stb-m", [s, bad1, bad2, survey_record(session_id=s["id"])])
    status, answer = await api.upload(token, doc)
    assert status == 200 and answer["accepted"] == 2 and len(answer["rejected"]) == 2
    status, answer = await api.upload(token, batch("stb-m", [s]))
    assert answer["duplicates"] == 1
    await api.upload("nbx_unknown", doc)  # 401
    await api.report()
    resp = await api.client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    text = await resp.text()
    assert metric(text, "nps_records_accepted_total") - metric(before, "nps_records_accepted_total") == 2
    assert metric(text, "nps_records_duplicate_total") == 1
    assert metric(text, 'nps_records_rejected_total{reason="qos.startup_ms"}') == 1
    assert metric(text, 'nps_records_rejected_total{reason="score"}') == 1
    assert metric(text, 'nps_batches_total{status="401"}') == 1
    assert metric(text, 'nps_batches_total{status="200"}') == 2
    assert metric(text, 'nps_http_request_duration_seconds_count{method="POST",route="/v1/batches"}') == 3
    assert metric(text, 'nps_http_request_duration_seconds_bucket{method="GET",route="/v1/report",le="+Inf"}') == 1
    assert metric(text, "nps_write_queue_depth") == 0
    assert metric(text, 'nps_stored_records{kind="sessions"}') == 1
    # Unknown paths share one label, whatever a scanner asks for.
    await api.client.get(f"/nope/{new_id()}")
    text = await (await api.client.get("/metrics")).text()
    assert 'route="unmatched"' in text and "/nope/" not in text


@pytest.mark.parametrize(("error", "reason"), [
    ("records[3].qos.startup_ms: must be >= 0", "qos.startup_ms"),
    ("records[0].id: must be a UUID", "id"),
    ("records[12]: must be an object", "record"),
    ("records[1].extra[2].x: bad", "extra.x"),
])
def test_rejection_reason_drops_indexes(error: str, reason: str) -> None:
    assert rejection_reason(error) == reason
