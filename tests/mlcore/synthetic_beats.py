"""A 12-lead ECG generator with known wave boundaries, for the measurement tests.

Each wave is a sum of smooth lobes (raised-cosine halves, zero value and slope at both ends) between its explicit
onset and offset, so the boundaries are exact: PR = QRS onset - P onset, QRS = QRS offset - QRS onset, QT = T offset -
QRS onset. The limb leads obey Einthoven's law (III = II - I, aVR = -(I + II) / 2, aVL = I - II / 2,
aVF = II - I / 2), as a real recording does.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mlcore.preprocess import LEADS

INDEPENDENT = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")


@dataclass(frozen=True)
class BeatSpec:
    """Boundaries in seconds relative to the QRS onset, and per-lead gains (mV) of I, II, V1-V6."""

    p_on: float = -0.16
    p_off: float = -0.06
    qrs_off: float = 0.09
    t_off: float = 0.40
    t_peak: float = 0.30
    p_gain: tuple[float, ...] = (0.08, 0.15, 0.06, 0.08, 0.08, 0.09, 0.09, 0.08)
    q_gain: tuple[float, ...] = (-0.08, -0.1, 0.0, 0.0, -0.05, -0.1, -0.12, -0.12)
    r_gain: tuple[float, ...] = (0.8, 1.1, 0.3, 0.6, 0.9, 1.4, 1.5, 1.2)
    s_gain: tuple[float, ...] = (-0.2, -0.3, -1.1, -1.5, -1.0, -0.6, -0.3, -0.2)
    t_gain: tuple[float, ...] = (0.2, 0.3, -0.1, 0.35, 0.4, 0.35, 0.3, 0.25)
    st_uv: dict[str, float] = field(default_factory=dict)  # extra ST shift (µV) from J to T end, by lead


def _lobe(t: np.ndarray, start: float, peak: float, end: float) -> np.ndarray:
    """0 outside [start, end], 1 at ``peak``: a raised-cosine rise then fall (each half its own length)."""
    y = np.zeros_like(t)
    up = (t >= start) & (t <= peak)
    y[up] = 0.5 - 0.5 * np.cos(np.pi * (t[up] - start) / (peak - start))
    down = (t > peak) & (t <= end)
    y[down] = 0.5 + 0.5 * np.cos(np.pi * (t[down] - peak) / (end - peak))
    return y


def _limb(ind: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    i, ii = ind["I"], ind["II"]
    return {**ind, "III": ii - i, "aVR": -(i + ii) / 2, "aVL": i - ii / 2, "aVF": ii - i / 2}


def beat(t: np.ndarray, spec: BeatSpec) -> np.ndarray:
    """(12, len(t)) mV of one beat whose QRS starts at t = 0."""
    q_end = spec.qrs_off * 0.2
    r_peak, r_end = spec.qrs_off * 0.4, spec.qrs_off * 0.65
    lobes = {
        "p": _lobe(t, spec.p_on, (spec.p_on + spec.p_off) / 2, spec.p_off),
        "q": _lobe(t, 0.0, q_end / 2, q_end),
        "r": _lobe(t, q_end, r_peak, r_end),
        "s": _lobe(t, r_end, (r_end + spec.qrs_off) / 2, spec.qrs_off),
        "t": _lobe(t, spec.qrs_off + 0.05, spec.t_peak, spec.t_off),
    }
    ind = {}
    for k, lead in enumerate(INDEPENDENT):
        ind[lead] = (spec.p_gain[k] * lobes["p"] + spec.q_gain[k] * lobes["q"] + spec.r_gain[k] * lobes["r"]
                     + spec.s_gain[k] * lobes["s"] + spec.t_gain[k] * lobes["t"])
        if lead in spec.st_uv:  # a plateau from J to the T end, rising within the QRS's last 10 ms
            ind[lead] = ind[lead] + spec.st_uv[lead] / 1000 * _plateau(t, spec.qrs_off - 0.01, spec.qrs_off,
                                                                        spec.t_off - 0.05, spec.t_off)
    leads = _limb(ind)
    return np.stack([leads[name] for name in LEADS])


def _plateau(t: np.ndarray, a: float, b: float, c: float, d: float) -> np.ndarray:
    y = np.zeros_like(t)
    y[(t >= b) & (t <= c)] = 1
    up, down = (t > a) & (t < b), (t > c) & (t < d)
    y[up] = 0.5 - 0.5 * np.cos(np.pi * (t[up] - a) / (b - a))
    y[down] = 0.5 + 0.5 * np.cos(np.pi * (t[down] - c) / (d - c))
    return y


def ecg(fs: float, spec: BeatSpec = BeatSpec(), rr: float | np.ndarray = 0.8, seconds: float = 10.0,
        first_qrs: float = 0.6, with_p: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(12, n) mV with beats every ``rr`` s (or at the given RR intervals), and the QRS onsets (s)."""
    n = int(round(seconds * fs))
    t = np.arange(n) / fs
    rrs = np.full(int(seconds / float(np.min(rr))) + 2, rr) if np.isscalar(rr) else np.asarray(rr, dtype=float)
    onsets = first_qrs + np.concatenate([[0.0], np.cumsum(rrs)])
    onsets = onsets[onsets < seconds - 0.2]
    if not with_p:
        spec = BeatSpec(**{**spec.__dict__, "p_gain": (0.0,) * len(INDEPENDENT)})
    x = np.zeros((len(LEADS), n))
    for on in onsets:
        x += beat(t - on, spec)
    return x, onsets
