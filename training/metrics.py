"""Scores used for model selection, calibration reports and evaluation."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def scorable(y: np.ndarray) -> np.ndarray:
    """Columns with at least one positive and one negative (AUC is undefined otherwise)."""
    pos = y.sum(axis=0)
    return (pos > 0) & (pos < len(y))


def per_class_auc(y: np.ndarray, score: np.ndarray) -> np.ndarray:
    """AUC per column, NaN where the column cannot be scored."""
    out = np.full(y.shape[1], np.nan)
    for j in np.flatnonzero(scorable(y)):
        out[j] = roc_auc_score(y[:, j], score[:, j])
    return out


def macro_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Mean AUC over the scorable columns (the PTB-XL benchmark's macro AUC)."""
    return float(np.nanmean(per_class_auc(y, score)))


def bootstrap_macro_auc_ci(
    y: np.ndarray, score: np.ndarray, n_resamples: int = 200, level: float = 0.90, seed: int = 0
) -> tuple[float, float]:
    """Percentile CI of macro AUC over test-set resamples, as the PTB-XL benchmark reports it.

    Resamples in which some class has no positive or no negative are drawn again, as the benchmark does.
    """
    rng = np.random.default_rng(seed)
    n = len(y)
    cols = scorable(y)
    stats: list[float] = []
    attempts = 0
    while len(stats) < n_resamples:
        attempts += 1
        if attempts > 100 * n_resamples:
            raise ValueError("Too few positives per class for a bootstrap CI; evaluate on more records.")
        idx = rng.integers(0, n, n)
        yb = y[idx][:, cols]
        if not scorable(yb).all():
            continue
        stats.append(macro_auc(yb, score[idx][:, cols]))
    lo, hi = np.percentile(stats, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(lo), float(hi)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """ECE of one class: equal-width probability bins, weighted by bin size."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            ece += sel.mean() * abs(p[sel].mean() - y[sel].mean())
    return float(ece)


def f1_score_at(y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    pred = p >= threshold
    tp = float((pred & (y > 0)).sum())
    fp = float((pred & (y == 0)).sum())
    fn = float((~pred & (y > 0)).sum())
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def true_positive_rate_at(y: np.ndarray, p: np.ndarray, threshold: float) -> float | None:
    pos = y > 0
    if not pos.any():
        return None
    return float((p[pos] >= threshold).mean())
