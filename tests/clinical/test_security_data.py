"""Issue 12, patient data: reads are audited, idempotency keys are bound to their request, each ECG keeps the
demographics given with it, and the reviewer API can record a class the model missed."""
from __future__ import annotations

import importlib
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from clinical import selectors, services
from clinical.models import Acknowledgement, AuditEvent, EcgRecord, IdempotencyKey, Patient, Prediction
from clinical.tokens import api_token_create
from tests.clinical.conftest import make_result
from tests.clinical.test_api import json_body

ALL_CLASSES = {"NORM": 0.05, "MI": 0.9, "STTC": 0.2, "CD": 0.1, "HYP": 0.3}


def api(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=user, name='test')[1]}")
    return client


def submit(user, files, pseudonym="PT-0042", age=63, sex="F") -> EcgRecord:
    return services.ecg_submit(actor=user, pseudonym=pseudonym, age=age, sex=sex, files=files, fs=None)


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


# Row 4: every read of patient data is audited, page and API, list and detail.

def test_reading_a_result_through_the_api_is_audited_but_polling_the_job_is_not(clinician, wfdb_pair):
    record = submit(clinician, wfdb_pair)
    make_result(record)
    client = api(clinician)
    assert client.get(f"/api/v1/ecgs/{record.public_id}/job/").status_code == 200
    assert events("ecg.view") == []  # analysis state only: no patient data (decided in clinical.access)
    assert client.get(f"/api/v1/ecgs/{record.public_id}/result/?evidence=1").status_code == 200
    [view] = events("ecg.view")
    assert view.actor == clinician and view.object_type == "EcgRecord" and view.object_id == str(record.public_id)
    assert view.details == {"via": "api", "view": "ecg_result", "evidence": True}


def test_the_patient_ecg_list_api_is_audited_with_the_ecgs_it_returned(clinician, wfdb_pair):
    first, second = submit(clinician, wfdb_pair), submit(clinician, wfdb_pair)
    body = api(clinician).get("/api/v1/patients/PT-0042/ecgs/").json()
    [listed] = events("ecg.list")
    assert listed.actor == clinician and (listed.object_type, listed.object_id) == ("Patient", "PT-0042")
    assert listed.details["via"] == "api" and listed.details["count"] == 2
    assert listed.details["ecgs"] == [r["id"] for r in body["results"]] == [str(second.public_id),
                                                                            str(first.public_id)]
    # The compliance officer's patient filter finds the read.
    assert listed in selectors.audit_events(patient="PT-0042")


def test_the_ecg_list_page_is_audited_with_the_ecgs_and_patients_shown(client, clinician, wfdb_pair):
    record = submit(clinician, wfdb_pair)
    client.force_login(clinician)
    assert "PT-0042" in client.get(reverse("clinical:ecg-list")).content.decode()
    [listed] = events("ecg.list")
    assert listed.actor == clinician
    assert listed.details == {"via": "page", "view": "ecg_list", "count": 1, "patients": ["PT-0042"],
                              "ecgs": [str(record.public_id)]}


def test_the_review_queue_page_is_audited_with_the_results_shown(client, clinician, reviewer, wfdb_pair):
    record = submit(clinician, wfdb_pair, pseudonym="PT-URG")
    make_result(record, "immediate")
    client.force_login(reviewer)
    assert "PT-URG" in client.get(reverse("clinical:review-queue")).content.decode()
    [listed] = events("ecg.list")
    assert listed.actor == reviewer and listed.details["view"] == "review_queue"
    assert listed.details["patients"] == ["PT-URG"] and listed.details["ecgs"] == [str(record.public_id)]


def test_the_audit_trail_page_is_audited_like_its_csv_export(client, compliance_officer):
    client.force_login(compliance_officer)
    assert client.get(reverse("clinical:audit-list"), {"patient": "PT-0042"}).status_code == 200
    [viewed] = events("audit.view")
    assert viewed.actor == compliance_officer and viewed.details["patient"] == "PT-0042"


# Row 5: an Idempotency-Key is bound to the request it was first used with.

