"""Signal-quality gate run before inference.

:func:`assess` looks at each lead (flat / lead off, clipping, high-frequency noise, baseline wander) and at the
limb leads together (arm-electrode reversal, Einthoven consistency). Problems in a few leads are warnings shown
next to the result; a record with too many unreadable leads is refused, because the model would be reading
artefact. Thresholds are named constants below, each with the reason for its value. No Django import.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.signal import sosfiltfilt, welch

from mlcore.filters import butter_sos
from mlcore.preprocess import LEADS

# Flat line / lead off: a connected lead shows QRS complexes of a few tenths of a mV at least, so a lead whose
# whole range is under 0.05 mV, or whose spread is under 0.01 mV (a flat line with an odd spike), carries no ECG.
FLAT_PTP_MV = 0.05
FLAT_STD_MV = 0.01

# Clipping: an amplifier at its rail repeats one value. We call a lead clipped when at least 2% of its samples sit
# within 2 µV (about one ADC step) of its maximum or of its minimum AND at least 20 ms of them are consecutive. A
# natural peak reaches its extreme once, for a sample or two, so it meets neither condition.
CLIP_EPS_MV = 0.002
CLIP_FRACTION = 0.02
CLIP_MIN_RUN_S = 0.02
CLIP_MIN_RUN_SAMPLES = 3

# High-frequency noise (muscle tremor, mains hum): power above HF_LOW_HZ relative to power in 0.5 Hz–HF_LOW_HZ,
# where nearly all ECG energy lies. At 100 Hz the Nyquist limit is 50 Hz, so the band starts at 70% of Nyquist
# (35 Hz) instead. Below HF_MIN_FS there is no band left to look at. The RMS floor keeps a quiet lead with a small
# QRS (whose ratio is large only because its ECG power is small) from being called noisy. On PTB-XL no lead of 50
# records at 500 Hz reached a ratio of 0.2 (noise-annotated ones included), and none of 3,000 records at 100 Hz
# was flagged.
HF_MIN_FS = 100.0
HF_LOW_HZ = 40.0
HF_WARN_RATIO = 0.25
HF_SEVERE_RATIO = 1.0  # more noise power than ECG power: the waveform is hidden
HF_MIN_RMS_MV = 0.03

# Baseline wander (breathing, movement): the part of the lead below 0.7 Hz (heart rates down to 42/min stay above
# it) moving by more than 1.5 mV peak to peak. Slow drift shifts ST segments by clinically relevant amounts; on
# 1,500 PTB-XL records 1.0 mV flagged 12% of records (annotators marked drift in 7.6%), 1.5 mV flagged 6% and
# agreed better with the annotations, so the warning stays rare enough to be read.
WANDER_CUTOFF_HZ = 0.7
WANDER_PTP_MV = 1.5
EDGE_S = 0.5  # filter transients at the ends of the record are ignored

# Limb-lead reversal (LA/RA swapped): lead I comes out inverted and aVR upright, the reverse of almost every
# correctly wired ECG (extreme right axis and dextrocardia look the same and deserve a second look too). It fired
# on 5 of 3,000 PTB-XL records: one whose report says the arm electrodes were probably swapped, four with extreme
# right axis deviation.
# Polarity is (positive peak - |negative peak|) / (sum of both), from the 1st and 99th percentiles, in [-1, 1].
REVERSAL_POLARITY = 0.3
# Einthoven's law I + III = II (and aVR + aVL + aVF = 0) holds exactly for correctly labelled leads; a residual
# over 25% of the limb-lead RMS (and over 0.05 mV) means the limb leads were mislabelled or badly recorded.
EINTHOVEN_MAX_REL = 0.25
EINTHOVEN_MIN_RMS_MV = 0.05
# An identity that fails as written can still hold once each lead is rescaled: the leads were recorded (or derived)
# consistently and then exported with wrong per-lead gains. LUDB v1.0.1 is such a source: its limb leads break
# Einthoven's law by 18-57% of their RMS in mV, yet II = a·I + b·III holds to rounding with a = gain(I)/gain(II) and
# b = gain(III)/gain(II) from its own headers (every record tried; a cart's own export holds the law within 2%,
# ../shared/ecg_samples). That is a calibration problem of the file, not a misplaced electrode: told apart, with
# its own code, when the least-squares coefficients keep the identity's signs, lie within a factor LIMB_SCALE_MAX
# of 1 and leave under LIMB_SCALED_MAX_REL of the lead's RMS. A mislabelled lead fits with a wrong sign or not at all
# (LA/RA reversal keeps the law and is caught by polarity above).
LIMB_SCALE_MAX = 3.0
LIMB_SCALED_MAX_REL = 0.02
# Both limb checks look at 0.7–25 Hz, where P, QRS and T live, so noise (reported on its own) does not break them.
LIMB_LOWPASS_HZ = 25.0

# Refusal: with 3 or more unreadable (flat or clipped) leads, or 6 or more leads drowned in noise, too much of the
# ECG is missing for a 12-lead interpretation.
REFUSE_BAD_LEADS = 3
REFUSE_NOISY_LEADS = 6

CODES = ("flat_line", "clipping", "high_frequency_noise", "baseline_wander", "limb_lead_reversal",
         "limb_lead_scaling")
# What to do about each problem that can refuse a record, said once after the problems: the ECG is recorded again
# after fixing what spoiled it. A flat lead is an electrode off; a clipped one is most often a loose or dry electrode
# whose offset drives the amplifier to its rail; noise is muscle tremor or mains interference.
NEXT_STEPS = {
    "flat_line": "check that every electrode is attached with good skin contact",
    "clipping": "check that every electrode is attached with good skin contact",
    "high_frequency_noise": "let the patient lie relaxed and still, away from mains-powered equipment",
}
SEVERITIES = ("refuse", "warn")


@dataclass(frozen=True)
class QualityIssue:
    code: str  # one of CODES
    severity: str  # "refuse" | "warn"
    lead: str | None  # lead name, or None for record-level issues
    message: str  # one sentence for a clinician


@dataclass(frozen=True)
class QualityReport:
    usable: bool
    issues: tuple[QualityIssue, ...]
    # Per lead HF / ECG power (hf_noise_ratio) as the check computed it, or None below HF_MIN_FS: the window
    # choice ranks candidates by it, so it is not computed twice. Not part of the stored report.
    hf_ratio: np.ndarray | None = field(default=None, compare=False, repr=False)

    def warnings(self) -> list[QualityIssue]:
        return [i for i in self.issues if i.severity == "warn"]

    def refusals(self) -> list[QualityIssue]:
        return [i for i in self.issues if i.severity == "refuse"]

    def next_step(self) -> str:
        """What to do about the refusals, in one sentence ('' when the record is usable)."""
        steps = list(dict.fromkeys(NEXT_STEPS[i.code] for i in self.refusals() if i.code in NEXT_STEPS))
        if not steps and self.usable:
            return ""
        said = "; ".join(steps) + ", then record" if steps else "Record"
        return said[0].upper() + said[1:] + " the ECG again."

    def to_dict(self) -> dict:
        return {
            "usable": self.usable,
            "issues": [
                {"code": i.code, "severity": i.severity, "lead": i.lead, "message": i.message} for i in self.issues
            ],
        }

    @classmethod
    def from_dict(cls, d: dict) -> QualityReport:
        issues = tuple(
            QualityIssue(str(i["code"]), str(i["severity"]), i.get("lead"), str(i["message"]))
            for i in d.get("issues", [])
        )
        return cls(usable=bool(d["usable"]), issues=issues)


def _is_flat(x: np.ndarray) -> bool:
    return float(np.ptp(x)) < FLAT_PTP_MV or float(np.std(x)) < FLAT_STD_MV


def _longest_run(mask: np.ndarray) -> int:
    if not mask.any():
        return 0
    # Run lengths from the positions where the mask switches on and off.
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max())


def _clipped_side(x: np.ndarray, fs: float) -> str | None:
    """'maximum' or 'minimum' if the lead sits at that extreme for long enough to be saturation, else None."""
    min_run = max(CLIP_MIN_RUN_SAMPLES, int(round(CLIP_MIN_RUN_S * fs)))
    for side, extreme in (("maximum", x.max()), ("minimum", x.min())):
        at_extreme = np.abs(x - extreme) <= CLIP_EPS_MV
        if at_extreme.mean() >= CLIP_FRACTION and _longest_run(at_extreme) >= min_run:
            return side
    return None


def hf_noise_ratio(x: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """Per lead: (power above the HF cut-off / power in 0.5 Hz–cut-off, RMS of the HF part in mV)."""
    nyquist = fs / 2
    low = min(HF_LOW_HZ, 0.7 * nyquist)
    freqs, psd = welch(x, fs=fs, nperseg=min(x.shape[-1], int(2 * fs)), axis=-1)  # 0.5 Hz bins
    df = freqs[1] - freqs[0]
    ecg = psd[:, (freqs >= 0.5) & (freqs < low)].sum(axis=-1) * df
    hf = psd[:, freqs >= low].sum(axis=-1) * df
    return hf / np.maximum(ecg, 1e-12), np.sqrt(hf)


def _polarity(x: np.ndarray) -> float:
    hi, lo = np.percentile(x - np.median(x), [99, 1])
    return float((hi + lo) / max(hi - lo, 1e-9))


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)))


def assess(signal: np.ndarray, fs: float) -> QualityReport:
    """Check a (12, n) mV signal in LEADS order sampled at fs Hz; see the module constants for the thresholds."""
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != len(LEADS):
        raise ValueError(f"Expected a (12, n) signal, got shape {x.shape}.")
    n = x.shape[1]
    flat = [lead for lead, row in zip(LEADS, x) if _is_flat(row)]
    clipped: dict[str, str] = {}
    for lead, row in zip(LEADS, x):
        if lead not in flat and (side := _clipped_side(row, fs)) is not None:
            clipped[lead] = side
    readable = np.array([lead not in flat and lead not in clipped for lead in LEADS])

    # Wander and the detrended signal for the polarity and Einthoven checks.
    sos = butter_sos(2, WANDER_CUTOFF_HZ, btype="low", fs=fs)
    centred = x - np.median(x, axis=1, keepdims=True)
    baseline = sosfiltfilt(sos, centred, axis=-1)  # (12, n) mV, < 0.7 Hz
    detrended = centred - baseline
    edge = min(int(EDGE_S * fs), n // 4)
    wander = np.ptp(baseline[:, edge:n - edge], axis=1)

    noisy: dict[str, bool] = {}  # lead -> severe
    ratio = None
    if fs >= HF_MIN_FS:
        ratio, hf_rms = hf_noise_ratio(x, fs)
        for i, lead in enumerate(LEADS):
            if lead not in flat and ratio[i] > HF_WARN_RATIO and hf_rms[i] > HF_MIN_RMS_MV:
                noisy[lead] = bool(ratio[i] > HF_SEVERE_RATIO)

    refuse_bad = len(flat) + len(clipped) >= REFUSE_BAD_LEADS
    refuse_noise = sum(noisy.values()) >= REFUSE_NOISY_LEADS
    bad_severity = "refuse" if refuse_bad else "warn"
    issues: list[QualityIssue] = []
    for i, lead in enumerate(LEADS):
        if lead in flat:  # nothing else can be judged on a flat lead
            issues.append(QualityIssue("flat_line", bad_severity, lead, f"Lead {lead} is flat (lead off?)."))
            continue
        if lead in clipped:
            message = f"Lead {lead} is clipped at its {clipped[lead]} (amplifier saturation)."
            issues.append(QualityIssue("clipping", bad_severity, lead, message))
        if lead in noisy:
            severe = noisy[lead]
            amount = "heavy" if severe else "marked"
            message = f"Lead {lead} has {amount} high-frequency noise (muscle tremor or mains interference)."
            severity = "refuse" if refuse_noise and severe else "warn"
            issues.append(QualityIssue("high_frequency_noise", severity, lead, message))
        if wander[i] > WANDER_PTP_MV:
            message = f"Lead {lead} has baseline wander of {wander[i]:.1f} mV (breathing or movement?)."
            issues.append(QualityIssue("baseline_wander", "warn", lead, message))

    smooth = sosfiltfilt(butter_sos(4, min(LIMB_LOWPASS_HZ, 0.8 * fs / 2), fs=fs), detrended, axis=-1)
    limb = {lead: smooth[i] for i, lead in enumerate(LEADS) if readable[i]}
    if "I" in limb and "aVR" in limb and _polarity(limb["I"]) < -REVERSAL_POLARITY and (
        _polarity(limb["aVR"]) > REVERSAL_POLARITY
    ):
        issues.append(QualityIssue(
            "limb_lead_reversal", "warn", None,
            "Lead I is inverted and aVR upright: the left and right arm electrodes may be swapped "
            "(or extreme right axis / dextrocardia)."))
    if (broken := _broken_limb_identity(limb)) is not None:
        law, scales = broken
        if scales is None:
            issues.append(QualityIssue(
                "limb_lead_reversal", "warn", None,
                f"The limb leads are inconsistent ({law}): check limb electrode placement and lead labels."))
        else:
            factors = ", ".join(f"{name} ×{k:.2f}" for name, k in scales.items())
            issues.append(QualityIssue(
                "limb_lead_scaling", "warn", None,
                f"The limb leads are scaled inconsistently ({law} as exported; it holds with {factors}): the file's "
                f"per-lead calibration looks wrong, so limb-lead amplitudes and the axis may be off. Check the "
                f"export's gain settings."))

    return QualityReport(usable=not any(i.severity == "refuse" for i in issues), issues=tuple(issues), hf_ratio=ratio)


def _broken_limb_identity(limb: dict[str, np.ndarray]) -> tuple[str, dict[str, float] | None] | None:
    """The first of Einthoven's (I + III = II) or Goldberger's (aVR + aVL + aVF = 0) identities that clearly fails,
    with the factors that make it hold when only the leads' scaling is wrong (see LIMB_SCALE_MAX), else None.

    ``limb`` holds the detrended readable leads; an identity involving a flat or clipped lead is not checked.
    """
    identities = (
        (("I", "III", "II"), (1, 1, -1), "I + III does not equal II"),
        (("aVR", "aVL", "aVF"), (1, 1, 1), "aVR + aVL + aVF does not sum to zero"),
    )
    for names, signs, law in identities:
        if not all(name in limb for name in names):
            continue
        residual = sum(sign * limb[name] for sign, name in zip(signs, names))
        scale = max(_rms(limb[name]) for name in names)
        if _rms(residual) > max(EINTHOVEN_MAX_REL * scale, EINTHOVEN_MIN_RMS_MV):
            return law, _rescaled(limb, names, signs)
    return None


def _rescaled(limb: dict[str, np.ndarray], names: tuple[str, ...], signs: tuple[int, ...]) -> dict[str, float] | None:
    """Factors k for the first leads so that sum(sign * k * lead) + sign_last * last = 0 holds, when it then holds
    (within LIMB_SCALED_MAX_REL) with each k positive and within LIMB_SCALE_MAX of 1; else None."""
    last = limb[names[-1]]
    a = np.stack([-signs[-1] * signs[i] * limb[name] for i, name in enumerate(names[:-1])], axis=1)
    k, *_ = np.linalg.lstsq(a, last, rcond=None)
    if not all(1 / LIMB_SCALE_MAX <= v <= LIMB_SCALE_MAX for v in k):
        return None
    if _rms(a @ k - last) > LIMB_SCALED_MAX_REL * _rms(last):
        return None
    return {name: float(v) for name, v in zip(names[:-1], k)}
