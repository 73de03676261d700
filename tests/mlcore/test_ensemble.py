from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from captum.attr import LayerAttribution, LayerGradCam

from mlcore.ensemble import Ensemble, EnsembleLoadError, sha256_file
from mlcore.model import count_parameters
from mlcore.preprocess import PreprocessError
from tests.conftest import synthetic_ecg

COMMITTED = Path(__file__).resolve().parents[2] / "mlcore" / "weights"


@pytest.fixture
def ecg():
    return synthetic_ecg(np.random.default_rng(3), fs=500)  # (12, 5000) mV at 500 Hz


def test_predict_shapes_and_ranges(tiny_weights, ecg):
    ens = Ensemble.load(tiny_weights)
    pred = ens.predict([ecg, ecg[:, ::-1].copy()], fs=500)
    assert pred.superclass.shape == (2, 5) and pred.statements.shape == (2, 11)
    assert ((pred.superclass > 0) & (pred.superclass < 1)).all()
    assert pred.superclass_spread.shape == (2, 5) and (pred.superclass_spread >= 0).all()
    assert pred.superclass_flags.dtype == bool
    assert pred.embedding.shape == (2, 32)


def test_predictions_are_deterministic_for_fixed_weights(tiny_weights, ecg):
    a = Ensemble.load(tiny_weights).predict([ecg], fs=500)
    b = Ensemble.load(tiny_weights).predict([ecg], fs=500)
    assert np.array_equal(a.superclass, b.superclass) and np.array_equal(a.statements, b.statements)