def test_the_same_key_with_another_patient_is_refused_with_422_not_answered_with_the_first_ecg(clinician):
    client = api(clinician)
    first = client.post("/api/v1/ecgs/", json_body(pid="PT-0042"), format="json", HTTP_IDEMPOTENCY_KEY="order-77")
    again = client.post("/api/v1/ecgs/", json_body(pid="PT-0042"), format="json", HTTP_IDEMPOTENCY_KEY="order-77")
    assert first.status_code == again.status_code == 202 and first.json()["id"] == again.json()["id"]
    other = client.post("/api/v1/ecgs/", json_body(pid="PT-9999"), format="json", HTTP_IDEMPOTENCY_KEY="order-77")
    assert other.status_code == 422
    error = other.json()["error"]
    assert error["code"] == "idempotency_mismatch" and "different request" in error["message"]
    assert list(error["fields"]) == ["Idempotency-Key"]
    assert str(first.json()["id"]) not in other.content.decode()
    assert EcgRecord.objects.count() == 1 and not Patient.objects.filter(pseudonym="PT-9999").exists()
    refused = events("ecg.upload_refused")
    assert len(refused) == 1 and refused[0].details["field"] == "Idempotency-Key"


def test_the_same_key_with_other_ecg_bytes_or_other_demographics_is_refused(clinician, wfdb_pair):
    client = api(clinician)

    def post(age, files):
        return client.post("/api/v1/ecgs/", {"files": [SimpleUploadedFile(n, d) for n, d in files.values()],
                                             "pseudonym": "PT-W", "age": age, "sex": "M"},
                           format="multipart", HTTP_IDEMPOTENCY_KEY="batch-1/7")

    assert post(50, wfdb_pair).status_code == 202
    assert post(50, wfdb_pair).status_code == 202
    assert post(51, wfdb_pair).status_code == 422
    name, data = wfdb_pair["dat"]
    changed = wfdb_pair | {"dat": (name, data[:-2] + bytes([data[-2] ^ 1, data[-1]]))}
    assert post(50, changed).status_code == 422
    assert EcgRecord.objects.count() == 1 and len(IdempotencyKey.objects.get().request_sha256) == 64


