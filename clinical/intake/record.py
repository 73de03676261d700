"""The canonical record every reader returns, and the checks every upload shares (size, rate, duration,
values, amplitude) before the 12 leads are stacked."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from clinical.intake.errors import IntakeError, json_shown, lead_s
from clinical.intake.limits import (
    MAX_DEVIATION_MV,
    MAX_FS,
    MAX_SECONDS,
    MAX_TYPICAL_RANGE_MV,
    MAX_UPLOAD_BYTES,
    MIN_FS,
    MIN_SECONDS,
)
from mlcore.preprocess import LEADS
from mlcore.quality import FLAT_PTP_MV, FLAT_STD_MV

# Amplitude units to millivolts per unit, as exports write them: WFDB "mV"/"uV", EDF+ "uV" (section 2.1.3.4),
# DICOM UCUM "uV"/"mV", the micro sign or the Greek mu, and the words text exports use.
UNIT_TO_MV: dict[str, float] = {"mv": 1.0, "millivolt": 1.0, "millivolts": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3,
                                "microvolt": 1e-3, "microvolts": 1e-3, "nv": 1e-6, "v": 1e3, "volt": 1e3,
                                "volts": 1e3}


def mv_per_unit(unit: str) -> float | None:
    """Millivolts per one of ``unit`` ('mV', 'uV', 'µV', 'microvolts', ...), or None for anything else."""
    return UNIT_TO_MV.get(unit.strip().lower().replace("\u00b5", "µ").rstrip("."))

@dataclass(frozen=True)
class ParsedEcg:
    signal: np.ndarray  # (12, n) float32, millivolts, rows in mlcore.preprocess.LEADS order
    fs: float
    source_format: str  # "wfdb" | "csv" | "json" | a clinical.intake format
    device: dict = field(default_factory=dict)  # what the file says besides the waveform (clinical.intake)
    notes: list[str] = field(default_factory=list)  # how the 12 leads were obtained, e.g. derived limb leads

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs

    @property
    def n_samples(self) -> int:
        return int(self.signal.shape[1])


# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Reading:
    columns: dict[str, np.ndarray]  # canonical lead name -> samples in mV (float64)
    fs: float
    source_format: str  # e.g. "ge-muse-xml"
    # What the file says besides the waveform: device, acquisition time, the device's own statements and
    # measurements (kept for the result page and the API).
    device: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. "III, aVR, aVL and aVF derived from I and II"


def check_size(size: int, label: str, field: str) -> None:
    """Refuse an empty or over-large file before its content is read (the form and the API call this with the
    size of the uploaded file; the parsers with the length of the content)."""
    if size == 0:
        raise IntakeError(f"The {label} file is empty (0 bytes). Export the ECG again and upload the new file.", field)
    if size > MAX_UPLOAD_BYTES:
        raise IntakeError(
            f"The {label} file is {size / 2**20:.1f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB per file. "
            f"{MAX_SECONDS / 60:g} minutes of 12 leads at 1000 Hz is about 7 MB as a WFDB record and 25 MB as CSV "
            "or JSON. Export only the ECG to be interpreted (at most 5 minutes), or as a WFDB record.",
            field,
        )


def check_content_size(content: bytes, label: str, field: str) -> None:
    check_size(len(content), label, field)



# Where a sampling rate comes from (the field blamed) -> what to do about a wrong one.
_FS_REMEDY = {
    "fs": "Enter the rate the ECG was recorded at, e.g. 500.",
    "json": 'Set "fs" to the rate the ECG was recorded at, e.g. 500.',
    "csv": "Correct the rate in the file, e.g. 'Sampling Rate (Hz): 500'.",
    "file": "Export the ECG again from the ECG system, as it stores it.",
}


def check_fs(fs: object, field: str, what: str = "The sampling rate") -> float:
    remedy = _FS_REMEDY.get(field, _FS_REMEDY["fs"])
    if isinstance(fs, bool) or not isinstance(fs, int | float):
        raise IntakeError(f"{what} must be a number of Hz; got {json_shown(fs)}. {remedy}", field)
    try:
        value = float(fs)
    except OverflowError:  # an integer with hundreds of digits
        value = math.inf
    if not math.isfinite(value) or not MIN_FS <= value <= MAX_FS:
        raise IntakeError(f"{what} must be between {MIN_FS:g} and {MAX_FS:g} Hz; got {value:g} Hz. {remedy}", field)
    return value



def check_duration(n: int, fs: float, field: str) -> None:
    duration = n / fs
    if duration < MIN_SECONDS:
        raise IntakeError(
            f"The recording is {duration:.1f} s long ({n} samples at {fs:g} Hz); at least {MIN_SECONDS:g} s is needed. "
            "Upload the full 10 s resting ECG (check the sampling rate, if you entered one).",
            field,
        )
    if duration > MAX_SECONDS:
        raise IntakeError(
            f"The recording is {duration:.1f} s long; at most {MAX_SECONDS:g} s is accepted. "
            "Crop it to the part to be interpreted (up to 5 minutes) and upload that.",
            field,
        )


def assemble(columns: dict[str, np.ndarray], fs: float, source_format: str, field: str, *,
              device: dict | None = None, notes: list[str] | None = None) -> ParsedEcg:
    """Check rate, lengths, values and duration of per-lead float64 arrays (keyed by canonical name) and stack
    them."""
    # WFDB, CSV and JSON rates were checked where they were read; an export's is checked here (an EDF record
    # duration of 1e-9 s or a DICOM rate of NaN would otherwise pass the duration check).
    fs = check_fs(fs, field, "The sampling rate the file states")
    lengths = {lead: len(columns[lead]) for lead in LEADS}
    if len(set(lengths.values())) > 1:
        longest = max(LEADS, key=lambda lead: lengths[lead])
        shortest = min(LEADS, key=lambda lead: lengths[lead])
        raise IntakeError(
            f"Leads have different lengths: {longest} has {lengths[longest]} samples but {shortest} has "
            f"{lengths[shortest]}; all leads must cover the same time span. Export the 12 leads over the same "
            "seconds.",
            field,
        )
    x = np.stack([np.asarray(columns[lead], dtype=np.float64) for lead in LEADS])  # (12, n) mV
    for bad, word in ((np.isnan(x), "missing (NaN)"), (np.isinf(x), "infinite")):
        rows = bad.any(axis=1)
        if rows.any():
            names = [lead for lead, hit in zip(LEADS, rows) if hit]
            first = int(np.argmax(bad[int(np.argmax(rows))]))
            verb = "contains" if len(names) == 1 else "contain"
            raise IntakeError(
                f"{lead_s(names)} {verb} {word} values (first at {first / fs:.3f} s); every sample must be a number. "
                "Export the ECG again without gaps.",
                field,
            )
    check_duration(x.shape[1], fs, field)
    too_large = (np.abs(x) > np.finfo(np.float32).max).any(axis=1)  # finite, but not as float32: not millivolts
    if too_large.any():
        names = [lead for lead, hit in zip(LEADS, too_large) if hit]
        verb = "has" if len(names) == 1 else "have"
        raise IntakeError(f"{lead_s(names)} {verb} values far too large to be millivolts; an ECG spans a few mV. "
                          f"{_UNITS_REMEDY.get(source_format, _EXPORT_REMEDY)}", field)
    check_amplitude(x, fs, field, source_format)
    check_chest_leads(x, field)
    return ParsedEcg(signal=np.ascontiguousarray(x, dtype=np.float32), fs=float(fs), source_format=source_format,
                     device=device or {}, notes=notes or [])


# What to do about values that are not millivolts: where the uploader writes the file, say what its units are; a
# device export states its own gain and units, so it is exported again.
_UNITS_REMEDY = {
    "wfdb": "Upload millivolts, or say they are microvolts (uV units in the WFDB header).",
    "csv": "Upload millivolts, or say they are microvolts (a 'Units: uV' line above the samples).",
    "json": 'Upload millivolts, or say they are microvolts ("units": "uV").',
}
_EXPORT_REMEDY = ("The gain or units the file states are wrong; export the ECG again from the ECG system, as it "
                  "stores it.")


def check_amplitude(x: np.ndarray, fs: float, field: str, source_format: str = "") -> None:
    """Refuse values no ECG in millivolts has: most often microvolts labelled as millivolts."""
    with np.errstate(all="ignore"):
        low, high = np.percentile(x, [1, 99], axis=1)
        typical = high - low
        deviation = np.abs(x - np.median(x, axis=1, keepdims=True))
    wide = typical > MAX_TYPICAL_RANGE_MV
    if wide.any():
        names = [lead for lead, hit in zip(LEADS, wide) if hit]
        verb = "spans" if len(names) == 1 else "span"
        raise IntakeError(
            f"{lead_s(names)} {verb} about {float(typical[wide].max()):,.0f} mV, but an ECG spans a few mV. "
            + ("The values look like microvolts. " + _UNITS_REMEDY[source_format] if source_format in _UNITS_REMEDY
               else _EXPORT_REMEDY),
            field,
        )
    peak = deviation.max(axis=1)
    if (peak > MAX_DEVIATION_MV).any():
        i = int(np.argmax(peak))
        at = int(np.argmax(deviation[i]))
        raise IntakeError(
            f"Lead {LEADS[i]} has a value {float(peak[i]):,.0f} mV away from its baseline (at {at / fs:.3f} s); "
            f"values beyond ±{MAX_DEVIATION_MV:g} mV are not an ECG in millivolts. Check the export and its units.",
            field,
        )


def _flat(x: np.ndarray) -> bool:
    # The quality gate's own definition of a flat lead (mlcore.quality).
    return float(np.ptp(x)) < FLAT_PTP_MV or float(np.std(x)) < FLAT_STD_MV


def check_chest_leads(x: np.ndarray, field: str) -> None:
    """Refuse V1–V6 all flat beside limb leads that carry a signal: carts that record only the limb leads, or
    whose chest cable is unplugged, write the chest leads as constants. The quality gate would call each lead
    "flat (lead off?)", which hides the one cause."""
    flat = [_flat(row) for row in x]  # x: (12, n) mV in LEADS order
    chest = [flat[LEADS.index(lead)] for lead in LEADS[6:]]
    limb_signal = not all(flat[LEADS.index(lead)] for lead in LEADS[:6])
    if limb_signal and all(chest):
        raise IntakeError(
            "The chest leads V1–V6 are flat: the chest electrodes were not connected, or the export holds only the "
            "limb leads. Record the ECG again with the six chest electrodes attached (or export all 12 leads from "
            "the cart) and upload that file.",
            field,
        )


# ---------------------------------------------------------------------------------------------------------------
# WFDB
