"""The model card page: who may see it, what it shows (from the weights folder), and the reliability curves."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.urls import reverse

from mlcore.labels import SUPERCLASSES
from mlcore.reference import Reference
from monitoring import modelcard

URL = "/monitoring/model-card/"


def _weights() -> Path:
    return Path(settings.ECG_WEIGHTS_DIR)


def _figure(html: str, element_id: str) -> dict:
    m = re.search(rf'<script type="application/json" data-figure="{element_id}">(.*?)</script>', html, re.S)
    assert m, f"no embedded figure for #{element_id}"
    assert "<" not in m.group(1)  # HTML-special characters are escaped as in json_script
    assert f'id="{element_id}"' in html  # the element charts.js draws into
    return json.loads(m.group(1))


# --- the reliability curve on a hand-made array ----------------------------------------------------------------


def test_reliability_curve_bins_by_hand():
    p = np.array([0.05, 0.07, 0.15, 0.55, 0.95, 1.0, 0.5])
    y = np.array([0, 1, 0, 1, 1, 1, 0])
    curve = modelcard.reliability_curve(p, y, n_bins=10)
    assert curve["count"] == [2, 1, 0, 0, 0, 2, 0, 0, 0, 2]
    assert curve["lower"][:3] == pytest.approx([0.0, 0.1, 0.2]) and curve["upper"][-1] == 1.0
    # bin 0: 0.05, 0.07 (one positive); bin 1: 0.15; bin 5: 0.5 (edge goes up), 0.55; bin 9: 0.95 and 1.0 (inclusive)
    assert curve["predicted"][0] == pytest.approx(0.06) and curve["observed"][0] == pytest.approx(0.5)
    assert curve["predicted"][1] == pytest.approx(0.15) and curve["observed"][1] == 0.0
    assert curve["predicted"][5] == pytest.approx(0.525) and curve["observed"][5] == pytest.approx(0.5)
    assert curve["predicted"][9] == pytest.approx(0.975) and curve["observed"][9] == 1.0
    assert curve["predicted"][2] is None and curve["observed"][2] is None  # empty bin


def test_reliability_curve_ignores_nan_and_checks_shapes():
    curve = modelcard.reliability_curve(np.array([np.nan, 0.25, 0.25]), np.array([1, 1, 0]), n_bins=4)
    assert curve["count"] == [0, 2, 0, 0] and curve["observed"][1] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        modelcard.reliability_curve(np.zeros(3), np.zeros(4))


def test_calibration_figure_has_one_panel_per_class_with_the_diagonal():
    curves = {c: modelcard.reliability_curve(np.array([0.2, 0.8]), np.array([0, 1])) for c in SUPERCLASSES}
    fig = modelcard.calibration_figure(curves)
    named = {t["name"]: t for t in fig["data"]}
    assert set(SUPERCLASSES) <= set(named)
    assert named["MI"]["x"] == pytest.approx([0.2, 0.8]) and named["MI"]["y"] == [0.0, 1.0]
    diagonals = [t for t in fig["data"] if t["name"] == "Perfect calibration"]
    assert len(diagonals) == len(SUPERCLASSES) and diagonals[0]["y"] == [0, 1]
    assert fig["layout"]["paper_bgcolor"] == "rgba(0,0,0,0)"


def test_figure_json_escapes_html():
    out = modelcard.figure_json({"layout": {"title": "</script><b>&"}})
    assert "<" not in out and ">" not in out and "&" not in out
    assert json.loads(out)["layout"]["title"] == "</script><b>&"


def test_manifest_is_parsed_once_per_mtime(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"model_version": "a"}))
    first = modelcard.load_manifest(tmp_path)
    assert first == {"model_version": "a"} and modelcard.load_manifest(tmp_path) is first
    path.write_text(json.dumps({"model_version": "b"}))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert modelcard.load_manifest(tmp_path) == {"model_version": "b"}
    assert modelcard.load_manifest(tmp_path / "missing") is None


def test_computed_limits_name_the_weakest_numbers():
    report = {
        "superclass": {"per_class_auc": {"NORM": 0.95, "HYP": 0.80}, "f1_at_threshold": {"NORM": 0.9, "HYP": 0.5},
                       "ece": {"NORM": 0.05, "HYP": 0.01}, "prevalence": {"NORM": 0.4, "HYP": 0.1}},
        "statements": {"per_label_auc": {"STE_": 0.55, "AFIB": 0.98}},
        "subgroups": {"age_band": {"<40": {"n": 100, "macro_auc": 0.9, "tpr_at_threshold": {"MI": 0.4},
                                           "positives": {"MI": 5}},
                                   "80+": {"n": 90, "macro_auc": 0.85, "tpr_at_threshold": {"MI": 0.9},
                                           "positives": {"MI": 50}}}},
    }
    manifest = {"labels": {"descriptions": {"STE_": "non-specific ST elevation"}}}
    text = " ".join(modelcard.computed_limits(report, manifest))
    assert "HYP (Hypertrophy) has the lowest AUC of the superclasses (0.800) and the lowest F1" in text
    assert "NORM is the least well calibrated class (ECE 0.050)" in text
    assert "lowest for 80+ (0.850, n = 90)" in text
    assert "MI in <40 (0.40, 5 positives — few positives, uncertain)" in text
    assert "1 of 2 statements" in text and "STE_ (non-specific ST elevation, 0.55)" in text
    assert "AFIB" not in text


# --- the page --------------------------------------------------------------------------------------------------


def test_url_is_wired():
    assert reverse("monitoring:model-card") == URL


def test_compliance_sees_the_model_card_from_the_weights_folder(client, compliance_officer):
    manifest = json.loads((_weights() / "manifest.json").read_text())
    report = json.loads((_weights() / "fold9_report.json").read_text())
    client.force_login(compliance_officer)
    resp = client.get(URL)
    assert resp.status_code == 200
    html = resp.content.decode()

    assert f'<span class="version" id="model-version">{manifest["model_version"]}</span>' in html
    assert manifest["git_commit"][:12] in html
    for c, auc in report["superclass"]["per_class_auc"].items():
        row = re.search(rf'<tr data-class="{re.escape(c)}">(.*?)</tr>', html, re.S)
        assert row, c
        assert f'<td class="num auc">{auc:.3f}</td>' in row.group(1)
    lo, hi = report["superclass"]["macro_auc_ci90"]
    assert f"{report['superclass']['macro_auc']:.3f}" in html and f"{lo:.3f}–{hi:.3f}" in html
    assert manifest["metrics_fold9"]["note"] in html
    for m in manifest["members"]:
        assert m["sha256"][:12] in html
    assert manifest["training_data"]["fingerprint_train"] in html
    # subgroup rows, e.g. the <40 band with its HYP rate and positives
    band = report["subgroups"]["age_band"]["<40"]
    assert f'{band["tpr_at_threshold"]["HYP"]:.3f} <span class="pos">({band["positives"]["HYP"]})</span>' in html
    # the weakest class is named in the computed limits
    auc = report["superclass"]["per_class_auc"]
    assert f"{min(auc, key=auc.get)} (" in re.search(r'id="computed-limits">(.*?)</ul>', html, re.S).group(1)
    # both charts, drawn by the shared script, and Plotly from the app itself
    assert reverse("plotly-js") in html and "monitoring/charts.js" in html
    subgroup = _figure(html, "subgroup-chart")
    assert sum(len(t["y"]) for t in subgroup["data"]) == 6  # 2 sexes + 4 age bands

    fig = _figure(html, "calibration-chart")
    traces = {t["name"]: t for t in fig["data"]}
    ref = Reference.load(_weights())
    p, y = ref.probabilities[ref.has_label], ref.labels[ref.has_label].astype(float)
    for j, c in enumerate(SUPERCLASSES):
        expected_observed, expected_predicted = [], []
        for b in range(10):
            lower, upper = b / 10, (b + 1) / 10
            in_bin = (p[:, j] >= lower) & ((p[:, j] < upper) if b < 9 else (p[:, j] <= upper))
            if in_bin.any():
                expected_observed.append(y[in_bin, j].mean())
                expected_predicted.append(p[in_bin, j].mean())
        assert traces[c]["y"] == pytest.approx(expected_observed, abs=1e-9), c
        assert traces[c]["x"] == pytest.approx(expected_predicted, abs=1e-9), c
        assert sum(cd[0] for cd in traces[c]["customdata"]) == int(ref.has_label.sum())


def test_page_says_what_is_missing(client, compliance_officer, settings, tmp_path):
    committed = _weights()
    settings.ECG_WEIGHTS_DIR = str(tmp_path)
    client.force_login(compliance_officer)
    resp = client.get(URL)
    assert resp.status_code == 200 and "No model manifest" in resp.content.decode()

    for name in ("manifest.json", "fold9_report.json"):  # no monitoring reference
        (tmp_path / name).symlink_to(committed / name)
    html = client.get(URL).content.decode()
    assert "No monitoring reference" in html and 'data-figure="calibration-chart"' not in html
    assert 'data-figure="subgroup-chart"' in html


def test_clinician_is_forbidden(client, clinician):
    client.force_login(clinician)
    assert client.get(URL).status_code == 403


def test_reviewer_is_forbidden(client, reviewer):
    client.force_login(reviewer)
    assert client.get(URL).status_code == 403


def test_anonymous_is_sent_to_login(client, db):
    resp = client.get(URL)
    assert resp.status_code == 302
    assert resp["Location"].startswith(reverse("login")) and "next=" in resp["Location"]
