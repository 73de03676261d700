"""Report downloads of a really analysed ECG: the selector, the API's PDF / FHIR / HL7 endpoints and the page's PDF,
with the result's access rules and one report.downloaded audit event per download."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from rest_framework.test import APIClient

from clinical import demo, services
from clinical.audit import AuditAction
from clinical.models import AuditEvent, EcgRecord
from clinical.reports import selectors as report_selectors
from clinical.reports.data import Confirmation, ReportDataError, ReportStatement
from clinical.reports.fhir import check_bundle
from clinical.reports.selectors import report_data
from clinical.tokens import api_token_create
from mlcore.preprocess import LEADS
from tests.mlcore.synthetic_beats import BeatSpec, ecg

SHOTS = Path(os.environ.get("ECGAPP_SCREENSHOTS", Path(__file__).resolve().parents[2] / "var" / "screenshots"))


def submit(actor, signal, fs=500):
    return services.ecg_submit(actor=actor, files={"json": ("ecg.json", demo.as_json(signal, fs))}, fs=None,
                               pseudonym="PT-REP", age=61, sex="M")


@pytest.fixture
def analysed(clinician, weights_dir) -> EcgRecord:
    """A clinician's ECG with 3 mm ST elevation in V2-V4, analysed by the ensemble."""
    record = submit(clinician, ecg(500, BeatSpec(st_uv={"V2": 300, "V3": 300, "V4": 300}))[0])
    services.inference_run(job_id=record.job.id)
    return EcgRecord.objects.get(pk=record.pk)


def api(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=user, name='reports')[1]}")
    return client


def downloads(record) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=AuditAction.REPORT_DOWNLOADED, object_id=str(record.public_id))
                .order_by("id"))


def test_the_selector_builds_the_preliminary_report_from_the_stored_result(analysed):
    data = report_data(record=analysed)
    assert data.status == "preliminary" and data.confirmed_statements is None and data.reviewer is None
    assert data.patient_pseudonym == "PT-REP" and data.age == 61 and data.sex == "M"
    assert data.signal_mv.shape == (12, 5000) and data.leads == LEADS and data.fs == 500
    assert data.measurements["heart_rate_bpm"] == analysed.measurements["heart_rate_bpm"]
    measured = [s for s in data.computer_statements if s.origin == "measurement"]
    assert any(s.code == "STEMI" and "anterior" in s.display for s in measured)
    model = [s for s in data.computer_statements if s.origin == "model"]
    assert [s.code for s in model] == [f.code for f in analysed.prediction.findings.exclude(head="measurement")
                                       if (analysed.prediction.operating_points.get(f.head, {}).get(f.code) or {})
                                       .get("validated") is not False]
    event = AuditEvent.objects.get(action="inference.complete", object_id=str(analysed.public_id))
    assert data.audit_reference == event.hash
    assert data.model_version == analysed.prediction.model_version


def test_the_confirmed_hook_turns_the_report_final_and_refuses_an_incomplete_one(analysed, monkeypatch):
    at = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
    confirmed = Confirmation(statements=(ReportStatement("", "Anterior STEMI", "reviewer"),), reviewer="rev-cy",
                             confirmed_at=at, version=1, free_text="Cath lab called.")
    monkeypatch.setattr(report_selectors, "_confirmed", lambda record: confirmed)
    data = report_data(record=analysed)
    assert (data.status, data.reviewer, data.confirmed_at, data.free_text) == ("final", "rev-cy", at,
                                                                               "Cath lab called.")
    assert data.confirmed_statements == confirmed.statements and data.computer_statements  # both kept
    amended_without_reason = Confirmation(statements=(), reviewer="rev-cy", confirmed_at=at, version=2,
                                          status="amended")
    monkeypatch.setattr(report_selectors, "_confirmed", lambda record: amended_without_reason)
    with pytest.raises(ReportDataError, match="amendment_reason"):
        report_data(record=analysed)


def test_api_pdf_download_is_audited_with_what_was_sent(analysed, clinician):
    resp = api(clinician).get(f"/api/v1/ecgs/{analysed.public_id}/report.pdf", HTTP_ACCEPT="application/pdf")
    assert resp.status_code == 200 and resp["Content-Type"] == "application/pdf"
    assert resp.content.startswith(b"%PDF-") and resp["X-Report-Status"] == "preliminary"
    assert resp["Content-Disposition"].startswith('attachment; filename="ecg-report-PT-REP-')
    (event,) = downloads(analysed)
    assert event.actor_label == clinician.username
    assert event.details == {"format": "pdf", "via": "api", "paper": "A4", "status": "preliminary", "version": 1,
                             "bytes": len(resp.content), "sha256": hashlib.sha256(resp.content).hexdigest()}
    # The page as paper, for people to look at: var/screenshots/report-pdf.png (300 dpi).
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / "report-pdf.pdf").write_bytes(resp.content)
    if shutil.which("pdftoppm"):
        subprocess.run(["pdftoppm", "-r", "300", "-png", "-singlefile", str(SHOTS / "report-pdf.pdf"),
                        str(SHOTS / "report-pdf")], check=True)


