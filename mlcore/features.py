"""Simple signal features measured at intake, for drift monitoring (not for diagnosis).

Every feature is measured on the signal as the model sees it (resampled to 100 Hz), so an upload at 500 Hz and a
PTB-XL record at 100 Hz are measured alike and production can be compared with the fold-9 reference.
"""
from __future__ import annotations

import numpy as np
from scipy.signal import find_peaks, sosfiltfilt

from mlcore.filters import butter_sos
from mlcore.preprocess import LEADS, TARGET_FS, to_model_rate
from mlcore.quality import QualityReport, hf_noise_ratio

# R peaks: QRS energy lives in 5–20 Hz; P and T waves and baseline wander mostly below. Peaks closer than 0.3 s
# (200/min) are one beat; a peak must reach 40% of the record's 99th-percentile envelope to count.
QRS_BAND_HZ = (5.0, 20.0)
MIN_RR_S = 0.3
PEAK_FRACTION = 0.4
MIN_BEATS = 3
HR_RANGE = (20.0, 250.0)
# QRS-ish amplitude: the 1st-99th percentile range of the lead above 0.7 Hz; the QRS sets both ends in nearly
# every lead, and percentiles ignore a single spike.
BASELINE_HZ = 0.7

FEATURE_NAMES = ("heart_rate", "noise", "quality_flags", *(f"qrs_amp_{lead}" for lead in LEADS))


def heart_rate(x: np.ndarray, fs: float = TARGET_FS) -> float | None:
    """Beats per minute from the median R-R interval, over all leads together; None if no rhythm is found."""
    if x.shape[-1] < 2 * fs:
        return None
    band = sosfiltfilt(butter_sos(2, QRS_BAND_HZ, btype="band", fs=fs), x, axis=-1)
    envelope = np.abs(band).sum(axis=0)  # (n,) summed over leads, so one bad lead cannot hide the beats
    win = max(1, int(0.05 * fs))
    envelope = np.convolve(envelope, np.ones(win) / win, mode="same")
    top = np.percentile(envelope, 99)
    if top <= 0:
        return None
    peaks, _ = find_peaks(envelope, distance=int(MIN_RR_S * fs), height=PEAK_FRACTION * top)
    if len(peaks) < MIN_BEATS:
        return None
    bpm = 60.0 / float(np.median(np.diff(peaks)) / fs)
    return bpm if HR_RANGE[0] <= bpm <= HR_RANGE[1] else None


def qrs_amplitudes(x: np.ndarray, fs: float = TARGET_FS) -> np.ndarray:
    """(12,) mV: 1st-99th percentile range per lead after removing the baseline."""
    detrended = x - sosfiltfilt(butter_sos(2, BASELINE_HZ, btype="low", fs=fs), x, axis=-1)
    hi, lo = np.percentile(detrended, [99, 1], axis=-1)
    return hi - lo


def intake_features(signal: np.ndarray, fs: float, quality: QualityReport) -> dict[str, float | int | None]:
    """Heart rate, noise level (median over leads of HF/ECG power), number of quality warnings, QRS amplitudes."""
    x = to_model_rate(np.asarray(signal, dtype=np.float32), fs).astype(np.float64)  # (12, n) at 100 Hz
    ratio, _ = hf_noise_ratio(x, TARGET_FS)
    hr = heart_rate(x)
    out: dict[str, float | int | None] = {
        "heart_rate": None if hr is None else round(hr, 1),
        "noise": round(float(np.median(ratio)), 5),
        "quality_flags": len(quality.warnings()),
    }
    out.update({f"qrs_amp_{lead}": round(float(a), 4) for lead, a in zip(LEADS, qrs_amplitudes(x))})
    return out
