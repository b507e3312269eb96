from __future__ import annotations

from tests.collector.conftest import Api, batch, session_record, survey_record


async def test_upload_and_report(api: Api) -> None:
    token = await api.enrol("stb-1")
    s = session_record()
    v = survey_record(session_id=s["id"], score=10, reason="picture")
    status, body = await api.upload(token, batch("stb-1", [s, v], box={"region": "NL-NH"}))
    assert status == 200, body
    assert body == {"accepted": 2, "duplicates": 0, "rejected": []}
    status, body = await api.upload(token, batch("stb-1", [s, v]), gz=True)
    assert body == {"accepted": 0, "duplicates": 2, "rejected": []}
    rep = await api.report()
    assert rep["sessions"] == {"count": 1, "surveyed": 1, "failed": 0, "exited_before_start": 0,
                               "start_failures": 0}
    assert rep["promoters"] == 1 and rep["nps"] == 100.0
    assert rep["reasons"] == {"picture": 1}
