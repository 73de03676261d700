"""Intake features: heart rate, QRS amplitude and noise, measured alike at any sampling rate."""
from __future__ import annotations

import numpy as np
import pytest

from clinical import demo
from mlcore.features import heart_rate, intake_features
from mlcore.preprocess import LEADS
from mlcore.quality import assess


@pytest.mark.parametrize("case", [c for c in demo.CASES if not c.irregular], ids=lambda c: c.name)
def test_heart_rate_matches_the_synthetic_rhythm(case):
    x = demo.synthesize(case, fs=500, seed=3)
    features = intake_features(x, 500, assess(x, 500))
    assert features["heart_rate"] == pytest.approx(case.heart_rate, rel=0.05)


def test_same_ecg_at_500_and_100_hz_gives_the_same_features():
    x500 = demo.synthesize(demo.CASES[0], fs=500, seed=4)
    x100 = x500[:, ::5]  # the same beats, decimated (no new information above 50 Hz in this signal)
    a = intake_features(x500, 500, assess(x500, 500))
    b = intake_features(x100, 100, assess(x100, 100))
    assert a["heart_rate"] == pytest.approx(b["heart_rate"], rel=0.02)
    for lead in LEADS:
        assert a[f"qrs_amp_{lead}"] == pytest.approx(b[f"qrs_amp_{lead}"], rel=0.1, abs=0.02)


def test_added_noise_raises_the_noise_feature_and_scaling_the_amplitudes():
    x = demo.synthesize(demo.CASES[0], fs=500, seed=5)
    clean = intake_features(x, 500, assess(x, 500))
    noisy_x = x + np.random.default_rng(0).normal(0, 0.05, x.shape)
    noisy = intake_features(noisy_x, 500, assess(noisy_x, 500))
    assert noisy["noise"] > 5 * clean["noise"]
    doubled = intake_features(2 * x, 500, assess(2 * x, 500))
    assert doubled["qrs_amp_II"] == pytest.approx(2 * clean["qrs_amp_II"], rel=1e-3)


def test_no_rhythm_gives_no_heart_rate():
    flat = np.zeros((12, 1000))
    assert heart_rate(flat) is None
    assert heart_rate(np.zeros((12, 100))) is None  # under 2 s
