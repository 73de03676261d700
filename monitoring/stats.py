"""Confidence intervals for the fairness report: proportions, their differences and ratios, and AUC."""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata

Z95 = 1.959964


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k events in n trials (good near 0 and 1, unlike the normal approximation)."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def newcombe_difference(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float]:
    """95% CI of p1 - p2 by Newcombe's hybrid score method (method 10 of Newcombe 1998), from Wilson limits."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1)
    l2, u2 = wilson(k2, n2)
    d = p1 - p2
    return (d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))


def ratio_ci(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float]:
    """95% CI of (k1/n1) / (k2/n2) on the log scale (Katz); 0.5 is added to every cell when a count is 0."""
    if 0 in (k1, k2, n1 - k1, n2 - k2):
        k1, k2, n1, n2 = k1 + 0.5, k2 + 0.5, n1 + 1, n2 + 1
    ratio = (k1 / n1) / (k2 / n2)
    se = math.sqrt(1 / k1 - 1 / n1 + 1 / k2 - 1 / n2)
    return (ratio * math.exp(-Z95 * se), ratio * math.exp(Z95 * se))


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve by the Mann-Whitney rank sum (ties counted half); NaN without both classes."""
    y = np.asarray(y, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(p)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def macro_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Mean AUC over the columns that have both positives and negatives."""
    values = [auc(y[:, j], p[:, j]) for j in range(y.shape[1])]
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def bootstrap_macro_auc(y: np.ndarray, p: np.ndarray, n_boot: int = 200, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the macro AUC, resampling records."""
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        value = macro_auc(y[idx], p[idx])
        if not math.isnan(value):
            stats.append(value)
    if not stats:
        return (math.nan, math.nan)
    return (float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5)))