@pytest.mark.parametrize("key", ["k" * 101, "order-\u00e9", "order\x7f1"])
def test_a_key_that_is_too_long_or_not_printable_ascii_is_refused_not_cut(clinician, key):
    resp = api(clinician).post("/api/v1/ecgs/", json_body(), format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == "invalid" and "Idempotency-Key" in error["fields"]
    assert "printable ASCII" in error["message"]
    assert not EcgRecord.objects.exists()


def test_a_key_of_100_characters_replays_and_one_of_101_is_not_cut_to_it(clinician):
    client = api(clinician)
    first = client.post("/api/v1/ecgs/", json_body(), format="json", HTTP_IDEMPOTENCY_KEY="k" * 100)
    again = client.post("/api/v1/ecgs/", json_body(), format="json", HTTP_IDEMPOTENCY_KEY="k" * 100)
    assert first.status_code == again.status_code == 202 and first.json()["id"] == again.json()["id"]
    longer = client.post("/api/v1/ecgs/", json_body(), format="json", HTTP_IDEMPOTENCY_KEY="k" * 101)
    assert longer.status_code == 400 and EcgRecord.objects.count() == 1


# Row 6: each ECG keeps the age and sex given with it; changes to a shared patient's are audited.

def test_another_clinicians_upload_changes_neither_the_earlier_ecgs_page_nor_goes_unaudited(
        client, clinician, other_clinician, wfdb_pair):
    earlier = submit(clinician, wfdb_pair, pseudonym="DEMO-0003", age=63, sex="F")
    submit(other_clinician, wfdb_pair, pseudonym="DEMO-0003", age=5, sex="U")
    client.force_login(clinician)
    page = client.get(reverse("clinical:ecg-detail", args=[earlier.public_id])).content.decode()
    assert "63 y · Female" in page
    [change] = events("patient.change")
    assert change.actor == other_clinician and (change.object_type, change.object_id) == ("Patient", "DEMO-0003")
    assert change.details["old"] == {"age": 63} and change.details["new"] == {"age": 5}
    # The unknown sex did not erase the patient's, and the new ECG keeps its own "unknown".
    assert Patient.objects.get().sex == "F"
    assert EcgRecord.objects.exclude(pk=earlier.pk).get().sex_at_ecg == "U"


def test_a_later_upload_with_another_sex_does_not_rewrite_the_earlier_ecg(client, clinician, other_clinician,
                                                                          wfdb_pair):
    earlier = submit(clinician, wfdb_pair, pseudonym="DEMO-0003", age=63, sex="F")
    submit(other_clinician, wfdb_pair, pseudonym="DEMO-0003", age=63, sex="M")
    client.force_login(clinician)
    page = client.get(reverse("clinical:ecg-detail", args=[earlier.public_id])).content.decode()
    assert "63 y · Female" in page
    assert "63 y / Female" in client.get(reverse("clinical:ecg-list")).content.decode()
    [row] = api(clinician).get("/api/v1/patients/DEMO-0003/ecgs/").json()["results"]
    assert row["sex_at_ecg"] == "F" and row["age_at_ecg"] == 63
    [change] = events("patient.change")
    assert change.details == {"old": {"sex": "F"}, "new": {"sex": "M"}, "ecg": change.details["ecg"]}
    assert change in selectors.audit_events(patient="DEMO-0003")


def test_fairness_and_drift_group_an_ecg_by_the_sex_given_with_it(clinician, other_clinician, wfdb_pair,
                                                                   weights_dir):
    from mlcore.reference import Reference
    from monitoring.drift import production_rows
    from monitoring.fairness import age_bands, urgent_counts

    record = submit(clinician, wfdb_pair, pseudonym="DEMO-0003", age=63, sex="F")
    prediction = make_result(record, "urgent")
    submit(other_clinician, wfdb_pair, pseudonym="DEMO-0003", age=63, sex="M")  # the patient's row now says M
    now = timezone.now()
    counts = urgent_counts(now - timedelta(hours=1), now + timedelta(hours=1), age_bands([40, 65]))
    assert counts[("sex", "Female")].n == 1 and ("sex", "Male") not in counts
    assert production_rows([prediction.pk], Reference.load(weights_dir))["sex"] == ["F"]


def test_the_migration_fills_each_ecg_with_its_patients_sex(clinician, wfdb_pair):
    from django.apps import apps

    record = submit(clinician, wfdb_pair, sex="M")
    EcgRecord.objects.filter(pk=record.pk).update(sex_at_ecg="U")
    migration = importlib.import_module("clinical.migrations.0008_sex_at_ecg_idempotency_request")
    migration.sex_at_ecg_from_patient(apps, None)
    record.refresh_from_db()
    assert record.sex_at_ecg == "M"


# Row 13: the reviewer API records "present but not flagged", as the page does.

@pytest.fixture
def mi_result(clinician, wfdb_pair) -> Prediction:
    prediction = make_result(submit(clinician, wfdb_pair, pseudonym="PT-URG"), "immediate")
    Prediction.objects.filter(pk=prediction.pk).update(superclass=ALL_CLASSES)
    return prediction


def test_the_acknowledge_api_records_a_class_the_model_missed(reviewer, mi_result):
    url = f"/api/v1/ecgs/{mi_result.record.public_id}/acknowledge/"
    resp = api(reviewer).post(url, {"verdict": "agree", "note": "MI agreed; LVH by voltage as well",
                                    "findings": {"superclass:MI": "agree"}, "missed": ["HYP"]}, format="json")
    assert resp.status_code == 200
    ack = Acknowledgement.objects.get()
    assert ack.finding_verdicts == {"superclass:MI": "agree", "superclass:HYP": "missed"}
    assert ack.outcomes == {"NORM": "tn", "MI": "tp", "STTC": "tn", "CD": "tn", "HYP": "fn"}
    assert events("result.acknowledge")[0].details["findings"]["superclass:HYP"] == "missed"


@pytest.mark.parametrize("missed", [["MI"], ["XYZ"], ["HYP", "NOPE"]])
def test_a_missed_class_the_model_flagged_or_does_not_know_is_refused(reviewer, mi_result, missed):
    url = f"/api/v1/ecgs/{mi_result.record.public_id}/acknowledge/"
    resp = api(reviewer).post(url, {"verdict": "agree", "note": "checked", "missed": missed}, format="json")
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == "invalid" and list(error["fields"]) == ["missed"]
    assert "did not flag" in error["message"] and "CD, HYP, NORM, STTC" in error["message"]
    assert not Acknowledgement.objects.exists()


def test_the_schema_documents_missed_on_acknowledge_and_422_on_submit(client, clinician):
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator(api_version="v1").get_schema(request=None, public=True)
    missed = schema["components"]["schemas"]["AcknowledgeInputRequest"]["properties"]["missed"]
    assert missed["type"] == "array" and "did not flag" in missed["description"]
    submit_op = schema["paths"]["/api/v1/ecgs/"]["post"]
    assert "422" in submit_op["responses"]
    [header] = [p for p in submit_op["parameters"] if p["name"] == "Idempotency-Key"]
    assert "100 printable ASCII" in header["description"]
