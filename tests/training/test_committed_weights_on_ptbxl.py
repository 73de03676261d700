"""The committed ensemble, re-scored on real PTB-XL fold 9 (runs where PTBXL_DIR points at the layout, as in CI)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mlcore.ensemble import Ensemble
from mlcore.ptbxl import load_folds
from training.evaluate import build_report

WEIGHTS = Path(__file__).resolve().parents[2] / "mlcore" / "weights"
PTBXL = os.environ.get("PTBXL_DIR", "")
FOLD_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "ptbxl"  # training/__main__.py's DEFAULT_CACHE

pytestmark = [
    pytest.mark.ptbxl,
    pytest.mark.skipif(not (PTBXL and (Path(PTBXL) / "ptbxl_database.csv").exists()),
                       reason="set PTBXL_DIR to a PTB-XL layout"),
    pytest.mark.skipif(not (WEIGHTS / "manifest.json").exists(), reason="no exported weights"),
]


def test_committed_fold9_report_reproduces_and_meets_the_bar():
    ens = Ensemble.load(WEIGHTS)
    # Fold 9 through the training CLI's own cache (mlcore.ptbxl, keyed by the database file's sha256): the same arrays
    # as reading the 2,183 WFDB records again, which took half of this test.
    report = build_report(ens, load_folds(PTBXL, [9], FOLD_CACHE), [9], n_boot=200)
    committed = json.loads((WEIGHTS / "fold9_report.json").read_text())
    assert report["superclass"]["macro_auc"] == pytest.approx(committed["superclass"]["macro_auc"], abs=1e-6)
    assert report["statements"]["macro_auc"] == pytest.approx(committed["statements"]["macro_auc"], abs=1e-6)
    assert report["superclass"]["macro_auc"] >= 0.92
    assert min(report["superclass"]["per_class_auc"].values()) >= 0.88
    assert max(report["superclass"]["ece"].values()) <= 0.05
    # The statements bar (0.90) is judged on fold 10. On fold 9 the committed ensemble scores 0.8995,
    # right at that bar (see README, Model); this guards against a regression, not against the bar.
    assert report["statements"]["macro_auc"] >= 0.89
