"""Synthetic 12-lead ECGs for demo mode (PTB-XL records are not redistributed with the app).

A single rotating heart dipole (Gaussian P, Q, R, S, T waves in 3-D) projected on the 12 lead axes, so
Einthoven's law holds and the leads relate as on a real tracing. For demos and tests only: not physiology.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass, replace

import numpy as np
import orjson

from mlcore.preprocess import LEADS

_DEG = np.pi / 180
# Frontal-plane lead I and II axes (x: patient's left, y: inferior); precordial axes in the horizontal plane
# (x: left, z: anterior).
_I = np.array([1.0, 0.0, 0.0])
_II = np.array([np.cos(60 * _DEG), np.sin(60 * _DEG), 0.0])
_PRECORDIAL = {f"V{i + 1}": np.array([np.cos(a * _DEG), 0.15, np.sin(a * _DEG)]) * 1.4
               for i, a in enumerate((115, 94, 76, 60, 30, 0))}


# Waves later than this after the R peak are the T wave, placed for RR = 1 s and scaled with the cycle (a QTc near
# 420 ms at any rate, as in a healthy adult).
T_WAVE_AFTER_S = 0.1


@dataclass(frozen=True)
class Wave:
    offset_s: float  # relative to the R peak
    width_s: float
    vector: tuple[float, float, float]  # direction x amplitude in mV


NORMAL = (
    Wave(-0.15, 0.025, (0.08, 0.12, 0.03)),  # P
    Wave(-0.025, 0.010, (-0.10, -0.02, 0.15)),  # Q (septal)
    Wave(0.0, 0.012, (1.0, 0.85, -0.45)),  # R
    Wave(0.028, 0.012, (-0.25, -0.35, -0.55)),  # S
    Wave(0.24, 0.045, (0.25, 0.22, 0.12)),  # T, at RR = 1 s (see T_WAVE_AFTER_S)
)


@dataclass(frozen=True)
class DemoCase:
    name: str
    pseudonym: str
    age: int
    sex: str
    heart_rate: float
    waves: tuple[Wave, ...] = NORMAL
    irregular: bool = False  # atrial fibrillation: irregular RR, no P waves, fibrillatory baseline
    qrs_widen: float = 1.0
    st_vector: tuple[float, float, float] = (0.0, 0.0, 0.0)  # ST-segment shift (injury current), mV


CASES = (
    DemoCase("Normal sinus rhythm", "DEMO-0001", 46, "F", 68),
    DemoCase("Sinus tachycardia", "DEMO-0002", 33, "M", 112),
    DemoCase("Anterior ST elevation", "DEMO-0003", 61, "M", 84, st_vector=(0.02, -0.05, 0.30)),
    DemoCase("Atrial fibrillation", "DEMO-0004", 78, "F", 96, irregular=True,
             waves=tuple(w for w in NORMAL if w.offset_s > -0.1)),
    DemoCase("Wide QRS (bundle branch block pattern)", "DEMO-0005", 71, "M", 64, qrs_widen=2.6),
    DemoCase("Old inferior infarction pattern", "DEMO-0006", 67, "M", 72,
             waves=(NORMAL[0], Wave(-0.02, 0.016, (0.0, -0.45, 0.05)), *NORMAL[2:])),
)


# The demo population: the six showcase cases above first (their own ages, seeds 0-5), then variants of them
# spread evenly over sex x age band, so each sex, each default fairness age band (<40, 40-65, >65) and each of
# their intersections holds at least 30 patients and the drift window holds more than its 100 predictions.
POPULATION_SIZE = 200
AGE_RANGES = ((18, 39), (40, 65), (66, 90))
# Relative frequency of each showcase case among the variants, per age range (young: mostly normal rhythms;
# old: more atrial fibrillation, conduction delay and old infarction), in CASES order.
CASE_WEIGHTS = ((6, 3, 1, 0, 0, 0), (5, 2, 2, 1, 1, 1), (3, 1, 2, 3, 2, 2))
POPULATION_SEED = 2026


@dataclass(frozen=True)
class DemoEcg:
    """One synthetic demo ECG: a showcase case with this patient's age, sex, heart rate, amplitude, noise, seed."""
    pseudonym: str
    case: DemoCase
    age: int
    sex: str
    amplitude: float = 1.0
    noise_mv: float = 0.01
    seed: int = 0

    @property
    def file_name(self) -> str:
        """The upload's name says that it is synthetic and what it shows, e.g. DEMO-0003-synthetic-anterior-...."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.case.name.lower()).strip("-")
        return f"{self.pseudonym}-synthetic-{slug}.json"

    def signal(self, fs: int = 500) -> np.ndarray:
        """(12, fs * 10) float32 mV."""
        return synthesize(self.case, fs=fs, seed=self.seed, amplitude=self.amplitude, noise_mv=self.noise_mv)


def population(n: int = POPULATION_SIZE) -> list[DemoEcg]:
    """The demo's ECGs, the same on every call: DEMO-0001..0006 are CASES as written; the rest vary them."""
    out = [DemoEcg(c.pseudonym, c, c.age, c.sex, seed=i) for i, c in enumerate(CASES[:n])]
    rng = np.random.default_rng(POPULATION_SEED)
    for k in range(n - len(out)):
        cell = k % (2 * len(AGE_RANGES))  # (F, <40), (M, <40), (F, 40-65), ...: round robin over sex x age
        sex, (lo, hi) = "FM"[cell % 2], AGE_RANGES[cell // 2]
        weights = np.asarray(CASE_WEIGHTS[cell // 2], dtype=float)
        case = CASES[rng.choice(len(CASES), p=weights / weights.sum())]
        case = replace(case, heart_rate=round(case.heart_rate * rng.uniform(0.85, 1.15)))
        out.append(DemoEcg(f"DEMO-{len(out) + 1:04d}", case, int(rng.integers(lo, hi + 1)), sex,
                           amplitude=round(float(rng.uniform(0.75, 1.3)), 3),
                           noise_mv=round(float(rng.uniform(0.005, 0.03)), 4), seed=1000 + k))
    return out


def _dipole(case: DemoCase, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(3, n) heart vector over time. Each wave is computed where it is not nil (its centre +- 10 widths, beyond which
    it is below 2e-22 of its peak), so a five-minute record costs what its beats do, not beats x samples."""
    d = np.zeros((3, len(t)))
    rr_mean = 60 / case.heart_rate
    beat = 0.35
    while beat < t[-1] + 1:
        rr = rr_mean * (rng.uniform(0.6, 1.4) if case.irregular else rng.normal(1, 0.02))
        for w in case.waves:
            stretch = case.qrs_widen if abs(w.offset_s) < 0.05 else 1.0  # widen only the QRS waves
            if w.offset_s > T_WAVE_AFTER_S:  # repolarisation shortens with the cycle: QT scales as √RR (Bazett 1920)
                stretch = np.sqrt(rr_mean)
            centre, width = beat + w.offset_s * stretch, w.width_s * stretch
            lo, hi = np.searchsorted(t, (centre - 10 * width, centre + 10 * width))
            g = np.exp(-0.5 * ((t[lo:hi] - beat - w.offset_s * stretch) / width) ** 2)
            d[:, lo:hi] += np.outer(w.vector, g)
        if any(case.st_vector):
            # The ST plateau, smoothed by a 15-sample moving average: nil beyond 8 samples either side of it.
            lo, hi = np.searchsorted(t, (beat + 0.05, beat + 0.30))
            lo, hi = max(0, lo - 8), min(len(t), hi + 8)
            part = t[lo:hi]
            st = ((part > beat + 0.05) & (part < beat + 0.30)).astype(float)
            smooth = np.convolve(st, np.ones(15) / 15)[7:7 + len(st)]  # "same" alignment, also for a short slice
            d[:, lo:hi] += np.outer(case.st_vector, smooth)
        beat += rr
    if case.irregular:
        f = sum(np.sin(2 * np.pi * rng.uniform(5, 8) * t + rng.uniform(0, 6)) for _ in range(3))
        d += np.outer((0.02, 0.03, 0.02), f)
    return d


def synthesize(case: DemoCase, fs: int = 500, seconds: float = 10.0, seed: int = 0, amplitude: float = 1.0,
               noise_mv: float = 0.01) -> np.ndarray:
    """(12, n) float32 mV in standard lead order; `amplitude` scales the heart's signal, not wander or noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(fs * seconds)) / fs
    d = _dipole(case, t, rng)
    lead_i, lead_ii = _I @ d, _II @ d
    lead_iii = lead_ii - lead_i  # Einthoven
    limb = {"I": lead_i, "II": lead_ii, "III": lead_iii, "aVR": -(lead_i + lead_ii) / 2,
            "aVL": lead_i - lead_ii / 2, "aVF": lead_ii - lead_i / 2}
    pre = {k: v @ d for k, v in _PRECORDIAL.items()}
    sig = np.stack([limb[k] if k in limb else pre[k] for k in LEADS])
    wander = 0.05 * np.sin(2 * np.pi * 0.15 * t + rng.uniform(0, 6))
    return (amplitude * sig + wander + noise_mv * rng.standard_normal(sig.shape)).astype(np.float32)


def as_json(signal: np.ndarray, fs: float) -> bytes:
    # orjson: the same document as json.dumps (shortest round-trip floats) in a twentieth of the time.
    return orjson.dumps({"fs": fs, "units": "mV",
                         "leads": {lead: np.round(signal[i].astype(np.float64), 4).tolist()
                                   for i, lead in enumerate(LEADS)}})


def as_csv(signal: np.ndarray) -> bytes:
    buf = io.StringIO()
    buf.write(",".join(LEADS) + "\n")
    np.savetxt(buf, signal.T, delimiter=",", fmt="%.4f")
    return buf.getvalue().encode()


def write_wfdb(signal: np.ndarray, fs: int, record_name: str, directory: str) -> None:
    import wfdb

    wfdb.wrsamp(record_name, fs=fs, units=["mV"] * 12, sig_name=list(LEADS), p_signal=signal.T.astype(np.float64),
                fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=directory)
