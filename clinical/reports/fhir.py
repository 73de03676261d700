"""The report as a FHIR R4 Bundle: Patient (pseudonym only), DiagnosticReport (the PDF as presentedForm) and one
Observation per measured value.

Bundle type "collection", not "document": a FHIR document needs a Composition as its first entry, an identifier and
a timestamp, and carries attestation semantics of its own (FHIR R4 documents.html, constraint bdl-11); our signed
unit is the DiagnosticReport itself (status, resultsInterpreter, presentedForm), so the bundle is only the set of
resources that belong together, for a receiver to store or post as it likes. Not "transaction": that would tell the
receiving server what to write.

Validated in the code path with fhir.resources' R4B models (fhir.resources 8 ships R5 as its default, R4B and STU3;
no R4 package). R4B (4.3.0) leaves Bundle, Patient, DiagnosticReport, Observation and Attachment as R4 (4.0.1) has
them for every element used here. fhir.resources checks structure, types, cardinality and base64, not the codes of
required bindings, so those used here are checked against the R4 value sets below.
"""
from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import datetime

from django.utils import timezone
from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from clinical.reports.data import PRELIMINARY, ReportData

FHIR_VERSION = "4.0"  # the mime-type parameter of R4 (FHIR R4 http.html#version-parameter)
CONTENT_TYPE = f"application/fhir+json; fhirVersion={FHIR_VERSION}"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
PSEUDONYM_SYSTEM = "urn:ecgapp:patient-pseudonym"
RECORD_SYSTEM = "urn:ecgapp:ecg"
REPORT_SYSTEM = "urn:ecgapp:ecg-report"
# Our statement codes are PTB-XL's SCP-ECG statement acronyms (model) and mlcore.criteria's codes (measurement);
# neither is SNOMED CT or LOINC, so each has a system of its own and the display says what it means.
STATEMENT_SYSTEMS = {"model": "urn:ecgapp:statement:ptbxl-scp", "measurement": "urn:ecgapp:statement:criteria"}
# DiagnosticReport code: LOINC 11524-6 "EKG study" (as in the HL7 PH eReferral IG example Observation
# ExampleERefObservationECG, build.fhir.org/ig/jldalisay95/ph-ereferral-jld). Category: HL7 v2 table 0074 "EC".
REPORT_CODE = {"system": LOINC, "code": "11524-6", "display": "EKG study"}
CATEGORY = {"system": V2_0074, "code": "EC", "display": "Electrocardiac (e.g., EKG, EEC, Holter)"}

# Measurement -> (LOINC code, LOINC display, UCUM code, method text). Codes verified in the US Core STU5 ValueSet
# "US Core Clinical Test Codes" (hl7.org/fhir/us/core/STU5/ValueSet-us-core-clinical-test-codes.html: 8625-6 P-R
# interval, 8633-0 QRS duration, 8634-8 Q-T interval, 8636-3 Q-T interval corrected, 8626-4 P wave axis, 8632-2 QRS
# axis, 8638-9 T wave axis) and the FHIR heart rate profile (hl7.org/fhir/heartrate.html, fixed code 8867-4, unit /min).
# Not exported: RR, P duration and Fridericia's QTc, for which no LOINC code was verified here (they stay in the
# API's measurements).
OBSERVATIONS = (
    ("heart_rate_bpm", "8867-4", "Heart rate", "/min", ""),
    ("pr_ms", "8625-6", "P-R interval", "ms", ""),
    ("qrs_ms", "8633-0", "QRS duration", "ms", ""),
    ("qt_ms", "8634-8", "Q-T interval", "ms", ""),
    ("qtc_bazett_ms", "8636-3", "Q-T interval corrected", "ms", "Bazett: QT / sqrt(RR in s)"),
    ("p_axis_deg", "8626-4", "P wave axis", "deg", ""),
    ("qrs_axis_deg", "8632-2", "QRS axis", "deg", ""),
    ("t_axis_deg", "8638-9", "T wave axis", "deg", ""),
)
# Required bindings, R4 value sets (hl7.org/fhir/R4/valueset-diagnostic-report-status.html,
# valueset-observation-status.html, valueset-bundle-type.html).
DIAGNOSTIC_REPORT_STATUS = ("registered", "partial", "preliminary", "final", "amended", "corrected", "appended",
                            "cancelled", "entered-in-error", "unknown")
OBSERVATION_STATUS = ("registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error",
                      "unknown")
BUNDLE_TYPES = ("document", "message", "transaction", "transaction-response", "batch", "batch-response", "history",
                "searchset", "collection")


class FhirBundleError(ValueError):
    """The bundle is not valid FHIR R4: what failed, element by element."""


def _urn(data: ReportData, kind: str) -> str:
    # The same report version gives the same ids, so a receiver that stores it twice can tell.
    return "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"{RECORD_SYSTEM}:{data.record_id}:v{data.version}:{kind}"))


def _instant(t: datetime) -> str:
    return (t if timezone.is_aware(t) else timezone.make_aware(t, timezone.utc)).isoformat()