def test_api_fhir_bundle_validates_and_carries_the_measurements(analysed, reviewer):
    resp = api(reviewer).get(f"/api/v1/ecgs/{analysed.public_id}/report/fhir/?paper=Letter")
    assert resp.status_code == 200 and resp["Content-Type"] == "application/fhir+json; fhirVersion=4.0"
    bundle = json.loads(resp.content)
    check_bundle(bundle)
    obs = {e["resource"]["code"]["coding"][0]["code"]: e["resource"]["valueQuantity"]["value"]
           for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"}
    m = analysed.measurements
    assert obs["8867-4"] == m["heart_rate_bpm"] and obs["8633-0"] == m["qrs_ms"]
    report = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport")
    assert report["status"] == "preliminary" and "STEMI" in {c.get("coding", [{}])[0].get("code")
                                                             for c in report["conclusionCode"]}
    assert base64.b64decode(report["presentedForm"][0]["data"]).startswith(b"%PDF-")
    (event,) = downloads(analysed)
    assert (event.details["format"], event.details["paper"], event.actor_label) == ("fhir", "Letter",
                                                                                    reviewer.username)


def test_api_hl7_message_parses_and_carries_the_measurements(analysed, clinician):
    resp = api(clinician).get(f"/api/v1/ecgs/{analysed.public_id}/report/hl7/")
    assert resp.status_code == 200 and resp["Content-Type"] == "x-application/hl7-v2+er7"
    msg = parse_message(resp.content.decode(), validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=True)
    msg.validate()
    nm = {o.obx.obx_3.to_er7().split("^")[0]: o.obx.obx_5.to_er7()
          for o in msg.ORU_R01_PATIENT_RESULT.ORU_R01_ORDER_OBSERVATION.ORU_R01_OBSERVATION
          if o.obx.obx_2.to_er7() == "NM"}
    assert nm["8867-4"] == str(analysed.measurements["heart_rate_bpm"])
    assert nm["8625-6"] == str(analysed.measurements["pr_ms"])
    assert [e.details["format"] for e in downloads(analysed)] == ["hl7"]


@pytest.mark.parametrize("path", ["report.pdf", "report/fhir/", "report/hl7/"])
def test_someone_who_cannot_see_the_ecg_gets_404_and_nothing_is_audited(analysed, other_clinician, integrator,
                                                                       path):
    for user in (other_clinician, integrator):
        resp = api(user).get(f"/api/v1/ecgs/{analysed.public_id}/{path}")
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
    assert APIClient().get(f"/api/v1/ecgs/{analysed.public_id}/{path}").status_code == 401
    assert downloads(analysed) == []


@pytest.mark.parametrize("path", ["report.pdf", "report/fhir/", "report/hl7/"])
def test_before_the_result_exists_the_api_answers_409_and_audits_nothing(clinician, path):
    record = submit(clinician, demo.synthesize(demo.CASES[0], fs=500, seed=2))
    resp = api(clinician).get(f"/api/v1/ecgs/{record.public_id}/{path}", HTTP_ACCEPT="application/pdf")
    assert resp.status_code == 409 and resp["Content-Type"] == "application/json"
    assert resp.json()["error"]["code"] == "result_not_ready"
    assert "no result yet" in resp.json()["error"]["message"]
    assert downloads(record) == []


def test_an_unknown_paper_is_a_400_on_paper_and_audits_nothing(analysed, clinician):
    resp = api(clinician).get(f"/api/v1/ecgs/{analysed.public_id}/report.pdf?paper=A3")
    assert resp.status_code == 400 and "paper must be one of A4, Letter" in resp.json()["error"]["fields"]["paper"][0]
    assert downloads(analysed) == []


def test_the_result_page_links_the_pdf_and_the_page_download_is_audited(analysed, client, clinician):
    client.force_login(clinician)
    page = client.get(f"/ecgs/{analysed.public_id}/").content.decode()
    assert f'href="/ecgs/{analysed.public_id}/report.pdf"' in page and 'id="report-pdf"' in page
    resp = client.get(f"/ecgs/{analysed.public_id}/report.pdf")
    assert resp.status_code == 200 and resp.content.startswith(b"%PDF-") and "no-store" in resp["Cache-Control"]
    (event,) = downloads(analysed)
    assert (event.details["format"], event.details["via"]) == ("pdf", "page")


def test_the_page_download_keeps_the_result_access_rules(analysed, client, other_clinician, clinician):
    client.force_login(other_clinician)
    assert client.get(f"/ecgs/{analysed.public_id}/report.pdf").status_code == 404
    client.logout()
    assert client.get(f"/ecgs/{analysed.public_id}/report.pdf").status_code == 302  # to the login page
    pending = submit(clinician, demo.synthesize(demo.CASES[0], fs=500, seed=3))
    client.force_login(clinician)
    resp = client.get(f"/ecgs/{pending.public_id}/report.pdf", follow=True)
    assert resp.redirect_chain[-1][0] == f"/ecgs/{pending.public_id}/"
    assert "no result yet" in resp.content.decode()
    assert downloads(analysed) == [] and downloads(pending) == []


def reading_summary(**changes) -> dict:
    """The reading workflow's summary of its latest confirmed version, as its reading_for_report returns it."""
    return {"confirmed_statements": ["ST elevation meeting STEMI criteria, anterior (V2, V3, V4)", "Sinus rhythm"],
            "free_text": "Cath lab called.", "status": "amended", "version": 2, "reviewer": "rev-cy",
            "confirmed_at": dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC), "amendment_reason": "PR re-measured",
            "comparison": ["New ST elevation in V2-V4 since 2026-11-02"],
            "measurements": {"pr_ms": 216.0, "qrs_ms": None, "heart_rate_bpm": 75},
            "measurement_overrides": {"pr_ms": {"reviewer": 216.0, "computer": 158}}, "prior_ecg": None,
            "signed_with": "password"} | changes


