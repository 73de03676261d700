from __future__ import annotations

import numpy as np
import pytest

from mlcore.calibration import fit_temperature, fit_threshold, sigmoid
from mlcore.metrics import bootstrap_macro_auc_ci, expected_calibration_error, macro_auc, per_class_auc


def test_temperature_scaling_recovers_a_known_overconfidence():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, 20000)
    y = (rng.random(20000) < sigmoid(z / 2.5)).astype(float)  # the model's logits are 2.5x too sharp
    assert fit_temperature(z, y) == pytest.approx(2.5, rel=0.08)
    p_raw, p_cal = sigmoid(z), sigmoid(z / fit_temperature(z, y))
    assert expected_calibration_error(y, p_cal) < 0.02 < expected_calibration_error(y, p_raw)


def test_threshold_maximises_f1():
    p = np.array([0.9, 0.8, 0.7, 0.4, 0.3, 0.1])
    y = np.array([1, 1, 1, 0, 1, 0])
    t = fit_threshold(p, y)
    assert 0.1 < t < 0.3  # taking the 0.3 positive too (F1 8/9) beats stopping at 0.7 (F1 6/7)


def test_macro_auc_skips_unscorable_columns_and_ci_brackets_it():
    rng = np.random.default_rng(1)
    y = (rng.random((400, 3)) < 0.3).astype(float)
    y[:, 2] = 0  # never positive: not scorable
    score = y + rng.normal(0, 0.8, y.shape)
    aucs = per_class_auc(y, score)
    assert np.isnan(aucs[2]) and 0.7 < aucs[0] < 1
    lo, hi = bootstrap_macro_auc_ci(y, score, level=0.90, n_resamples=200)
    assert lo < macro_auc(y, score) < hi and hi - lo < 0.1


def test_thresholds_never_fall_below_the_floor_for_rare_statements():
    from mlcore.calibration import MIN_THRESHOLD, fit_thresholds

    p = np.array([[0.03], [0.02], [0.01], [0.01]])
    y = np.array([[1], [0], [0], [0]])
    assert fit_threshold(p[:, 0], y[:, 0]) < MIN_THRESHOLD
    assert fit_thresholds(p, y)[0] == MIN_THRESHOLD