def _concept(statement) -> dict:
    if statement.code and statement.origin in STATEMENT_SYSTEMS:
        return {"coding": [{"system": STATEMENT_SYSTEMS[statement.origin], "code": statement.code,
                            "display": statement.display}], "text": statement.display}
    return {"text": statement.display}


def _conclusion(data: ReportData) -> str:
    computer = "; ".join(s.display for s in data.computer_statements) or "nothing flagged"
    if data.status == PRELIMINARY:
        return f"PRELIMINARY, not confirmed by a clinician. Computer statements: {computer}."
    parts = ["; ".join(s.display for s in data.confirmed_statements or ()) or "no statements"]
    if data.free_text.strip():
        parts.append(data.free_text.strip())
    if data.comparison:
        parts.append("Compared with the prior ECG: " + "; ".join(data.comparison))
    if data.amendment_reason.strip():
        parts.append(f"Amended: {data.amendment_reason.strip()}")
    return " ".join(p if p.endswith(".") else p + "." for p in parts) + f" (Computer statements: {computer}.)"


def check_bundle(raw: dict) -> Bundle:
    """Validate a bundle with the R4B models and the required bindings used here; FhirBundleError says what fails."""
    try:
        bundle = Bundle.model_validate(raw)
    except ValidationError as exc:
        raise FhirBundleError(f"not a valid FHIR bundle: {exc}") from exc
    problems = []
    if bundle.type not in BUNDLE_TYPES:
        problems.append(f"Bundle.type {bundle.type!r} is not in the bundle-type value set")
    for i, entry in enumerate(bundle.entry or []):
        res = entry.resource
        kind = res.get_resource_type()
        allowed = {"DiagnosticReport": DIAGNOSTIC_REPORT_STATUS, "Observation": OBSERVATION_STATUS}.get(kind)
        if allowed is not None and res.status not in allowed:
            problems.append(f"entry[{i}] {kind}.status {res.status!r} is not one of {', '.join(allowed)}")
    if problems:
        raise FhirBundleError("; ".join(problems))
    return bundle


def report_fhir(data: ReportData, pdf: bytes, *, issued: datetime | None = None) -> dict:
    """The FHIR R4 collection bundle of the report, validated before it is returned (FhirBundleError if not).

    ``issued``: when this version of the report was made available; the confirmation time for a confirmed report,
    else now.
    """
    if not pdf.startswith(b"%PDF-"):
        raise FhirBundleError("presentedForm must be the report's PDF")
    issued = issued or data.confirmed_at or timezone.now()
    patient_url, report_url = _urn(data, "patient"), _urn(data, "report")
    effective = {"effectiveDateTime": _instant(data.acquired_at)} if data.acquired_at else {}
    obs_status = data.status  # preliminary / final / amended: the same word in both value sets
    observations = []
    for key, code, display, unit, method in OBSERVATIONS:
        value = data.measurements.get(key)
        if value is None:
            continue
        obs = {"resourceType": "Observation", "status": obs_status,
               "category": [{"coding": [{"system": OBS_CATEGORY, "code": "procedure", "display": "Procedure"}]}],
               "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
               "subject": {"reference": patient_url}, **effective, "issued": _instant(issued),
               "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}}
        if key in data.reviewer_measured:
            obs["performer"] = [{"display": data.reviewer}]
            method = "; ".join(m for m in ("measured by the reviewer (calipers) or derived from their values",
                                           method) if m)
        else:
            obs["device"] = {"display": f"ECG-DS measurements (model {data.model_version})"}
        if method:
            obs["method"] = {"text": method}
        observations.append((_urn(data, key), obs))
    statements = data.confirmed_statements if data.confirmed_statements is not None else data.computer_statements
    report = {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": REPORT_SYSTEM, "value": f"{data.record_id}/v{data.version}"},
                       {"system": RECORD_SYSTEM, "value": data.record_id}],
        "status": data.status, "category": [{"coding": [CATEGORY]}],
        "code": {"coding": [REPORT_CODE], "text": "12-lead ECG"},
        "subject": {"reference": patient_url}, **effective, "issued": _instant(issued),
        "result": [{"reference": url} for url, _ in observations],
        "conclusion": _conclusion(data),
        "conclusionCode": [_concept(s) for s in statements],
        "presentedForm": [{"contentType": "application/pdf", "data": base64.b64encode(pdf).decode("ascii"),
                           "size": len(pdf), "hash": base64.b64encode(hashlib.sha1(pdf).digest()).decode("ascii"),
                           "title": f"ECG report {data.patient_pseudonym} ({data.status}, version {data.version})",
                           "creation": _instant(issued)}],
    }
    if data.reviewer:
        report["resultsInterpreter"] = [{"display": data.reviewer}]
    if not report["conclusionCode"]:
        del report["conclusionCode"]
    if not report["result"]:
        del report["result"]
    raw = {"resourceType": "Bundle", "type": "collection", "timestamp": _instant(issued), "entry": [
        {"fullUrl": patient_url, "resource": {"resourceType": "Patient", "identifier": [
            {"system": PSEUDONYM_SYSTEM, "value": data.patient_pseudonym}]}},
        {"fullUrl": report_url, "resource": report},
        *({"fullUrl": url, "resource": obs} for url, obs in observations)]}
    check_bundle(raw)
    return raw
