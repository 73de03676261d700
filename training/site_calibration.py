"""Site calibration: temperatures and thresholds refitted on one site's reviewer-confirmed outcomes.

A model calibrated on PTB-XL's fold 9 can rank a site's ECGs well and still be mis-thresholded there (other devices,
another case mix): issue 16 measured AFIB sensitivity 0.53 at an AUC of 0.96 on other sources. Given the ensemble's
mean logits for the ECGs a site's reviewers acknowledged and what the reviews say of each label (positive, negative
or unknown), ``fit_site`` refits, per label with enough outcomes,

- the temperature (``mlcore.calibration.fit_temperature``: binary NLL of sigmoid(logit / T)), then
- the threshold for the label's stated target, as training.operating_points chooses it on fold 9 (sensitivity
  >= 0.90 for the dangerous statements, specificity >= 0.95 for NORM, F1 otherwise), on the refitted probabilities.

A label needs at least ``min_count`` positives **and** negatives among its known outcomes (default MIN_SUPPORT, 30:
the reason is in training.operating_points); a label with fewer keeps the current temperature and threshold and the
row says why. Each row reports sensitivity and specificity with their 90 % Wilson intervals at the current and at
the refitted calibration, on the same outcomes (so the "after" figures are in-sample; the threshold's record also
carries the split-half out-of-sample value where the label has a target). No Django here: the web app gathers the
outcomes (monitoring.calibration) and stores the result as a calibration version.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mlcore.calibration import HEADS, TEMPERATURE_BOUNDS, fit_temperature, operating_points, sigmoid
from mlcore.metrics import wilson
from training.operating_points import CI_LEVEL, MIN_SUPPORT, operating_point, policy

POSITIVE, NEGATIVE, UNKNOWN = 1, 0, -1


def _rate(hits: np.ndarray) -> dict:
    """A proportion with its 90 % Wilson interval: {"value", "ci90", "k", "n"} (value None when n is 0)."""
    k, n = int(hits.sum()), int(hits.size)
    ci = wilson(k, n, level=CI_LEVEL)
    return {"value": round(k / n, 4) if n else None, "ci90": [round(ci[0], 4), round(ci[1], 4)] if n else None,
            "k": k, "n": n}


def _at(z: np.ndarray, y: np.ndarray, temperature: float, threshold: float) -> dict:
    """Sensitivity and specificity of ``sigmoid(z / temperature) >= threshold`` on outcomes ``y`` (bool)."""
    flagged = sigmoid(z / temperature) >= threshold
    return {"temperature": float(temperature), "threshold": float(threshold),
            "sensitivity": _rate(flagged[y]), "specificity": _rate(~flagged[~y])}


def fit_site(logits: Mapping[str, np.ndarray], outcomes: Mapping[str, np.ndarray], current: Mapping[str, dict],
             codes: Mapping[str, Sequence[str]], dangerous: set[str], min_count: int = MIN_SUPPORT,
             not_refittable: Mapping[str, str] | None = None) -> dict:
    """Refit every label with enough outcomes; keep the others.

    logits: per head (n, k) mean member logits of the reviewed ECGs. outcomes: per head (n, k) int, POSITIVE,
    NEGATIVE or UNKNOWN. current: the calibration in force, manifest-shaped ({head: {"temperature", "threshold",
    "operating_points"?}}). not_refittable: a head, or "head:code", -> why none of its labels (or that one) can be
    refitted (e.g. the reviews
    record no misses for it, so its known outcomes are all above the current threshold and a sensitivity cannot be
    measured).

    Returns {"calibration": {head: {"temperature", "threshold", "operating_points"}} (the new block, manifest-shaped),
    "labels": [row per label: head, code, refit, reason, positives, negatives, point, before, after]}.
    """
    not_refittable = dict(not_refittable or {})
    calibration: dict = {}
    rows: list[dict] = []
    for head in HEADS:
        cur = current[head]
        temps = [float(t) for t in cur["temperature"]]
        thresholds = [float(t) for t in cur["threshold"]]
        # Without recorded points (an older manifest) the kept labels get what mlcore infers from the threshold.
        known_points = operating_points({head: cur}, {head: codes[head]})[head]
        points = [{k: v for k, v in known_points[c].items() if k != "threshold"} for c in codes[head]]
        for j, code in enumerate(codes[head]):
            known = outcomes[head][:, j] != UNKNOWN
            z = np.asarray(logits[head][known, j], dtype=np.float64)
            y = outcomes[head][known, j] == POSITIVE
            n_pos, n_neg = int(y.sum()), int((~y).sum())
            before = _at(z, y, temps[j], thresholds[j])
            metric, target = policy(head, code, dangerous)
            row = {"head": head, "code": code, "positives": n_pos, "negatives": n_neg, "metric": metric,
                   "target": target, "before": before}
            if head in not_refittable or f"{head}:{code}" in not_refittable:
                reason = not_refittable.get(head) or not_refittable[f"{head}:{code}"]
            elif n_pos < min_count or n_neg < min_count:
                reason = f"kept: {n_pos} positive, {n_neg} negative outcomes (a refit needs {min_count} of each)"
            else:
                reason = ""
            if reason:
                rows.append(row | {"refit": False, "reason": reason, "after": before})
                continue
            t_new = fit_temperature(z, y.astype(np.float64))
            threshold, record = operating_point(sigmoid(z / t_new), y, metric, target, min_support=min_count)
            # Not rounded: on well-separated outcomes the fitted temperature is small and a target threshold can
            # sit within 1e-6 of 0 or 1, where rounding would flag every ECG (or none).
            temps[j], thresholds[j] = float(t_new), float(threshold)
            points[j] = record | {"fitted_on": "site"}
            reason = f"refitted on {n_pos + n_neg} outcomes"
            if not TEMPERATURE_BOUNDS[0] * 1.01 < t_new < TEMPERATURE_BOUNDS[1] * 0.99:
                reason += ("; the temperature reached the limit of its fit (the outcomes separate almost perfectly), "
                           "so probabilities will read near 0 or 1")
            rows.append(row | {"refit": True, "reason": reason,
                               "after": _at(z, y, temps[j], thresholds[j])})
        calibration[head] = {"temperature": temps, "threshold": thresholds, "operating_points": points}
    return {"calibration": calibration, "labels": rows}
