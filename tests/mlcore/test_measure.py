"""mlcore.measure on synthetic 12-lead ECGs with known boundaries (tests/mlcore/synthetic_beats.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mlcore.measure import KEYS, measure
from mlcore.preprocess import LEADS
from tests.mlcore.synthetic_beats import BeatSpec, ecg

SPECS = {
    "normal": BeatSpec(),
    "long PR, wide QRS, long QT": BeatSpec(p_on=-0.24, p_off=-0.13, qrs_off=0.13, t_off=0.46, t_peak=0.36),
}


@pytest.mark.parametrize("fs", [500, 250])
@pytest.mark.parametrize("name", list(SPECS))
def test_clean_synthetic_intervals_to_one_sample(fs, name):
    spec = SPECS[name]
    m = measure(ecg(fs, spec)[0], fs, convention="exact")
    one_sample = 1000 / fs + 0.5  # ms, plus the rounding to whole ms
    assert abs(m["pr_ms"] - 1000 * -spec.p_on) <= one_sample
    assert abs(m["qrs_ms"] - 1000 * spec.qrs_off) <= one_sample
    assert abs(m["qt_ms"] - 1000 * spec.t_off) <= one_sample
    assert m["reasons"] == {}


def test_default_convention_is_exact_and_ludb_reads_a_clean_qrs_wider_as_documented():
    """The default reads a clean QRS as it is (as the devices' programs do); the LUDB-calibrated convention moves
    the QRS onset 14 ms and the offset 6 ms out (and smooths over 20 ms)."""
    spec = SPECS["normal"]
    x, _ = ecg(500, spec)
    default, exact, ludb = measure(x, 500), measure(x, 500, convention="exact"), measure(x, 500, convention="ludb")
    assert default == exact and default["convention"] == "exact"
    assert abs(default["qrs_ms"] - 1000 * spec.qrs_off) <= 2.5  # one sample at 500 Hz, plus the rounding
    assert 20 <= ludb["qrs_ms"] - exact["qrs_ms"] <= 50
    assert abs(ludb["qt_ms"] - exact["qt_ms"] - (ludb["qrs_ms"] - exact["qrs_ms"]) / 2) <= 10


@pytest.mark.parametrize(("rr", "bpm"), [(0.8, 75), (0.5, 120), (1.25, 48)])
def test_heart_rate_from_the_rr_interval(rr, bpm):
    m = measure(ecg(500, SPECS["normal"], rr=rr)[0], 500)
    assert m["rr_ms"] == round(rr * 1000)
    assert m["heart_rate_bpm"] == bpm


def test_heart_rate_is_that_of_the_median_rr():
    rrs = np.array([0.70, 0.95, 0.72, 0.80, 0.78, 0.90, 0.76, 0.82, 0.74, 0.88, 0.8, 0.8, 0.8])
    x, onsets = ecg(500, SPECS["normal"], rr=rrs)
    m = measure(x, 500)
    assert m["rr_ms"] == pytest.approx(1000 * np.median(np.diff(onsets)), abs=4)
    assert m["heart_rate_bpm"] == round(60 / np.median(np.diff(onsets)))


def _fibrillation(n: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    """(12, n) mV of f waves: a few 4-8 Hz components of drifting phase, largest in V1 and the inferior leads."""
    t = np.arange(n) / fs
    f = np.zeros(n)
    for _ in range(4):
        freq = rng.uniform(4, 8)
        drift = np.cumsum(rng.normal(0, 0.05, n))
        f += rng.uniform(0.02, 0.05) * np.sin(2 * np.pi * freq * t + drift)
    gains = np.array([0.3, 0.8, 0.6, -0.5, -0.1, 0.7, 1.0, 0.7, 0.5, 0.3, 0.2, 0.2])
    return gains[:, None] * f[None, :]


def test_atrial_fibrillation_like_signal_has_no_pr():
    rng = np.random.default_rng(7)
    rrs = rng.uniform(0.45, 1.05, 20)  # irregularly irregular
    x, _ = ecg(500, SPECS["normal"], rr=rrs, with_p=False)
    x = x + _fibrillation(x.shape[1], 500, rng) + 0.01 * rng.standard_normal(x.shape)
    m = measure(x, 500)
    assert m["pr_ms"] is None and m["p_ms"] is None and m["p_axis_deg"] is None
    assert "no consistent P wave" in m["reasons"]["pr_ms"]
    assert m["qrs_ms"] is not None and m["qt_ms"] is not None  # the ventricles are still measured


def test_irregular_rhythm_with_p_waves_keeps_its_pr():
    """Sinus arrhythmia: the RR varies, but every QRS has its P wave at a fixed PR."""
    rng = np.random.default_rng(7)
    rrs = 0.85 + 0.2 * np.sin(np.arange(14) / 2)
    x, _ = ecg(500, SPECS["normal"], rr=rrs)
    m = measure(x + 0.01 * rng.standard_normal(x.shape), 500, convention="exact")
    assert m["pr_ms"] == pytest.approx(160, abs=6)


def test_too_few_beats_says_so():
    x, _ = ecg(500, SPECS["normal"], rr=1.2, seconds=2.5)
    m = measure(x, 500)
    assert all(m[k] is None for k in KEYS)
    assert set(m["reasons"]) == set(KEYS)


def test_st_levels_per_lead_in_microvolts():
    spec = BeatSpec(st_uv={"V2": 300, "V3": 300, "V4": 300})
    m = measure(ecg(500, spec)[0], 500)
    assert set(m["st_j_uv"]) == set(LEADS) == set(m["st_j60_uv"])
    for lead in ("V2", "V3", "V4"):
        assert m["st_j_uv"][lead] == pytest.approx(300, abs=40)
        assert m["st_j60_uv"][lead] == pytest.approx(300, abs=40)
    assert abs(m["st_j_uv"]["V6"]) < 40


def test_qrs_axis_follows_the_limb_leads():
    normal = measure(ecg(500, SPECS["normal"])[0], 500)["qrs_axis_deg"]
    # Lead I mostly negative, II positive: a rightward axis.
    right = BeatSpec(r_gain=(0.1, 1.1, 0.3, 0.6, 0.9, 1.4, 1.5, 1.2), s_gain=(-0.9, -0.1, -1.1, -1.5, -1.0, -0.6,
                                                                              -0.3, -0.2))
    rad = measure(ecg(500, right)[0], 500)["qrs_axis_deg"]
    assert 0 < normal < 90
    assert rad > 90


def test_output_is_json_ready_with_median_beats_and_fiducials():
    m = measure(ecg(500, SPECS["normal"])[0], 500)
    again = json.loads(json.dumps(m))
    assert again == m
    assert m["convention"] == "exact" and m["version"]
    beats = m["median_beats"]["leads"]
    assert set(beats) == set(LEADS)
    fid = m["fiducials"]
    assert fid["p_on"] < fid["p_off"] < fid["qrs_on"] < fid["qrs_off"] < fid["t_off"] < len(beats["II"])
    assert set(fid["per_lead"]) == set(LEADS)
    assert len(m["beats"]["dominant"]) >= 10


def test_rejects_the_wrong_shape_low_rates_and_unknown_conventions():
    with pytest.raises(ValueError):
        measure(np.zeros((8, 5000)), 500)
    with pytest.raises(ValueError, match="unknown convention"):
        measure(np.zeros((12, 5000)), 500, convention="12SL")
    assert measure(np.zeros((12, 500)), 50)["reasons"]["qrs_ms"].startswith("sampled at 50 Hz")


def test_noise_gives_no_rate_and_says_why():
    rng = np.random.default_rng(0)
    m = measure(0.1 * rng.standard_normal((len(LEADS), 5000)), 500)
    assert all(m[k] is None for k in KEYS)
    assert "noise" in m["reasons"]["heart_rate_bpm"]


def test_a_beat_at_the_record_edge_is_aligned_without_leaving_the_record():
    """A beat whose best alignment lies at the very edge of the record: the next alignment pass must not read past
    the record (on 5 of PTB-XL's first 2,500 records it read an empty segment there and the measurement failed)."""
    from mlcore.measure import ALIGN_HALF_S, ALIGN_SHIFT_S, _align, detect_beats

    fs = 100  # PTB-XL's rate, where the failing records were
    half, shift = int(ALIGN_HALF_S * fs), int(ALIGN_SHIFT_S * fs)
    x, _ = ecg(fs, SPECS["normal"], first_qrs=0.4)
    aligned, _ = _align(x, detect_beats(x, fs), fs)
    # Cut the record so that the first beat's true alignment sits at ``half`` samples from its start, and say it
    # was detected ``shift`` samples later, at the earliest position alignment accepts.
    start = int(aligned[0]) - half
    x = x[:, start:]
    peaks = aligned - start
    peaks[0] = half + shift
    moved, corr = _align(x, peaks, fs)
    assert moved.min() >= half + shift and moved.max() <= x.shape[1] - half - shift - 1
    assert np.isfinite(corr).all()
