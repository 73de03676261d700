from __future__ import annotations

import numpy as np
import pytest

from mlcore.preprocess import LEADS, PreprocessError, Standardizer, canonical_lead, preprocess, to_model_rate
from mlcore.ptbxl import load_folds, read_record
from training.train import standardized


def test_training_cache_and_upload_path_give_identical_model_input(ptbxl_dir, tmp_path):
    """What a model trains on equals, bit for bit, what the same record gives when uploaded."""
    cache = tmp_path / "cache"
    split = load_folds(ptbxl_dir, [9, 10], cache)
    again = load_folds(ptbxl_dir, [9, 10], cache)  # second read comes from the .npz cache
    st = Standardizer.fit(split.signals)
    train_x = standardized(split, st)
    assert np.array_equal(standardized(again, st), train_x)
    for i, ecg_id in enumerate(split.ecg_id):
        raw, fs, leads = read_record(ptbxl_dir / "records100" / "00000" / f"{ecg_id:05d}_lr")
        served = preprocess(raw, fs, st, leads)
        assert served.dtype == np.float32 and served.shape == (12, 1000)
        assert np.array_equal(served, train_x[i])


@pytest.mark.parametrize("fs", [250, 500, 1000])
def test_resampling_keeps_a_sinusoid_amplitude_and_frequency(fs):
    t = np.arange(10 * fs) / fs
    sine = np.sin(2 * np.pi * 5 * t)  # 5 Hz, 1 mV peak
    out = preprocess(np.tile(sine, (12, 1)), fs)
    inner = out[:, 50:-50]  # away from the filter's edge transients
    assert np.allclose(inner.max(axis=1), 1.0, atol=0.01)
    assert np.allclose(inner.min(axis=1), -1.0, atol=0.01)
    spectrum = np.abs(np.fft.rfft(out[0]))
    assert np.argmax(spectrum) * 100 / 1000 == pytest.approx(5.0)


def test_longer_records_keep_the_central_ten_seconds():
    x = np.tile(np.arange(1200, dtype=float), (12, 1))  # 12 s at 100 Hz
    out = to_model_rate(x, 100)
    assert out[0, 0] == 100 and out[0, -1] == 1099


def test_shorter_records_are_padded_with_zero_mv_on_both_sides():
    x = np.ones((12, 850))  # 8.5 s
    out = to_model_rate(x, 100)
    assert out.shape == (12, 1000)
    assert (out[:, :75] == 0).all() and (out[:, 75:925] == 1).all() and (out[:, 925:] == 0).all()


def test_lead_names_are_matched_case_insensitively_and_reordered():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((12, 1000))
    order = rng.permutation(12)
    names = [LEADS[i].upper() if i % 2 else LEADS[i].lower() for i in order]
    assert np.array_equal(preprocess(x[order], 100, leads=names), preprocess(x, 100))
    assert canonical_lead("Lead II") == "II" and canonical_lead("AVR") == "aVR" and canonical_lead("x") is None


@pytest.mark.parametrize(("signal", "leads", "message"), [
    (np.zeros((11, 1000)), None, "Expected 12 leads"),
    (np.zeros(1000), None, "2-D"),
    (np.full((12, 1000), np.nan), None, "NaN"),
    (np.zeros((12, 1000)), list(LEADS[:-1]) + ["V7"], "Unknown lead"),
    (np.zeros((12, 1000)), list(LEADS[:-1]) + ["V5"], "more than once"),
    (np.zeros((12, 1000)), list(LEADS[:-1]), "12 signal rows"),
])
def test_bad_signals_get_a_clear_error(signal, leads, message):
    with pytest.raises(PreprocessError, match=message):
        preprocess(signal, 100, leads=leads)


def test_invalid_sampling_rate_is_refused():
    with pytest.raises(PreprocessError, match="sampling rate"):
        preprocess(np.zeros((12, 1000)), 0)


def test_standardizer_uses_fitted_per_lead_constants():
    x = np.stack([np.full((12, 1000), 2.0), np.full((12, 1000), 4.0)])
    x[:, 3] *= 10
    st = Standardizer.fit(x)
    assert st.mean[0] == pytest.approx(3.0) and st.mean[3] == pytest.approx(30.0)
    out = preprocess(x[1], 100, st)
    assert np.allclose(out, 1.0)
