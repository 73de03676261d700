"""The FHIR R4 bundle of a report: valid by fhir.resources' R4B models and the R4 value sets, with the codes and
units a receiver reads."""
from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib

import pytest

from clinical.reports.data import ReportStatement
from clinical.reports.fhir import FhirBundleError, check_bundle, report_fhir
from clinical.reports.pdf import report_pdf
from tests.clinical.report_fixtures import report, spikes_signal


@pytest.fixture(scope="module")
def pdf() -> bytes:
    return report_pdf(report(spikes_signal()))


def resources(bundle: dict, kind: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def test_a_preliminary_report_is_a_valid_collection_with_patient_report_and_observations(pdf):
    bundle = report_fhir(report(spikes_signal()), pdf)
    check_bundle(bundle)  # what a receiver using fhir.resources would do
    assert bundle["type"] == "collection"
    (patient,) = resources(bundle, "Patient")
    assert patient == {"resourceType": "Patient", "identifier": [
        {"system": "urn:ecgapp:patient-pseudonym", "value": "PT-0042"}]}  # nothing but the pseudonym
    (dr,) = resources(bundle, "DiagnosticReport")
    assert dr["status"] == "preliminary"
    assert dr["code"]["coding"] == [{"system": "http://loinc.org", "code": "11524-6", "display": "EKG study"}]
    assert dr["category"][0]["coding"][0]["code"] == "EC"
    assert dr["category"][0]["coding"][0]["system"] == "http://terminology.hl7.org/CodeSystem/v2-0074"
    assert dr["conclusion"].startswith("PRELIMINARY, not confirmed by a clinician.")
    assert [c["coding"][0]["code"] for c in dr["conclusionCode"]] == ["STTC", "AVB1"]
    assert dr["effectiveDateTime"] == "2026-11-30T08:15:00+00:00"
    form = dr["presentedForm"][0]
    assert form["contentType"] == "application/pdf"
    assert base64.b64decode(form["data"]) == pdf
    assert form["size"] == len(pdf) and base64.b64decode(form["hash"]) == hashlib.sha1(pdf).digest()
    refs = {r["reference"] for r in dr["result"]}
    urls = {e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"}
    assert refs == urls and dr["subject"]["reference"] == bundle["entry"][0]["fullUrl"]


def test_one_observation_per_measured_value_with_loinc_and_ucum(pdf):
    bundle = report_fhir(report(spikes_signal()), pdf)
    got = {o["code"]["coding"][0]["code"]: (o["valueQuantity"]["value"], o["valueQuantity"]["code"], o["status"])
           for o in resources(bundle, "Observation")}
    # qrs_axis_deg is None in the fixture: not measured, no Observation.
    assert got == {"8867-4": (60, "/min", "preliminary"), "8625-6": (160, "ms", "preliminary"),
                   "8633-0": (92, "ms", "preliminary"), "8634-8": (400, "ms", "preliminary"),
                   "8636-3": (400, "ms", "preliminary"), "8626-4": (60, "deg", "preliminary"),
                   "8638-9": (40, "deg", "preliminary")}
    for o in resources(bundle, "Observation"):
        assert o["valueQuantity"]["system"] == "http://unitsofmeasure.org"
    qtc = next(o for o in resources(bundle, "Observation") if o["code"]["coding"][0]["code"] == "8636-3")
    assert qtc["method"]["text"].startswith("Bazett")


def test_an_amended_report_carries_the_reviewer_and_confirmed_statements(pdf):
    data = report(spikes_signal(), status="amended", version=2, reviewer="rev-cy",
                  confirmed_at=dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC),
                  confirmed_statements=(ReportStatement("", "Sinus rhythm, first-degree AV block", "reviewer"),),
                  free_text="Unchanged from 2024.", comparison=("QTc +60 ms",), amendment_reason="PR re-measured")
    bundle = report_fhir(data, pdf)
    (dr,) = resources(bundle, "DiagnosticReport")
    assert dr["status"] == "amended" and dr["resultsInterpreter"] == [{"display": "rev-cy"}]
    assert dr["issued"] == "2026-12-01T10:00:00+00:00"
    assert dr["conclusionCode"] == [{"text": "Sinus rhythm, first-degree AV block"}]
    assert "Unchanged from 2024." in dr["conclusion"] and "QTc +60 ms" in dr["conclusion"]
    assert "PR re-measured" in dr["conclusion"] and "Computer statements: ST/T change" in dr["conclusion"]
    assert dr["identifier"][0]["value"].endswith("/v2")
    assert {o["status"] for o in resources(bundle, "Observation")} == {"amended"}


@pytest.mark.parametrize(("where", "change", "message"), [
    ("DiagnosticReport", {"status": "signed"}, "DiagnosticReport.status 'signed' is not one of"),
    ("Observation", {"status": "done"}, "Observation.status 'done' is not one of"),
    ("DiagnosticReport", {"code": None}, "not a valid FHIR bundle"),
    ("DiagnosticReport", {"presentedForm": [{"contentType": "application/pdf", "data": "not base64!!"}]},
     "not a valid FHIR bundle"),
    ("Patient", {"name": "PT-0042"}, "not a valid FHIR bundle"),
])
def test_a_broken_bundle_is_refused_saying_what_is_wrong(pdf, where, change, message):
    bundle = copy.deepcopy(report_fhir(report(spikes_signal()), pdf))
    target = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == where)
    for key, value in change.items():
        if value is None:
            del target[key]
        else:
            target[key] = value
    with pytest.raises(FhirBundleError, match=message):
        check_bundle(bundle)


def test_something_that_is_not_a_pdf_is_refused():
    with pytest.raises(FhirBundleError, match="presentedForm must be the report's PDF"):
        report_fhir(report(spikes_signal()), b"<html>")


def test_an_ecg_without_measurements_or_statements_is_still_a_valid_bundle(pdf):
    from clinical.measurements import api_values

    data = report(spikes_signal(), measurements=api_values({}), computer_statements=())
    bundle = report_fhir(data, pdf)
    assert resources(bundle, "Observation") == []
    (dr,) = resources(bundle, "DiagnosticReport")
    assert "result" not in dr and "conclusionCode" not in dr
    assert dr["conclusion"] == "PRELIMINARY, not confirmed by a clinician. Computer statements: nothing flagged."
