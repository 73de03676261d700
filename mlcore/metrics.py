"""Scores and intervals that training, evaluation and monitoring share (no Django).

Thin wrappers: AUC and F1 from scikit-learn, the bootstrap from SciPy, proportion intervals from statsmodels. What is
ours is the convention around them: which columns can be scored, NaN rather than an exception where a group has one
class only, and the zero-cell rule of the ratio interval.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import bootstrap, rankdata
from sklearn.metrics import f1_score, roc_auc_score
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

# -- discrimination ----------------------------------------------------------------------------------------------


def scorable(y: np.ndarray) -> np.ndarray:
    """Columns with at least one positive and one negative (AUC is undefined otherwise)."""
    pos = np.asarray(y).sum(axis=0)
    return (pos > 0) & (pos < len(y))


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of one label (ties count half); NaN without both classes."""
    y = np.asarray(y) > 0
    if y.all() or not y.any():
        return math.nan
    return float(roc_auc_score(y, score))


def per_class_auc(y: np.ndarray, score: np.ndarray) -> np.ndarray:
    """AUC per column, NaN where the column cannot be scored."""
    out = np.full(y.shape[1], np.nan)
    cols = np.flatnonzero(scorable(y))
    if len(cols) == 1:
        out[cols] = roc_auc_score(y[:, cols[0]], score[:, cols[0]])
    elif len(cols):  # one multilabel call: the bootstrap calls this hundreds of times, and each call validates
        out[cols] = roc_auc_score(y[:, cols], score[:, cols], average=None)
    return out


def macro_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Mean AUC over the scorable columns (the PTB-XL benchmark's macro AUC); NaN when none can be scored."""
    aucs = per_class_auc(y, score)
    return float(np.nanmean(aucs)) if not np.isnan(aucs).all() else math.nan


def macro_auc_resampled(y: np.ndarray, score: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """:func:`macro_auc` of each resample ``y[idx[r]], score[idx[r]]`` at once: idx (r, n) -> (r,).

    The bootstrap's statistic. roc_auc_score validates its input on every call (about 1.5 ms a column), which made
    a fairness report's 200 resamples per group and class cost minutes; this is the same AUC (the Mann-Whitney U
    over average ranks, so ties count half, as roc_auc_score counts them), computed for all resamples in one pass.
    tests/mlcore/test_metrics.py holds it equal to macro_auc.
    """
    y = np.asarray(y) > 0
    aucs = np.full((idx.shape[0], y.shape[1]), np.nan)
    for j in range(y.shape[1]):
        pos = y[idx, j]  # (r, n)
        n_pos = pos.sum(axis=1)
        n_neg = idx.shape[1] - n_pos
        ok = (n_pos > 0) & (n_neg > 0)
        ranks = rankdata(score[idx[ok], j], axis=1)
        aucs[ok, j] = ((ranks * pos[ok]).sum(axis=1) - n_pos[ok] * (n_pos[ok] + 1) / 2) / (n_pos[ok] * n_neg[ok])
    out = np.full(idx.shape[0], np.nan)
    some = ~np.isnan(aucs).all(axis=1)
    out[some] = np.nanmean(aucs[some], axis=1)
    return out


def bootstrap_macro_auc_ci(y: np.ndarray, score: np.ndarray, *, level: float = 0.95, n_resamples: int = 200,
                           seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the macro AUC, resampling records (``scipy.stats.bootstrap``).

    Only the columns the whole sample can score take part; a resample that lacks a rare column's positives averages
    over the columns it can score. (NaN, NaN) when no column can be scored.
    """
    cols = scorable(y)
    if not cols.any():
        return (math.nan, math.nan)
    y, score = np.asarray(y)[:, cols], np.asarray(score)[:, cols]
    res = bootstrap((np.arange(len(y)),), lambda i, axis=-1: macro_auc_resampled(y, score, np.atleast_2d(i)),
                    n_resamples=n_resamples, confidence_level=level, method="percentile", vectorized=True,
                    rng=np.random.default_rng(seed))
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


# -- at a threshold ----------------------------------------------------------------------------------------------


def f1_score_at(y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    """F1 of the label flagged at ``p >= threshold``; 0 when nothing is both flagged and positive."""
    return float(f1_score(np.asarray(y) > 0, np.asarray(p) >= threshold, zero_division=0.0))


def true_positive_rate_at(y: np.ndarray, p: np.ndarray, threshold: float) -> float | None:
    """Sensitivity at ``p >= threshold``; None without positives."""
    pos = np.asarray(y) > 0
    if not pos.any():
        return None
    return float((np.asarray(p)[pos] >= threshold).mean())


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """ECE of one class: equal-width probability bins, weighted by bin size (scikit-learn has no ECE)."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            ece += sel.mean() * abs(p[sel].mean() - y[sel].mean())
    return float(ece)


# -- proportions -------------------------------------------------------------------------------------------------


def wilson(k: int, n: int, *, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k events in n trials (good near 0 and 1); (NaN, NaN) when n is 0."""
    if n == 0:
        return (math.nan, math.nan)
    low, high = proportion_confint(k, n, alpha=1 - level, method="wilson")
    return (float(low), float(high))


def newcombe_difference(k1: int, n1: int, k2: int, n2: int, *, level: float = 0.95) -> tuple[float, float]:
    """Interval of p1 - p2 by Newcombe's hybrid score method (method 10 of Newcombe 1998), from Wilson limits."""
    low, high = confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", compare="diff", alpha=1 - level)
    return (float(low), float(high))


def ratio_ci(k1: int, n1: int, k2: int, n2: int, *, level: float = 0.95) -> tuple[float, float]:
    """Interval of (k1/n1) / (k2/n2) on the log scale (Katz). When a cell is 0, 0.5 is added to every cell (events
    and non-events, so each n grows by 1): statsmodels' "log-adjusted" adds 0.5 to n instead, so it is not used."""
    if 0 in (k1, k2, n1 - k1, n2 - k2):
        k1, k2, n1, n2 = k1 + 0.5, k2 + 0.5, n1 + 1, n2 + 1
    low, high = confint_proportions_2indep(k1, n1, k2, n2, method="log", compare="ratio", alpha=1 - level)
    return (float(low), float(high))
