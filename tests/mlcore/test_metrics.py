"""mlcore.metrics: the shared wrappers agree with the libraries they wrap and with published values."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mlcore import metrics

rng = np.random.default_rng(7)


def _labelled(n: int) -> tuple[np.ndarray, np.ndarray]:
    y = (rng.random((n, 4)) < [0.4, 0.1, 0.03, 0.0]).astype(np.uint8)  # the last column is never positive
    score = np.round(np.clip(0.3 * y + 0.7 * rng.random(y.shape), 0, 1), 1)  # rounded: many ties
    return y, score


def test_auc_is_scikit_learns_and_nan_with_one_class():
    y, score = _labelled(300)
    assert metrics.auc(y[:, 0], score[:, 0]) == pytest.approx(roc_auc_score(y[:, 0], score[:, 0]))
    assert math.isnan(metrics.auc(y[:, 3], score[:, 3]))
    aucs = metrics.per_class_auc(y, score)
    assert math.isnan(aucs[3]) and metrics.macro_auc(y, score) == pytest.approx(np.nanmean(aucs))
    assert math.isnan(metrics.macro_auc(y[:, 3:], score[:, 3:]))


def test_the_bootstraps_statistic_is_macro_auc_of_each_resample():
    y, score = _labelled(60)  # small: some resamples lack the rare column's positives
    idx = rng.integers(0, len(y), (50, len(y)))
    batch = metrics.macro_auc_resampled(y, score, idx)
    assert batch == pytest.approx([metrics.macro_auc(y[i], score[i]) for i in idx], nan_ok=True)


def test_bootstrap_interval_brackets_the_estimate_and_repeats_with_its_seed():
    y, score = _labelled(400)
    low, high = metrics.bootstrap_macro_auc_ci(y, score, level=0.95, seed=3)
    assert low < metrics.macro_auc(y, score) < high
    assert metrics.bootstrap_macro_auc_ci(y, score, level=0.95, seed=3) == (low, high)
    narrower = metrics.bootstrap_macro_auc_ci(y, score, level=0.80, seed=3)
    assert low < narrower[0] < narrower[1] < high
    assert all(math.isnan(v) for v in metrics.bootstrap_macro_auc_ci(y[:, 3:], score[:, 3:]))


def test_proportion_intervals_match_published_and_hand_computed_values():
    assert metrics.wilson(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)  # Newcombe (1998), Table I
    assert metrics.wilson(27, 30, level=0.90) == pytest.approx((0.7745, 0.9593), abs=1e-4)  # by hand, z = 1.6449
    assert all(math.isnan(v) for v in metrics.wilson(0, 0))
    assert metrics.newcombe_difference(56, 70, 48, 80) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    # Katz: 0.5 x exp(+-1.96 sqrt(1/20 - 1/100 + 1/40 - 1/100)).
    assert metrics.ratio_ci(20, 100, 40, 100) == pytest.approx((0.3158, 0.7917), abs=1e-4)
    # A zero cell: 0.5 is added to every cell, so 0/50 vs 10/50 is 0.5/51 vs 10.5/51.
    se = math.sqrt(1 / 0.5 - 1 / 51 + 1 / 10.5 - 1 / 51)
    ratio = 0.5 / 10.5
    assert metrics.ratio_ci(0, 50, 10, 50) == pytest.approx((ratio * math.exp(-1.959964 * se),
                                                             ratio * math.exp(1.959964 * se)), rel=1e-6)


def test_threshold_scores():
    y = np.array([1, 1, 0, 0, 1])
    p = np.array([0.9, 0.4, 0.8, 0.1, 0.7])
    assert metrics.f1_score_at(y, p, 0.5) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert metrics.f1_score_at(y * 0, p, 0.5) == 0.0
    assert metrics.true_positive_rate_at(y, p, 0.5) == pytest.approx(2 / 3)
    assert metrics.true_positive_rate_at(y * 0, p, 0.5) is None
