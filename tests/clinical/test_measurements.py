"""This system's measurements in the product: stored at intake, criteria findings "by measurement" and their actions,
the audit, the API result and the result page (clinical.measurements and the services that call it)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from clinical import demo, services
from clinical.measurements import ACTION_CODES, API_KEYS, QTC_CRITICAL_CODE, STEMI_CODES, action_inputs
from clinical.models import AuditEvent, EcgRecord, Finding
from clinical.recommend import load_table
from clinical.tokens import api_token_create
from mlcore.preprocess import LEADS
from tests.mlcore.synthetic_beats import BeatSpec, ecg

MAX_STORED_BYTES = 50_000


def submit(actor, signal, fs=500, **kw):
    args = {"pseudonym": "PT-M", "age": 58, "sex": "M"} | kw
    return services.ecg_submit(actor=actor, files={"json": ("ecg.json", demo.as_json(signal, fs))}, fs=None, **args)


@pytest.fixture
def stemi_signal():
    """A clean 12-lead ECG with 3 mm (300 µV) ST elevation in V2-V4 (an anterior STEMI pattern)."""
    return ecg(500, BeatSpec(st_uv={"V2": 300, "V3": 300, "V4": 300}))[0]


def test_intake_stores_the_measurements_of_the_analysed_window_small(clinician):
    case = demo.CASES[0]  # normal sinus rhythm at 68/min
    record = submit(clinician, demo.synthesize(case, fs=500, seed=1))
    m = EcgRecord.objects.get(pk=record.pk).measurements
    assert set(API_KEYS) <= set(m) and m["convention"] == "exact" and m["version"]
    assert abs(m["heart_rate_bpm"] - case.heart_rate) <= 2
    assert m["qrs_ms"] < 120 and set(m["st_j_uv"]) == set(LEADS)
    assert m["median_beats"]["fs"] == 250 and set(m["median_beats"]["leads"]) == set(LEADS)
    assert m["fiducials"]["qrs_on"] < m["fiducials"]["qrs_off"]
    assert len(json.dumps(m)) <= MAX_STORED_BYTES


def test_the_measurements_are_of_the_window_analysed_not_of_the_whole_recording(clinician):
    # 20 s: 10 s at 60/min, then 10 s at 120/min; the analysis asked for the second half.
    slow = demo.synthesize(demo.DemoCase("slow", "X", 50, "M", 60), fs=500, seconds=10, seed=2)
    fast = demo.synthesize(demo.DemoCase("fast", "X", 50, "M", 120), fs=500, seconds=10, seed=3)
    record = services.ecg_submit(actor=clinician, pseudonym="PT-W", age=50, sex="M", fs=None, window_start_s=10.0,
                                 files={"json": ("ecg.json", demo.as_json(np.concatenate([slow, fast], axis=1),
                                                                         500))})
    assert abs(record.measurements["heart_rate_bpm"] - 120) <= 3
    again = services.ecg_reanalyse(actor=clinician, record=record, window_start_s=0.0)
    assert abs(again.measurements["heart_rate_bpm"] - 60) <= 3


def test_a_measurement_failure_never_refuses_the_upload(clinician, monkeypatch, weights_dir):
    def broken(*args, **kwargs):
        raise RuntimeError("delineation bug")

    monkeypatch.setattr("mlcore.measure.measure", broken)
    record = submit(clinician, demo.synthesize(demo.CASES[0], fs=500, seed=1))
    m = EcgRecord.objects.get(pk=record.pk).measurements
    assert all(m[k] is None for k in API_KEYS)
    assert "measurement failed" in m["reasons"]["qrs_ms"]
    job = services.inference_run(job_id=record.job.id)  # the model's analysis still runs
    assert job.state == "done" and not job.record.prediction.findings.filter(head="measurement").exists()


def test_stemi_by_measurement_is_a_finding_of_its_own_and_an_immediate_action(clinician, stemi_signal, weights_dir):
    record = submit(clinician, stemi_signal)
    services.inference_run(job_id=record.job.id)
    pred = EcgRecord.objects.get(pk=record.pk).prediction
    stemi = pred.findings.get(head=Finding.Head.MEASUREMENT, code="STEMI")
    assert "anterior" in stemi.display and "V3" in stemi.display
    assert stemi.probability is None and stemi.threshold is None
    assert all(stemi.rank > f.rank for f in pred.findings.exclude(head=Finding.Head.MEASUREMENT))  # after the model's
    action = pred.recommendations.get(rule_id="measure:STEMI_ANTERIOR")
    assert action.urgency == "immediate" and pred.top_urgency == "immediate"
    audit = AuditEvent.objects.get(action="inference.complete", object_id=str(record.public_id)).details
    assert "STEMI" in audit["criteria"]
    assert set(audit["measurements"]) == set(API_KEYS) and audit["measurements"]["st_j_uv"]["V3"] >= 200


def test_api_result_has_the_measurements_and_the_findings_by_measurement(clinician, stemi_signal, weights_dir):
    record = submit(clinician, stemi_signal)
    services.inference_run(job_id=record.job.id)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=clinician, name='t')[1]}")
    body = client.get(f"/api/v1/ecgs/{record.public_id}/result/").json()
    m = body["measurements"]
    assert set(m) == {*API_KEYS, "reasons"}
    assert all(m[k] is None or isinstance(m[k], int) for k in API_KEYS if not k.startswith("st_"))
    assert set(m["st_j_uv"]) == set(LEADS) and m["st_j_uv"]["V2"] >= 200
    measured = [f for f in body["findings"] if f["head"] == "measurement"]
    assert [f["code"] for f in measured if f["code"] == "STEMI"] and measured[0]["probability"] is None


def test_api_result_of_an_ecg_stored_before_measurements_says_why_they_are_null(clinician, stemi_signal):
    record = submit(clinician, stemi_signal)
    EcgRecord.objects.filter(pk=record.pk).update(measurements={})
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=clinician, name='t')[1]}")
    m = client.get(f"/api/v1/ecgs/{record.public_id}/result/").json()["measurements"]
    assert all(m[k] is None for k in API_KEYS) and set(m["reasons"]) == set(API_KEYS)


def test_the_schema_lists_every_measurement_field(client, clinician):
    client.force_login(clinician)
    schema = client.get("/api/v1/schema/?format=json").json()
    props = schema["components"]["schemas"]["ResultMeasurements"]["properties"]
    assert set(props) == {*API_KEYS, "reasons"}
    assert all(props[k].get("description") for k in API_KEYS)
    result = schema["components"]["schemas"]["Result"]["properties"]
    assert "measurements" in result


def test_result_page_shows_the_measurement_line_and_the_findings_by_measurement(client, clinician, stemi_signal,
                                                                               weights_dir):
    record = submit(clinician, stemi_signal)
    record.measurements = {**record.measurements, "pr_ms": None,
                           "reasons": {**record.measurements["reasons"], "pr_ms": "no consistent P wave"}}
    record.save(update_fields=["measurements"])
    services.inference_run(job_id=record.job.id)
    client.force_login(clinician)
    html = client.get(reverse("clinical:ecg-detail", args=[record.public_id])).content.decode()
    line = html.split('id="measurement-line"')[1].split("</p>")[0]
    m = record.measurements
    assert "This system's measurement" in line
    assert f"<b>{m['heart_rate_bpm']}</b>/min" in line and f"<b>{m['qrs_ms']}</b> ms" in line
    assert f"<b>{m['qt_ms']}</b>/<b>{m['qtc_bazett_ms']}</b> ms (Bazett)" in line
    assert 'title="PR: not measured — no consistent P wave"' in line and ">—</abbr>" in line
    by_measurement = html.split('id="findings-by-measurement"')[1].split("</ul>")[0]
    assert "ST elevation meeting STEMI criteria" in by_measurement


def test_every_criteria_code_maps_to_a_rule_of_the_action_table():
    rules = {r["id"] for r in load_table()["rules"]}
    for code in {*ACTION_CODES.values(), *STEMI_CODES.values(), QTC_CRITICAL_CODE}:
        assert f"measure:{code}" in rules, code


@pytest.mark.parametrize(("statement", "keys"), [
    ({"code": "AVB1", "severity": "abnormal", "values": {}}, ["measure:PR_LONG"]),
    ({"code": "LONG_QTC", "severity": "abnormal", "values": {}}, ["measure:QTC_LONG"]),
    ({"code": "LONG_QTC", "severity": "critical", "values": {}}, ["measure:QTC_LONG", "measure:QTC_500"]),
    ({"code": "LAD", "severity": "abnormal", "values": {}}, ["measure:AXIS_LEFT"]),
    ({"code": "STEMI", "severity": "critical", "values": {"territories": {"inferior": [], "lateral": []}}},
     ["measure:STEMI_INFERIOR", "measure:STEMI_LATERAL"]),
    ({"code": "STEMI", "severity": "critical", "values": {"territories": {"anteroseptal": []}}},
     ["measure:STEMI_ANTERIOR"]),
])
def test_criteria_statements_become_the_action_tables_keys(statement, keys):
    inputs = action_inputs([statement])
    assert [f.key for f in inputs] == keys and all(f.probability == 1.0 for f in inputs)