def test_corrupt_member_gives_a_clear_error(tiny_weights):
    member = tiny_weights / "member-1.pt"
    data = bytearray(member.read_bytes())
    data[len(data) // 2] ^= 0xFF
    member.write_bytes(bytes(data))
    with pytest.raises(EnsembleLoadError, match=r"member-1\.pt is corrupt: sha256"):
        Ensemble.load(tiny_weights)


def test_missing_member_gives_a_clear_error(tiny_weights):
    (tiny_weights / "member-0.pt").unlink()
    with pytest.raises(EnsembleLoadError, match=r"member-0\.pt is missing"):
        Ensemble.load(tiny_weights)


def test_unreadable_member_with_matching_hash_gives_a_clear_error(tiny_weights):
    member = tiny_weights / "member-0.pt"
    member.write_bytes(b"not a torch file")
    manifest = json.loads((tiny_weights / "manifest.json").read_text())
    manifest["members"][0]["sha256"] = sha256_file(member)
    (tiny_weights / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(EnsembleLoadError, match=r"Cannot load ensemble member member-0\.pt"):
        Ensemble.load(tiny_weights)


def test_missing_manifest_gives_a_clear_error(tmp_path):
    with pytest.raises(EnsembleLoadError, match="No manifest.json"):
        Ensemble.load(tmp_path)


def test_bad_signal_is_refused_before_any_model_runs(tiny_weights):
    with pytest.raises(PreprocessError, match="NaN"):
        Ensemble.load(tiny_weights).predict([np.full((12, 1000), np.nan)], fs=100)


def test_explain_shapes_and_lead_relevance_differs_between_leads(tiny_weights, ecg):
    ens = Ensemble.load(tiny_weights)
    ex = ens.explain(ecg, fs=500, label="MI")
    assert ex.gradcam.shape == (1000,) and ex.lead_maps.shape == (12, 1000)
    assert ex.lead_relevance.shape == (12,)
    assert ex.lead_relevance.sum() == pytest.approx(1.0, abs=1e-5)
    assert 0 <= ex.gradcam.min() and ex.gradcam.max() == pytest.approx(1.0)
    # The synthetic leads have different gains, so their evidence must differ, not be one tiled curve.
    assert ex.lead_relevance.std() > 0.1 / 12
    assert not np.allclose(ex.lead_maps[0], ex.lead_maps[1])
    assert ex.probability == pytest.approx(float(ens.predict([ecg], fs=500).superclass[0, 1]), abs=1e-5)


def test_explain_gradcam_equals_captum_layergradcam_averaged_over_members(tiny_weights, ecg):
    ens = Ensemble.load(tiny_weights)
    x = ens.prepare([ecg], 500)
    cams = []
    for m in ens.members:
        cam = LayerGradCam(m, m.last_conv_stage).attribute(x, target=2, relu_attributions=True)
        cams.append(LayerAttribution.interpolate(cam, (1000,), interpolate_mode="linear")[0, 0].detach())
    expected = torch.stack(cams).mean(0).numpy()
    got = ens.explain(ecg, fs=500, label="STTC").gradcam
    assert np.allclose(got, expected / expected.max(), atol=1e-5)


def test_explain_statement_head_and_unknown_label(tiny_weights, ecg):
    ens = Ensemble.load(tiny_weights)
    assert ens.explain(ecg, 500, "AFIB", head="statements").head == "statements"
    with pytest.raises(KeyError):
        ens.explain(ecg, 500, "NOPE")


@pytest.mark.skipif(not (COMMITTED / "manifest.json").exists(), reason="no exported weights")
def test_committed_ensemble_loads_is_small_and_deterministic(ecg):
    ens = Ensemble.load(COMMITTED)
    assert len(ens.members) >= 3
    assert all(count_parameters(m) <= 3_000_000 for m in ens.members)
    a = ens.predict([ecg], fs=500)
    b = Ensemble.load(COMMITTED).predict([ecg], fs=500)
    assert np.array_equal(a.superclass, b.superclass)
    ex = ens.explain(ecg, fs=500, label="NORM")
    assert ex.lead_relevance.std() > 0


def test_explain_many_matches_one_at_a_time(tiny_weights, ecg):
    ens = Ensemble.load(tiny_weights)
    targets = [("superclass", "MI"), ("statements", "AFIB"), ("superclass", "NORM")]
    batch = ens.explain_many(ecg, 500, targets)
    for (head, label), ex in zip(targets, batch):
        one = ens.explain(ecg, 500, label, head=head)
        assert ex.label == label and ex.head == head
        assert np.allclose(ex.gradcam, one.gradcam, atol=1e-5)
        assert np.allclose(ex.lead_maps, one.lead_maps, atol=1e-5)
        assert ex.probability == pytest.approx(one.probability, abs=1e-6)


def test_operating_points_name_how_each_threshold_was_chosen():
    from mlcore.calibration import FLOOR, MIN_THRESHOLD, operating_points

    cal = {"method": "F1-optimal", "folds": [9],
           "superclass": {"threshold": [0.52, MIN_THRESHOLD]}}
    points = operating_points(cal, {"superclass": ["NORM", "MI"]})
    assert points["folds"] == [9] and points["superclass"]["NORM"]["threshold"] == 0.52
    assert points["superclass"]["NORM"]["name"] == "f1_optimal" and points["superclass"]["MI"]["name"] == FLOOR
    assert points["superclass"]["NORM"]["validated"] is None  # the manifest does not say
    cal["superclass"]["operating_points"] = [
        {"name": "sensitivity", "target": 0.9, "achieved": 0.91, "support": 120, "validated": True},
        {"name": "sensitivity", "target": 0.9, "achieved": 0.5, "support": 2, "validated": False}]
    recorded = operating_points(cal, {"superclass": ["NORM", "MI"]})["superclass"]
    assert recorded["MI"] == {"threshold": MIN_THRESHOLD, "name": "sensitivity", "metric": None, "target": 0.9,
                              "achieved": 0.5, "achieved_ci90": None, "achieved_out_of_sample": None,
                              "support": 2, "validated": False}


def test_with_calibration_changes_probabilities_and_flags_not_the_members(tiny_weights):
    from mlcore.ensemble import MANIFEST_CALIBRATION

    ens = Ensemble.load(tiny_weights)
    cal = {h: {"temperature": (np.asarray(ens.temperature[h]) * 3).tolist(),
               "threshold": np.full(len(ens.threshold[h]), 0.01).tolist()} for h in ("superclass", "statements")}
    site = ens.with_calibration(cal, "site-1")
    x = [np.random.default_rng(0).normal(0, 0.1, (12, 1000))]
    base, refit = ens.predict(x, fs=100), site.predict(x, fs=100)
    assert site.members is ens.members and site.calibration_version == "site-1"
    assert ens.calibration_version == MANIFEST_CALIBRATION  # the base is left as it was
    # Three times the temperature pulls every probability towards 0.5; a 0.01 threshold flags everything.
    assert np.all(np.abs(refit.superclass - 0.5) <= np.abs(base.superclass - 0.5) + 1e-12)
    assert refit.superclass_flags.all() and site.operating_points["superclass"][ens.labels.superclasses[0]][
        "threshold"] == 0.01
    with pytest.raises(ValueError, match="values for"):
        ens.with_calibration({**cal, "superclass": {"temperature": [1.0], "threshold": [0.5]}}, "bad")
