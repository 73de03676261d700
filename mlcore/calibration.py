"""Per-class temperature scaling and decision thresholds, fitted on the validation fold (9)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.optimize import minimize_scalar

HEADS = ("superclass", "statements")
# The calibration version of the manifest's own temperatures and thresholds (fold 9), before any site refit.
MANIFEST_CALIBRATION = "manifest"


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _nll(log_t: float, logits: np.ndarray, y: np.ndarray) -> float:
    z = logits / np.exp(log_t)
    # log(1 + e^z) - y z, computed stably.
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


# The search range of a temperature: outcomes that the logits separate perfectly drive the fit to the lower end.
TEMPERATURE_BOUNDS = (0.05, 20.0)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature T > 0 minimising the binary NLL of sigmoid(logits / T) for one class."""
    res = minimize_scalar(_nll, bounds=tuple(np.log(TEMPERATURE_BOUNDS)), args=(logits, y), method="bounded")
    return float(np.exp(res.x))


def fit_temperatures(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """One temperature per column of (n, k) logits; a column without both outcomes keeps T = 1."""
    out = np.ones(logits.shape[1])
    for j in range(logits.shape[1]):
        if 0 < y[:, j].sum() < len(y):
            out[j] = fit_temperature(logits[:, j], y[:, j])
    return out


def fit_threshold(p: np.ndarray, y: np.ndarray) -> float:
    """The probability threshold that maximises F1 for one class (0.5 when the class never occurs)."""
    if y.sum() == 0:
        return 0.5
    order = np.argsort(-p)
    ps, ys = p[order], y[order]
    tp = np.cumsum(ys)
    fp = np.cumsum(1 - ys)
    f1 = 2 * tp / (tp + fp + ys.sum())
    best = int(np.argmax(f1))
    # Midway between the last accepted and the first rejected probability, so ties do not flip.
    nxt = ps[best + 1] if best + 1 < len(ps) else 0.0
    return float((ps[best] + nxt) / 2)


# A finding shown to a clinician needs at least this calibrated probability. F1-optimal thresholds for rare
# statements (a handful of positives in fold 9) can fall to a few percent, which would flag noise.
MIN_THRESHOLD = 0.10


def fit_thresholds(p: np.ndarray, y: np.ndarray, floor: float = MIN_THRESHOLD) -> np.ndarray:
    """Per-class F1-optimal thresholds, never below ``floor``."""
    return np.array([max(fit_threshold(p[:, j], y[:, j]), floor) for j in range(p.shape[1])])


# How a threshold was chosen, when the manifest records no operating point of its own.
F1_OPTIMAL = "f1_optimal"  # fit_threshold on the calibration folds
FLOOR = "floor"  # the F1-optimal cut-off fell below MIN_THRESHOLD, so the floor (project policy) is the threshold
_RECORDED = ("name", "metric", "target", "achieved", "achieved_ci90", "achieved_out_of_sample", "support", "validated")


def operating_points(calibration: dict, names: Mapping[str, Sequence[str]]) -> dict:
    """Per head and label, the decision threshold and how it was chosen, as the manifest's calibration says.

    ``calibration`` is the manifest's "calibration" block; ``names`` the label codes of each head. A head may carry
    "operating_points", one dict per label with name, metric, target, achieved (with its 90 % interval and the
    value out of sample), support and validated (training.operating_points writes them). Without it a threshold is
    F1-optimal on the calibration folds, or the floor where that cut-off was lower (``fit_thresholds``), and the
    rest is None: the manifest does not say.

    Returns {"method", "folds", head: {code: {"threshold", "name", "target", "achieved", "support", "validated"}}}.
    """
    out: dict = {"method": calibration.get("method", ""), "folds": list(calibration.get("folds", []))}
    for head, codes in names.items():
        cal = calibration[head]
        recorded = cal.get("operating_points")
        rows = {}
        for j, code in enumerate(codes):
            t = float(cal["threshold"][j])
            if recorded:
                row = {k: recorded[j].get(k) for k in _RECORDED}
            else:
                row = dict.fromkeys(_RECORDED)
                row["name"] = FLOOR if abs(t - MIN_THRESHOLD) < 1e-9 else F1_OPTIMAL
            rows[code] = {"threshold": round(t, 4), **row}
        out[head] = rows
    return out
