"""The site refit on synthetic outcomes with a known shift: thresholds and temperatures move the right way."""
from __future__ import annotations

import numpy as np
import pytest

from mlcore.calibration import sigmoid
from training.site_calibration import NEGATIVE, POSITIVE, UNKNOWN, fit_site

CODES = {"superclass": ["NORM", "MI"], "statements": ["AFIB"]}
DANGEROUS = {"statement:AFIB"}


def _current() -> dict:
    """A PTB-XL-like calibration in force: T = 1 and threshold 0.5 everywhere."""
    return {h: {"temperature": [1.0] * len(c), "threshold": [0.5] * len(c)} for h, c in CODES.items()}


def _site(rng, n: int, pos_mean: float, neg_mean: float, prevalence: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    y = rng.random(n) < prevalence
    z = np.where(y, rng.normal(pos_mean, 1.0, n), rng.normal(neg_mean, 1.0, n))
    return z, np.where(y, POSITIVE, NEGATIVE)


def _fit(columns: dict[str, list[tuple[np.ndarray, np.ndarray]]], min_count: int = 30, **kw) -> dict:
    logits = {h: np.stack([c[0] for c in cols], axis=1) for h, cols in columns.items()}
    outcomes = {h: np.stack([c[1] for c in cols], axis=1) for h, cols in columns.items()}
    return fit_site(logits, outcomes, _current(), CODES, DANGEROUS, min_count, **kw)


def _row(fitted: dict, head: str, code: str) -> dict:
    return next(r for r in fitted["labels"] if r["head"] == head and r["code"] == code)


def _cut_logit(row: dict, when: str) -> float:
    """The threshold on the members' logit scale: T * logit(t)."""
    t, temp = row[when]["threshold"], row[when]["temperature"]
    return temp * np.log(t / (1 - t))


def test_positives_scoring_lower_at_the_site_move_the_threshold_down_and_raise_sensitivity():
    rng = np.random.default_rng(0)
    # PTB-XL put MI's positives near logit +3; at this site they score near 0 (another device), negatives near -3.
    mi = _site(rng, 600, pos_mean=0.0, neg_mean=-3.0)
    afib = _site(rng, 600, pos_mean=-0.5, neg_mean=-3.5)
    norm = _site(rng, 600, pos_mean=2.0, neg_mean=-2.0)
    fitted = _fit({"superclass": [norm, mi], "statements": [afib]})

    row = _row(fitted, "superclass", "MI")
    assert row["refit"] and row["positives"] > 30 and row["negatives"] > 30
    assert _cut_logit(row, "after") < _cut_logit(row, "before") < 0.01  # the cut-off moved down (0 before)
    assert row["after"]["sensitivity"]["value"] > row["before"]["sensitivity"]["value"] + 0.2
    for when in ("before", "after"):  # CIs reported, around the value
        for rate in ("sensitivity", "specificity"):
            r = row[when][rate]
            assert r["ci90"][0] <= r["value"] <= r["ci90"][1] and r["n"] > 0
    # The dangerous statement's threshold is chosen for sensitivity >= 0.90 on the site's outcomes.
    afib_row = _row(fitted, "statements", "AFIB")
    assert afib_row["before"]["sensitivity"]["value"] < 0.5
    assert afib_row["after"]["sensitivity"]["value"] >= 0.90
    assert _cut_logit(afib_row, "after") < _cut_logit(afib_row, "before")
    j = CODES["superclass"].index("MI")
    assert fitted["calibration"]["superclass"]["threshold"][j] == row["after"]["threshold"]
    point = fitted["calibration"]["statements"]["operating_points"][0]
    assert point["name"] == "sensitivity_target" and point["fitted_on"] == "site" and point["achieved_ci90"]


def test_a_known_site_temperature_is_recovered():
    rng = np.random.default_rng(1)
    # The truth at this site is sigmoid(z / 2.5): the model is over-confident there, so T must rise from 1.
    z = rng.normal(0.0, 3.0, 4000)
    y = np.where(rng.random(4000) < sigmoid(z / 2.5), POSITIVE, NEGATIVE)
    under = rng.normal(0.0, 0.6, 4000)  # and under-confident here: truth sigmoid(z / 0.5), so T must fall
    y_under = np.where(rng.random(4000) < sigmoid(under / 0.5), POSITIVE, NEGATIVE)
    fitted = _fit({"superclass": [(under, y_under), (z, y)], "statements": [(z, y)]})
    assert _row(fitted, "superclass", "MI")["after"]["temperature"] == pytest.approx(2.5, rel=0.1)
    assert _row(fitted, "superclass", "NORM")["after"]["temperature"] == pytest.approx(0.5, rel=0.1)


def test_well_separated_outcomes_keep_the_target_instead_of_flagging_everything():
    rng = np.random.default_rng(4)
    # Nearly separable: the fitted temperature is tiny and NORM's specificity threshold lies near 0 on the
    # probability scale; it must still be a threshold (rounded to 0 it would call every ECG normal).
    norm = _site(rng, 400, pos_mean=4.0, neg_mean=-4.0)
    fitted = _fit({"superclass": [norm, norm], "statements": [norm]})
    row = _row(fitted, "superclass", "NORM")
    assert row["refit"] and row["after"]["threshold"] > 0
    assert row["after"]["specificity"]["value"] >= 0.95 and row["after"]["sensitivity"]["value"] > 0.9
    assert "limit of its fit" in row["reason"]  # and the reviewer is told why the temperature is extreme


def test_a_label_with_too_few_outcomes_keeps_its_calibration_and_says_why():
    rng = np.random.default_rng(2)
    z, y = _site(rng, 300, 0.0, -3.0)
    few = y.copy()
    few[np.flatnonzero(y == POSITIVE)[12:]] = UNKNOWN  # 12 known positives: fewer than the 30 a refit needs
    fitted = _fit({"superclass": [(z, y), (z, few)], "statements": [(z, y)]})
    row = _row(fitted, "superclass", "MI")
    assert not row["refit"] and row["positives"] == 12 and "a refit needs 30 of each" in row["reason"]
    assert row["after"] == row["before"]
    assert fitted["calibration"]["superclass"]["threshold"][1] == 0.5
    assert fitted["calibration"]["superclass"]["temperature"][1] == 1.0
    assert _row(fitted, "superclass", "NORM")["refit"]  # the other label, with enough, is refitted


def test_a_head_the_reviews_cannot_judge_is_kept_with_the_reason():
    rng = np.random.default_rng(3)
    col = _site(rng, 300, 0.0, -3.0)
    fitted = _fit({"superclass": [col, col], "statements": [col]}, not_refittable={"statements": "kept: no misses"})
    row = _row(fitted, "statements", "AFIB")
    assert not row["refit"] and row["reason"] == "kept: no misses"
    kept = fitted["calibration"]["statements"]
    assert kept["temperature"] == [1.0] and kept["threshold"] == [0.5]
    assert kept["operating_points"][0]["name"] == "f1_optimal"  # what mlcore says of a threshold with no record
