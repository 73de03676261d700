"""The one preprocessing function shared by training, inference and explanation.

Every signal that reaches a model goes through :func:`preprocess`, so a record read from the PTB-XL cache
during training and the same record uploaded through the web app produce the same tensor bit for bit.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

# Standard 12-lead order used everywhere in the project (models, plots, reports).
LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
TARGET_FS = 100  # Hz; the PTB-XL benchmark found no gain from 500 Hz input.
WINDOW_S = 10  # seconds
N_SAMPLES = TARGET_FS * WINDOW_S  # 1000

# Spellings seen in exports from carts, PhysioNet headers and spreadsheets, matched case-insensitively.
_ALIASES: dict[str, str] = {
    "i": "I", "ii": "II", "iii": "III",
    "avr": "aVR", "avl": "aVL", "avf": "aVF",
    "lead i": "I", "lead ii": "II", "lead iii": "III",
    "lead_i": "I", "lead_ii": "II", "lead_iii": "III",
    "di": "I", "dii": "II", "diii": "III",  # Einthoven's D I-III, common in European exports
}
for _n in range(1, 7):
    _ALIASES[f"v{_n}"] = f"V{_n}"
    _ALIASES[f"lead v{_n}"] = f"V{_n}"
    _ALIASES[f"lead_v{_n}"] = f"V{_n}"


class PreprocessError(ValueError):
    """Raised when a signal cannot be turned into model input; the message is shown to users."""


@dataclass(frozen=True)
class Standardizer:
    """Per-lead mean and standard deviation in mV, fitted on the training folds and stored with the weights."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, signals: np.ndarray) -> Standardizer:
        """Fit on resampled, windowed signals of shape (n, 12, 1000) in mV."""
        mean = signals.mean(axis=(0, 2), dtype=np.float64)
        std = signals.std(axis=(0, 2), dtype=np.float64)
        return cls(tuple(float(m) for m in mean), tuple(float(max(s, 1e-6)) for s in std))

    @classmethod
    def identity(cls) -> Standardizer:
        return cls((0.0,) * len(LEADS), (1.0,) * len(LEADS))

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> Standardizer:
        return cls(tuple(float(x) for x in d["mean"]), tuple(float(x) for x in d["std"]))


def canonical_lead(name: str) -> str | None:
    """Map a lead name such as 'AVR', 'v1' or 'Lead II' to its standard spelling, or None if unknown."""
    key = name.strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    return None


def reorder_leads(signal: np.ndarray, leads: Sequence[str]) -> np.ndarray:
    """Return the (12, n) signal in standard lead order, given the names of its rows.

    Raises PreprocessError naming the missing, unknown or duplicated leads.
    """
    names = [canonical_lead(n) for n in leads]
    unknown = [raw for raw, canon in zip(leads, names) if canon is None]
    if unknown:
        raise PreprocessError(f"Unknown lead name(s): {', '.join(map(str, unknown))}.")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise PreprocessError(f"Lead(s) given more than once: {', '.join(dup)}.")
    missing = [lead for lead in LEADS if lead not in names]
    if missing:
        raise PreprocessError(f"Missing lead(s): {', '.join(missing)}; a 12-lead ECG is required.")
    index = [names.index(lead) for lead in LEADS]
    return signal[index]


def resample(signal: np.ndarray, fs: float, target_fs: int = TARGET_FS) -> np.ndarray:
    """Polyphase resampling along the last axis (anti-aliased; keeps in-band amplitudes)."""
    if fs == target_fs:
        return signal
    ratio = Fraction(target_fs) / Fraction(fs).limit_denominator(1000)
    ratio = ratio.limit_denominator(1000)
    return resample_poly(signal, ratio.numerator, ratio.denominator, axis=-1)


def fit_window(signal: np.ndarray, n: int = N_SAMPLES) -> np.ndarray:
    """Crop or pad the last axis to n samples.

    Rule: a longer record keeps its central n samples; a shorter one is padded with 0 mV (the isoelectric
    line) equally on both sides, the odd sample going to the end.
    """
    length = signal.shape[-1]
    if length > n:
        start = (length - n) // 2
        return signal[..., start:start + n]
    if length < n:
        before = (n - length) // 2
        return np.pad(signal, [(0, 0)] * (signal.ndim - 1) + [(before, n - length - before)])
    return signal


def to_model_rate(signal: np.ndarray, fs: float, leads: Sequence[str] | None = None) -> np.ndarray:
    """Standard lead order, 100 Hz, 10 s window, still in mV: (12, 1000) float32.

    This is the part of :func:`preprocess` that does not depend on fitted constants; the PTB-XL cache stores
    its output so that ``preprocess(cached, TARGET_FS, st)`` equals ``preprocess(raw, fs, st, leads)``.
    """
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim != 2:
        raise PreprocessError(f"Expected a 2-D (leads, samples) signal, got shape {x.shape}.")
    if leads is not None:
        if len(leads) != x.shape[0]:
            raise PreprocessError(f"{len(leads)} lead names for {x.shape[0]} signal rows.")
        x = reorder_leads(x, leads)
    if x.shape[0] != len(LEADS):
        raise PreprocessError(f"Expected 12 leads, got {x.shape[0]}.")
    if not np.isfinite(x).all():
        raise PreprocessError("The signal contains NaN or infinite values.")
    if not fs or fs <= 0 or not np.isfinite(fs):
        raise PreprocessError(f"Invalid sampling rate: {fs!r}.")
    return np.ascontiguousarray(fit_window(resample(x, float(fs))), dtype=np.float32)


def preprocess(
    signal: np.ndarray,
    fs: float,
    standardizer: Standardizer | None = None,
    leads: Sequence[str] | None = None,
) -> np.ndarray:
    """Turn one ECG into model input.

    signal: (12, n) array in mV, rows in ``leads`` order (standard order if None), sampled at ``fs`` Hz.
    Returns a C-contiguous (12, 1000) float32 array: standard lead order, 100 Hz, central 10 s (or padded),
    standardised per lead with constants fitted on the training folds.
    """
    x = to_model_rate(signal, fs, leads)  # (12, 1000) float32 mV
    st = standardizer or Standardizer.identity()
    mean = np.asarray(st.mean, dtype=np.float32)[:, None]
    std = np.asarray(st.std, dtype=np.float32)[:, None]
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


def preprocess_batch(
    signals: Sequence[np.ndarray] | np.ndarray, fs: float, standardizer: Standardizer | None = None
) -> np.ndarray:
    """preprocess() applied to each signal; returns (batch, 12, 1000) float32."""
    return np.stack([preprocess(s, fs, standardizer) for s in signals])