def test_a_confirmed_reading_reaches_every_format_with_the_reviewers_measurements(analysed, clinician, monkeypatch,
                                                                                  tmp_path):
    monkeypatch.setattr(report_selectors, "_confirmed",
                        lambda record: report_selectors.confirmation_from_reading(reading_summary()))
    data = report_data(record=analysed)
    assert (data.status, data.version, data.reviewer, data.reviewer_measured) == ("amended", 2, "rev-cy", ("pr_ms",))
    assert data.measurements["pr_ms"] == 216.0 and "pr_ms" not in data.measurements["reasons"]
    assert data.measurements["qrs_ms"] is None  # the reviewer's confirmed value, printed as not measured
    assert [s.origin for s in data.confirmed_statements] == ["reviewer", "reviewer"]

    client = api(clinician)
    pdf = client.get(f"/api/v1/ecgs/{analysed.public_id}/report.pdf")
    assert pdf["X-Report-Status"] == "amended"
    (tmp_path / "r.pdf").write_bytes(pdf.content)
    text = subprocess.run(["pdftotext", "-layout", str(tmp_path / "r.pdf"), "-"], check=True, capture_output=True,
                          text=True).stdout if shutil.which("pdftotext") else ""
    if text:
        assert "PR 216* ms" in text and "* measured by the reviewer (rev-cy)" in text
        assert "AMENDED (version 2)" in text and "Amendment: PR re-measured" in text
        assert "New ST elevation in V2-V4 since 2026-11-02" in text and "UNCONFIRMED" not in text
    bundle = json.loads(client.get(f"/api/v1/ecgs/{analysed.public_id}/report/fhir/").content)
    check_bundle(bundle)
    pr = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"
              and e["resource"]["code"]["coding"][0]["code"] == "8625-6")
    assert pr["valueQuantity"]["value"] == 216.0 and pr["performer"] == [{"display": "rev-cy"}]
    assert pr["status"] == "amended" and "device" not in pr
    er7 = client.get(f"/api/v1/ecgs/{analysed.public_id}/report/hl7/").content.decode()
    msg = parse_message(er7, validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=True)
    msg.validate()
    obx = {o.obx.obx_3.to_er7().split("^")[0]: o.obx
           for o in msg.ORU_R01_PATIENT_RESULT.ORU_R01_ORDER_OBSERVATION.ORU_R01_OBSERVATION
           if o.obx.obx_2.to_er7() == "NM"}
    assert obx["8625-6"].obx_5.to_er7() == "216" and obx["8625-6"].obx_16.to_er7() == "rev-cy"
    assert obx["8625-6"].obx_17.to_er7().startswith("CALIPER^") and obx["8867-4"].obx_16.to_er7() == ""
    assert [e.details["status"] for e in downloads(analysed)] == ["amended"] * 3


def test_a_reading_summary_without_what_a_signed_report_needs_is_refused(analysed, monkeypatch):
    with pytest.raises(ReportDataError, match="lacks reviewer, confirmed_at"):
        report_selectors.confirmation_from_reading(reading_summary(reviewer=None, confirmed_at=None))
    monkeypatch.setattr(report_selectors, "_confirmed", lambda record: report_selectors.confirmation_from_reading(
        reading_summary(measurement_overrides={"qtc_hodges_ms": {}})))
    with pytest.raises(ReportDataError, match="reviewer_measured names measurements"):
        report_data(record=analysed)
    assert report_selectors.confirmation_from_reading(None) is None
