"""training.operating_points: thresholds for stated targets, the minimum support, and what the manifest records."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mlcore.calibration import MIN_THRESHOLD
from mlcore.metrics import wilson
from training.operating_points import (
    CI_LEVEL,
    MIN_SUPPORT,
    WEIGHTS,
    operating_point,
    threshold_for_sensitivity,
    threshold_for_specificity,
)

rng = np.random.default_rng(0)


def _scores(n_pos: int, n_neg: int) -> tuple[np.ndarray, np.ndarray]:
    p = np.concatenate([rng.beta(5, 2, n_pos), rng.beta(2, 5, n_neg)])
    y = np.concatenate([np.ones(n_pos, bool), np.zeros(n_neg, bool)])
    return p, y


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95])
def test_sensitivity_threshold_is_the_highest_that_meets_the_target(target):
    p, y = _scores(137, 900)
    t = threshold_for_sensitivity(p, y, target)
    assert (p[y] >= t).mean() >= target
    # Any higher threshold that drops one more positive misses the target.
    next_pos = np.sort(p[y][p[y] >= t])[0]
    assert (p[y] > next_pos).mean() < target


@pytest.mark.parametrize("target", [0.9, 0.95])
def test_specificity_threshold_is_the_lowest_that_meets_the_target(target):
    p, y = _scores(300, 700)
    t = threshold_for_specificity(p, y, target)
    assert (p[~y] < t).mean() >= target
    top_neg_below = np.sort(p[~y][p[~y] < t])[-1]
    assert (p[~y] < top_neg_below).mean() < target


def test_too_few_positives_are_not_validated_and_keep_the_f1_threshold():
    p, y = _scores(MIN_SUPPORT - 1, 500)
    t, rec = operating_point(p, y, "sensitivity", 0.9)
    assert rec["validated"] is False and rec["achieved"] is None and rec["support"] == MIN_SUPPORT - 1
    assert rec["name"].endswith("_unvalidated_target") and t >= MIN_THRESHOLD
    t, rec = operating_point(*_scores(MIN_SUPPORT, 500), "sensitivity", 0.9)
    assert rec["validated"] is True and rec["achieved"] >= 0.9
    lo, hi = rec["achieved_ci90"]
    assert lo < rec["achieved"] <= hi and rec["achieved_out_of_sample"] is not None


def test_wilson_interval():
    lo, hi = wilson(27, 30, level=CI_LEVEL)  # 0.90
    assert 0.77 < lo < 0.78 and 0.95 < hi < 0.97
    assert all(math.isnan(v) for v in wilson(0, 0, level=CI_LEVEL))


def test_the_committed_manifest_records_an_operating_point_for_every_label():
    """The dangerous statements with enough positives meet sensitivity 0.90 on fold 9, NORM specificity 0.95;
    the others say why they are not validated."""
    manifest = json.loads((WEIGHTS / "manifest.json").read_text())
    cal = manifest["calibration"]
    table = json.loads((WEIGHTS.parents[1] / "clinical" / "recommendations.json").read_text())
    dangerous = {k.split(":")[1] for k in table["dangerous"]["keys"]}
    for head, codes in (("superclass", manifest["labels"]["superclasses"]),
                        ("statements", manifest["labels"]["statements"])):
        points = cal[head]["operating_points"]
        assert len(points) == len(codes) == len(cal[head]["threshold"])
        for code, point in zip(codes, points):
            assert point["validated"] == (point["support"] >= cal["min_support"])
            if head == "statements" and code in dangerous:
                assert point["metric"] == "sensitivity" and point["target"] == 0.9
                assert not point["validated"] or point["achieved"] >= 0.9, (code, point)
            if code == "NORM":
                assert point["metric"] == "specificity" and point["validated"] and point["achieved"] >= 0.95
    afib = cal["statements"]["operating_points"][manifest["labels"]["statements"].index("AFIB")]
    assert afib["validated"] and afib["support"] > 100
