"""REST API v1 with per-client tokens: the same services and messages as the pages."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from rest_framework.test import APIClient

from clinical import demo, services
from clinical.models import ApiToken, AuditEvent, EcgRecord, InferenceJob
from clinical.tokens import api_token_create, api_token_revoke
from mlcore.preprocess import LEADS
from tests.clinical.conftest import make_result


def api(token: str | None = None) -> APIClient:
    client = APIClient()
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def clinician_token(clinician):
    return api_token_create(user=clinician, name="ehr-test")[1]


@pytest.fixture
def reviewer_token(reviewer):
    return api_token_create(user=reviewer, name="review-app")[1]


def json_body(sig=None, pid="PT-API", **leads_override):
    sig = demo.synthesize(demo.CASES[0], fs=500, seed=4) if sig is None else sig
    leads = {lead: sig[i].round(4).tolist() for i, lead in enumerate(LEADS)}
    leads.update(leads_override)
    return {"fs": 500, "patient": {"id": pid, "age": 66, "sex": "F"}, "leads": leads}


def test_json_submit_returns_202_with_a_job_and_the_job_and_result_can_be_read(clinician_token,
                                                                               django_capture_on_commit_callbacks):
    client = api(clinician_token)
    with django_capture_on_commit_callbacks() as callbacks:
        resp = client.post("/api/v1/ecgs/", json_body(), format="json")
    assert resp.status_code == 202 and len(callbacks) == 1
    body = resp.json()
    assert body["state"] == "queued" and body["result_url"].endswith("/result/")
    job = client.get(f"/api/v1/ecgs/{body['id']}/job/").json()
    assert job["state"] == "queued" and job["progress"] == 0
    record = EcgRecord.objects.get(public_id=body["id"])
    assert record.fs == 500 and record.patient.pseudonym == "PT-API"


def test_multipart_wfdb_submit(clinician_token, wfdb_pair):
    files = [SimpleUploadedFile(name, data) for name, data in wfdb_pair.values()]
    resp = api(clinician_token).post("/api/v1/ecgs/", {"files": files, "pseudonym": "PT-W", "age": 50, "sex": "M"},
                                     format="multipart")
    assert resp.status_code == 202 and EcgRecord.objects.get().source_format == "wfdb"


def test_same_idempotency_key_twice_gives_one_ecg_one_job_same_response(clinician_token):
    client = api(clinician_token)
    first = client.post("/api/v1/ecgs/", json_body(), format="json", HTTP_IDEMPOTENCY_KEY="order-77")
    second = client.post("/api/v1/ecgs/", json_body(), format="json", HTTP_IDEMPOTENCY_KEY="order-77")
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert EcgRecord.objects.count() == 1 and InferenceJob.objects.count() == 1
    third = client.post("/api/v1/ecgs/", json_body(), format="json", HTTP_IDEMPOTENCY_KEY="order-78")
    assert third.json()["id"] != first.json()["id"]


def test_bad_input_gets_the_form_message_in_the_one_error_shape(clinician_token):
    body = json_body()
    del body["leads"]["V6"]
    resp = api(clinician_token).post("/api/v1/ecgs/", body, format="json")
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["code"] == "invalid" and "V6" in err["message"] and err["fields"]
    assert not EcgRecord.objects.exists()
    bad = api(clinician_token).post("/api/v1/ecgs/", {"fs": "fast"}, format="json").json()["error"]
    assert set(bad["fields"]) >= {"fs", "leads", "patient"}


@pytest.mark.parametrize("how", ["expired", "revoked", "garbage", "tampered"])
def test_expired_revoked_or_wrong_tokens_get_401(clinician, how):
    token, secret = api_token_create(user=clinician, name="t")
    if how == "expired":
        ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif how == "revoked":
        api_token_revoke(prefix=token.prefix)
    elif how == "garbage":
        secret = "not-a-token"
    else:
        secret = secret[:-2] + ("aa" if not secret.endswith("aa") else "bb")
    resp = api(secret).get("/api/v1/model/")
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "unauthenticated"


def test_tokens_are_stored_hashed_and_their_lifecycle_is_audited(clinician):
    token, secret = api_token_create(user=clinician, name="t")
    assert secret not in json.dumps(list(ApiToken.objects.values()), default=str)
    api_token_revoke(prefix=token.prefix)
    assert list(AuditEvent.objects.filter(object_type="ApiToken").values_list("action", flat=True)) == [
        "api_token.create", "api_token.revoke"]


def test_a_clinician_token_cannot_acknowledge_but_a_reviewer_token_can_once(clinician, clinician_token,
                                                                            reviewer_token, wfdb_pair):
    record = services.ecg_submit(actor=clinician, pseudonym="PT-Q", age=70, sex="M", files=wfdb_pair, fs=None)
    make_result(record, "immediate")
    url = f"/api/v1/ecgs/{record.public_id}/acknowledge/"
    denied = api(clinician_token).post(url, {"verdict": "agree", "note": "looks fine"}, format="json")
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
    ok = api(reviewer_token).post(url, {"verdict": "agree", "note": "seen", "findings": {"superclass:MI": "agree"}},
                                  format="json")
    assert ok.status_code == 200 and ok.json()["acknowledged_by"] == "rev-cy"
    again = api(reviewer_token).post(url, {"verdict": "agree", "note": "again"}, format="json")
    assert again.status_code == 409 and "Already acknowledged" in again.json()["error"]["message"]
    result = api(clinician_token).get(f"/api/v1/ecgs/{record.public_id}/result/?evidence=1").json()
    assert result["acknowledged_by"] == "rev-cy" and result["recommendations"][0]["urgency"] == "immediate"
    assert result["recommendations"][0]["kind"] == "rule" and result["recommendations"][0]["rule_id"] == "superclass:MI"
    evidence = result["findings"][0]["evidence"]
    assert set(evidence) == set(LEADS) and len(evidence["V1"]["map"]) == 100


def test_the_api_records_a_missed_dangerous_statement(clinician, reviewer_token, wfdb_pair):
    from clinical.models import Acknowledgement, Prediction

    record = services.ecg_submit(actor=clinician, pseudonym="PT-AF", age=70, sex="M", files=wfdb_pair, fs=None)
    pred = make_result(record, "urgent")
    Prediction.objects.filter(pk=pred.pk).update(statements={"AFIB": 0.2, "SR": 0.9})
    url = f"/api/v1/ecgs/{record.public_id}/acknowledge/"
    refused = api(reviewer_token).post(url, {"verdict": "agree", "note": "AF seen", "missed": ["SR"]}, format="json")
    assert refused.status_code == 400 and "not SR" in refused.json()["error"]["message"]
    ok = api(reviewer_token).post(url, {"verdict": "agree", "note": "AF seen", "missed": ["AFIB"]}, format="json")
    assert ok.status_code == 200, ok.json()
    ack = Acknowledgement.objects.get(prediction=pred)
    assert ack.finding_verdicts == {"statements:AFIB": "missed"}
    assert ack.outcomes["statements:AFIB"] == "fn" and ack.outcomes["MI"] == "tp"


def test_another_clinicians_ecg_is_not_found(clinician, other_clinician, wfdb_pair):
    record = services.ecg_submit(actor=clinician, pseudonym="PT-N", age=70, sex="M", files=wfdb_pair, fs=None)
    token = api_token_create(user=other_clinician, name="t")[1]
    assert api(token).get(f"/api/v1/ecgs/{record.public_id}/job/").status_code == 404


def test_patient_listing_is_cursor_paginated(clinician, clinician_token, wfdb_pair, settings):
    for _ in range(3):
        services.ecg_submit(actor=clinician, pseudonym="PT-L", age=40, sex="F", files=wfdb_pair, fs=None)
    from clinical.api import views

    views._Newest.page_size = 2
    try:
        first = api(clinician_token).get("/api/v1/patients/PT-L/ecgs/").json()
        assert len(first["results"]) == 2 and first["next"]
        second = api(clinician_token).get(first["next"]).json()
        assert len(second["results"]) == 1 and second["next"] is None
    finally:
        views._Newest.page_size = 50


def test_model_info(clinician_token, weights_dir):
    info = api(clinician_token).get("/api/v1/model/").json()
    assert info["superclasses"] == ["NORM", "MI", "STTC", "CD", "HYP"] and info["members"] >= 2


def test_each_token_has_its_own_rate_limit(clinician, settings):
    from rest_framework.settings import api_settings

    cache.clear()
    old = api_settings.DEFAULT_THROTTLE_RATES
    from clinical.api.auth import PerTokenThrottle

    PerTokenThrottle.THROTTLE_RATES = {"api": "3/min"}
    try:
        a = api_token_create(user=clinician, name="a")[1]
        b = api_token_create(user=clinician, name="b")[1]
        codes = [api(a).get("/api/v1/patients/X/ecgs/").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        assert api(b).get("/api/v1/patients/X/ecgs/").status_code == 200
    finally:
        PerTokenThrottle.THROTTLE_RATES = old
        cache.clear()


def test_schema_and_docs_are_served(client, clinician):
    client.force_login(clinician)
    schema = client.get("/api/v1/schema/?format=json")
    assert schema.status_code == 200
    ops = {op.get("operationId") for path in json.loads(schema.content)["paths"].values() for op in path.values()}
    assert {"ecg_submit", "ecg_job", "ecg_result", "ecg_acknowledge", "patient_ecg_list", "model_info"} <= ops


def test_an_oversized_request_is_refused_in_the_error_shape(clinician_token, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 50_000
    body = json_body()
    resp = api(clinician_token).post("/api/v1/ecgs/", body, format="json")
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "too_large"
    assert not EcgRecord.objects.exists()


def test_an_unknown_age_is_sent_as_null_and_read_back_as_null(clinician_token, wfdb_pair):
    body = json_body(pid="PT-NOAGE")
    body["patient"]["age"] = None
    resp = api(clinician_token).post("/api/v1/ecgs/", body, format="json")
    assert resp.status_code == 202, resp.json()
    record = EcgRecord.objects.get(public_id=resp.json()["id"])
    assert record.age_at_ecg is None and record.patient.age is None
    files = [SimpleUploadedFile(name, data) for name, data in wfdb_pair.values()]
    resp = api(clinician_token).post("/api/v1/ecgs/", {"files": files, "pseudonym": "PT-NOAGE", "age": "",
                                                       "sex": "U"}, format="multipart")
    assert resp.status_code == 202, resp.json()
    listing = api(clinician_token).get("/api/v1/patients/PT-NOAGE/ecgs/").json()
    assert [r["age_at_ecg"] for r in listing["results"]] == [None, None]


def test_an_age_left_out_is_refused_not_taken_for_unknown(clinician_token):
    body = json_body(pid="PT-FORGOT")
    del body["patient"]["age"]
    resp = api(clinician_token).post("/api/v1/ecgs/", body, format="json")
    assert resp.status_code == 400 and "patient.age" in resp.json()["error"]["fields"]
    del body["patient"]["sex"]
    body["patient"]["age"] = 60
    resp = api(clinician_token).post("/api/v1/ecgs/", body, format="json")
    assert resp.status_code == 400 and "patient.sex" in resp.json()["error"]["fields"]
    assert not EcgRecord.objects.exists()


def test_a_token_records_its_last_use_to_the_minute_not_on_every_request(clinician, clinician_token):
    client = api(clinician_token)
    assert client.get("/api/v1/model/").status_code == 200
    token = ApiToken.objects.get(user=clinician)
    first = token.last_used_at
    assert first is not None
    client.get("/api/v1/model/")  # a poll half a second later writes nothing
    assert ApiToken.objects.get(pk=token.pk).last_used_at == first
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first - timedelta(minutes=2))
    client.get("/api/v1/model/")
    assert ApiToken.objects.get(pk=token.pk).last_used_at > first


def test_a_job_poll_reads_the_state_not_the_signal_or_the_measurements(clinician_token):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = api(clinician_token)
    job_id = client.post("/api/v1/ecgs/", json_body(), format="json").json()["id"]
    with CaptureQueriesContext(connection) as queries:
        job = client.get(f"/api/v1/ecgs/{job_id}/job/").json()
    assert job["state"] == "queued" and job["analysed_window"]["record_s"] == 10.0
    record_reads = [q["sql"] for q in queries.captured_queries if 'FROM "clinical_ecgrecord"' in q["sql"]]
    assert record_reads and not any('"clinical_ecgrecord"."signal"' in q or '"clinical_ecgrecord"."measurements"' in q
                                    for q in record_reads)
