"""The reading workflow through REST API v1: confirm and amend signed by a reviewer's token, versions, result fields."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from clinical import services
from clinical.models import AuditEvent, EcgRecord, Interpretation
from clinical.tokens import api_token_create
from tests.clinical.conftest import make_result
from tests.clinical.test_api import api


@pytest.fixture
def serial(clinician, wfdb_pair):
    prior = services.ecg_submit(actor=clinician, pseudonym="PT-API-SER", age=66, sex="F", files=wfdb_pair, fs=None)
    make_result(prior, "routine")
    EcgRecord.objects.filter(pk=prior.pk).update(uploaded_at=timezone.now() - timedelta(days=7),
                                                 measurements={**prior.measurements, "qtc_bazett_ms": 430})
    record = services.ecg_submit(actor=clinician, pseudonym="PT-API-SER", age=66, sex="F", files=wfdb_pair, fs=None)
    make_result(record, "routine")
    EcgRecord.objects.filter(pk=record.pk).update(measurements={**record.measurements, "qtc_bazett_ms": 500})
    return prior, record


def _url(record, what: str) -> str:
    return f"/api/v1/ecgs/{record.public_id}/{what}/"


def test_a_reviewer_token_confirms_then_amends_and_the_result_reports_the_latest(serial, reviewer, clinician):
    _, record = serial
    token = api_token_create(user=reviewer, name="reading-app")[1]
    reviewer_api = api(token)
    assert reviewer_api.get(_url(record, "result")).json()["interpretation_status"] == "preliminary"
    resp = reviewer_api.post(_url(record, "confirm"), {"removed": ["superclass:MI"], "added": ["statements:CLBBB"],
                                                       "measurements": {"qrs_ms": 150}}, format="json")
    assert resp.status_code == 201, resp.json()
    body = resp.json()
    assert body["version"] == 1 and body["status"] == "final" and body["signed_with"].startswith("api_token:")
    assert body["measurement_overrides"]["qrs_ms"]["reviewer"] == 150.0
    assert any(line.startswith("QTc (Bazett) +70 ms") for line in body["comparison"]["lines"])

    again = reviewer_api.post(_url(record, "confirm"), {}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_confirmed"
    no_reason = reviewer_api.post(_url(record, "amend"), {"removed": []}, format="json")
    assert no_reason.status_code == 400 and "reason" in no_reason.json()["error"]["fields"]
    amended = reviewer_api.post(_url(record, "amend"), {"reason": "MI after all: new Q waves in V1-V3",
                                                        "added": ["statements:CLBBB"]}, format="json")
    assert amended.status_code == 201 and amended.json()["supersedes"] == 1
    assert Interpretation.objects.filter(record=record).count() == 2

    clinician_api = api(api_token_create(user=clinician, name="ehr")[1])
    result = clinician_api.get(_url(record, "result")).json()
    assert result["interpretation_status"] == "amended" and result["interpretation"]["version"] == 2
    versions = clinician_api.get(_url(record, "interpretations")).json()
    assert [v["version"] for v in versions] == [2, 1] and versions[0]["reason"].startswith("MI after all")
    assert AuditEvent.objects.filter(action="interpretation.amend", actor=reviewer).count() == 1


def test_a_clinician_token_cannot_confirm_and_bad_input_stores_nothing(serial, reviewer, clinician):
    _, record = serial
    clinician_api = api(api_token_create(user=clinician, name="ehr")[1])
    refused = clinician_api.post(_url(record, "confirm"), {}, format="json")
    assert refused.status_code == 403
    reviewer_api = api(api_token_create(user=reviewer, name="reading-app")[1])
    bad = reviewer_api.post(_url(record, "confirm"), {"measurements": {"qrs_ms": 9999}}, format="json")
    assert bad.status_code == 400 and "outside" in bad.json()["error"]["message"]
    assert bad.json()["error"]["fields"] == {"measurements": [bad.json()["error"]["message"]]}
    assert not Interpretation.objects.exists()


def test_a_session_needs_the_password_to_sign(serial, reviewer, client):
    _, record = serial
    client.force_login(reviewer)
    unsigned = client.post(_url(record, "confirm"), {}, content_type="application/json")
    assert unsigned.status_code == 403 and unsigned.json()["error"]["code"] == "signature"
    signed = client.post(_url(record, "confirm"), {"password": "pw-for-tests-1"}, content_type="application/json")
    assert signed.status_code == 201 and signed.json()["signed_with"] == "password"
