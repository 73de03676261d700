"""The "needs review" badge end to end, on members that really disagree (nothing in the prediction patched): an
ensemble whose two members fall on either side of a dangerous label's threshold on this very ECG."""
from __future__ import annotations

import json

import numpy as np
import pytest

from clinical import services
from clinical.models import Finding, Prediction, Recommendation
from clinical.recommend import MODELS_DISAGREE
from mlcore.ensemble import Ensemble
from tests.conftest import write_tiny_weights
from tests.mlcore.test_members_disagree import member_probabilities


def weights_with_afib_threshold(tmp_path, label_space, record, where: str):
    """Tiny weights whose AFIB threshold lies between the members' probabilities on ``record`` ("between"), or
    below both ("below")."""
    path = write_tiny_weights(tmp_path / f"weights-{where}", label_space)
    ens = Ensemble.load(path)
    j = ens.labels.statements.index("AFIB")
    p = member_probabilities(ens, record.window_array(), record.fs)["statements"][:, j]  # (2,)
    assert p.max() - p.min() > 1e-4  # the two seeds differ
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["calibration"]["statements"]["threshold"][j] = float(p.mean() if where == "between" else p.min() / 2)
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


@pytest.mark.parametrize("where, needs_review", [("between", True), ("below", False)])
def test_members_either_side_of_a_dangerous_threshold_put_the_result_up_for_review(
        clinician, wfdb_pair, tmp_path, label_space, settings, where, needs_review):
    record = services.ecg_submit(actor=clinician, pseudonym="PT-NR", age=70, sex="M", files=wfdb_pair, fs=None)
    settings.ECG_WEIGHTS_DIR = str(weights_with_afib_threshold(tmp_path, label_space, record, where))
    services.inference_run(job_id=record.job.id)
    pred = Prediction.objects.get(record=record)
    assert pred.needs_review is needs_review
    caveats = list(pred.recommendations.filter(kind=Recommendation.Kind.CAVEAT, rule_id=MODELS_DISAGREE))
    assert len(caveats) == int(needs_review)
    if needs_review:
        assert "AFIB" in caveats[0].action
        afib = Finding.objects.filter(prediction=pred, code="AFIB").first()
        assert afib is None or afib.needs_review  # flagged by the mean or not, the disagreement is shown
    else:  # both members over the threshold: flagged, and agreed on
        assert not Finding.objects.get(prediction=pred, code="AFIB").needs_review
    assert np.isfinite(pred.inference_ms)
