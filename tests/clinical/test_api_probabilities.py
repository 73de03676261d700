"""The API result says everything the page says: every calibrated probability with its threshold and operating
point, and what the system cannot assess, both listed in the OpenAPI schema."""
from __future__ import annotations

import json

import jsonschema
from django.test import Client

from clinical import services
from clinical.models import Prediction
from tests.clinical.conftest import make_result
from tests.clinical.test_api import api, clinician_token  # noqa: F401  (fixture)


def _upload(user, files):
    return services.ecg_submit(actor=user, pseudonym="PT-PROB", age=58, sex="M", files=files, fs=None)


def _openapi_3_0_to_json_schema(node):
    """OpenAPI 3.0 says "nullable: true" where JSON Schema says type [..., "null"]; refs point at components."""
    if isinstance(node, dict):
        node = {k: _openapi_3_0_to_json_schema(v) for k, v in node.items()}
        if node.pop("nullable", False):
            if "type" in node:
                node["type"] = [node["type"], "null"]
            else:
                node = {"anyOf": [node, {"type": "null"}]}
        if "$ref" in node:
            node["$ref"] = node["$ref"].replace("#/components/schemas/", "#/$defs/")
        return node
    if isinstance(node, list):
        return [_openapi_3_0_to_json_schema(v) for v in node]
    return node


def _result_schema(user) -> dict:
    client = Client()
    client.force_login(user)
    schema = json.loads(client.get("/api/v1/schema/?format=json").content)
    defs = _openapi_3_0_to_json_schema(schema["components"]["schemas"])
    return {"$ref": "#/$defs/Result", "$defs": defs}


def test_every_label_comes_with_its_probability_threshold_and_operating_point(clinician, clinician_token,  # noqa: F811
                                                                              wfdb_pair, weights_dir):
    record = _upload(clinician, wfdb_pair)
    services.inference_run(job_id=record.job.id)
    body = api(clinician_token).get(f"/api/v1/ecgs/{record.public_id}/result/").json()
    prediction = Prediction.objects.get(record=record)
    probs = body["probabilities"]
    labels = {(row["head"], row["code"]): row for row in probs["labels"]}
    # All 5 classes and all 71 statements, not only the flagged findings.
    assert len(labels) == len(prediction.superclass) + len(prediction.statements) == 76
    assert len(body["findings"]) < len(labels)
    assert probs["calibration_folds"] == [9] and "thresholds by target" in probs["calibration_method"]
    assert probs["thresholds_missing_reason"] is None
    names = {"f1_optimal", "floor", "sensitivity_target", "specificity_target", "f1_optimal_unvalidated_target",
             "floor_unvalidated_target"}
    for row in labels.values():
        assert row["threshold"] is not None and row["operating_point"]["name"] in names
        assert isinstance(row["operating_point"]["validated"], bool) and row["operating_point"]["support"] >= 0
        assert row["above_threshold"] == (row["probability"] >= row["threshold"])
    # The dangerous statements carry their sensitivity target, with what fold 9 achieved or "not validated".
    afib, svtac = labels[("statements", "AFIB")]["operating_point"], labels[("statements", "SVTAC")]["operating_point"]
    assert afib["metric"] == "sensitivity" and afib["target"] == 0.9 and afib["achieved"] >= 0.9 and afib["validated"]
    assert len(afib["achieved_ci90"]) == 2 and afib["achieved_out_of_sample"] is not None
    assert svtac["target"] == 0.9 and svtac["validated"] is False and svtac["achieved"] is None
    # Each model finding is one of the labels above its threshold, with the same numbers.
    for f in body["findings"]:
        if f["head"] != "measurement":
            row = labels[(f["head"], f["code"])]
            assert row["above_threshold"] and abs(row["threshold"] - f["threshold"]) < 1e-3
    # An integrator can apply its own cut-off: a label below the model's threshold is still given.
    assert any(not row["above_threshold"] for row in labels.values())
    # The fields are in the published schema, and this response conforms to it.
    schema = _result_schema(clinician)
    assert {"probabilities", "not_assessed"} <= set(schema["$defs"]["Result"]["properties"])
    assert {"threshold", "operating_point"} <= set(schema["$defs"]["ResultLabelProbability"]["properties"])
    jsonschema.validate(body, schema)


def test_a_result_stored_before_thresholds_were_kept_gives_null_with_the_reason(clinician, clinician_token,  # noqa: F811
                                                                               wfdb_pair):
    record = _upload(clinician, wfdb_pair)
    make_result(record, "urgent")  # no operating points stored, as before migration 0013
    body = api(clinician_token).get(f"/api/v1/ecgs/{record.public_id}/result/").json()
    row = body["probabilities"]["labels"][0]
    assert (row["code"], row["probability"]) == ("MI", 0.9)
    assert row["threshold"] is None and row["operating_point"] is None and row["above_threshold"] is None
    assert "stored before thresholds were kept" in body["probabilities"]["thresholds_missing_reason"]
    # The findings keep the threshold they were stored with (additive change: existing fields unchanged).
    assert body["findings"][0]["threshold"] == 0.4
    jsonschema.validate(body, _result_schema(clinician))


def test_not_assessed_is_always_in_the_result_even_before_the_analysis(clinician, clinician_token,  # noqa: F811
                                                                       wfdb_pair, weights_dir):
    record = _upload(clinician, wfdb_pair)
    client = api(clinician_token)
    pending = client.get(f"/api/v1/ecgs/{record.public_id}/result/").json()
    codes = [i["code"] for i in pending["not_assessed"]]
    assert pending["probabilities"] is None
    assert {"not_assessed:PACEMAKER_FUNCTION", "not_assessed:PRIOR_ECG", "not_assessed:BEYOND_WINDOW",
            "not_assessed:PAEDIATRIC", "not_assessed:OUTSIDE_LABELS"} <= set(codes)
    assert all(i["reason"] and i["source"] for i in pending["not_assessed"])
    jsonschema.validate(pending, _result_schema(clinician))

    services.inference_run(job_id=record.job.id)
    done = client.get(f"/api/v1/ecgs/{record.public_id}/result/").json()
    unvalidated = [i for i in done["not_assessed"] if i["code"] == "not_assessed:NO_VALIDATED_THRESHOLD"]
    # The committed manifest's labels with too few positives on fold 9 to validate an operating point.
    marked = sorted(r["code"] for r in done["probabilities"]["labels"] if r["operating_point"]["validated"] is False)
    assert unvalidated and sorted(unvalidated[0]["labels"]) == marked
    assert {"3AVB", "2AVB", "STE_", "SVTAC"} <= set(marked) and "AFIB" not in marked
