"""GE MUSE XML (<RestingECG>), as MUSE and GE carts (MAC 5500, MAC 2000, ...) export resting ECGs.

The rhythm <Waveform> (<WaveformType>Rhythm</WaveformType>) holds one <LeadData> per stored lead: <LeadID>,
<WaveFormData> (base64 of little-endian int16 samples), <LeadAmplitudeUnitsPerBit> and <LeadAmplitudeUnits>,
<LeadSampleCountTotal>; the sampling rate is <SampleBase> x 10^<SampleExponent>. MUSE stores only the 8
independent leads (I, II, V1-V6); III, aVR, aVL and aVF are derived from I and II.
"""
from __future__ import annotations

import binascii
import re
from base64 import b64decode
from xml.etree.ElementTree import Element

import numpy as np

from clinical.intake.errors import IntakeError, shown
from clinical.intake.leads import complete_leads
from clinical.intake.record import Reading
from clinical.intake.xml import child, children, descendants, number, text
from mlcore.preprocess import canonical_lead

# <LeadAmplitudeUnits> -> millivolts per unit.
UNITS_MV = {"MICROVOLTS": 1e-3, "MILLIVOLTS": 1.0}
# The global measurements MUSE states in <RestingECGMeasurements> (ms, beats/min, degrees).
MEASUREMENTS = ("VentricularRate", "PRInterval", "QRSDuration", "QTInterval", "QTCorrected", "PAxis", "RAxis",
                "TAxis")
REMEDY = "Export the ECG from MUSE again as MUSE XML with its full rhythm waveform."


def read_root(root: Element) -> Reading:
    rhythm = next((w for w in children(root, "Waveform") if text(w, "WaveformType").lower() == "rhythm"), None)
    if rhythm is None:
        raise IntakeError(
            "This GE MUSE file has no rhythm waveform (a <Waveform> with <WaveformType>Rhythm</WaveformType>); "
            "median beats alone cannot be interpreted. " + REMEDY,
            "file",
        )
    fs = _sampling_rate(rhythm)
    columns: dict[str, np.ndarray] = {}
    ignored: list[str] = []
    labels: list[str] = []
    for lead in children(rhythm, "LeadData"):
        raw_id = text(lead, "LeadID")
        labels.append(raw_id)
        name = canonical_lead(raw_id)
        if name is None:
            ignored.append(shown(raw_id or "(no LeadID)", 12))
            continue
        if name in columns:
            raise IntakeError(f"Lead {name} appears twice in the rhythm waveform of this GE MUSE file. {REMEDY}",
                              "file")
        columns[name] = _samples(lead, name)
    notes = complete_leads(columns, what="the rhythm waveform of this GE MUSE file", remedy=REMEDY, labels=labels)
    if ignored:
        notes.append(f"Leads not part of the standard 12 ignored: {', '.join(ignored)}.")
    return Reading(columns=columns, fs=fs, source_format="ge-muse-xml", device=_device(root), notes=notes)


def _sampling_rate(rhythm: Element) -> float:
    base = number(text(rhythm, "SampleBase"))
    exponent = number(text(rhythm, "SampleExponent") or "0")
    if base is None or base <= 0 or exponent is None or not isinstance(exponent, int):
        raise IntakeError(
            f"The rhythm waveform of this GE MUSE file states no usable sampling rate (<SampleBase> "
            f"'{shown(text(rhythm, 'SampleBase'), 20)}'). {REMEDY}",
            "file",
        )
    return float(base) * 10.0 ** exponent


def _samples(lead: Element, name: str) -> np.ndarray:
    units = text(lead, "LeadAmplitudeUnits").upper()
    if units not in UNITS_MV:
        raise IntakeError(
            f"Lead {name} of this GE MUSE file is in '{shown(units or '(no LeadAmplitudeUnits)', 20)}'; only "
            f"MICROVOLTS and MILLIVOLTS are read. {REMEDY}",
            "file",
        )
    per_bit = number(text(lead, "LeadAmplitudeUnitsPerBit"))
    if per_bit is None or per_bit <= 0:
        raise IntakeError(
            f"Lead {name} of this GE MUSE file states no usable <LeadAmplitudeUnitsPerBit> "
            f"('{shown(text(lead, 'LeadAmplitudeUnitsPerBit'), 20)}'). {REMEDY}",
            "file",
        )
    try:
        # The base64 text is wrapped over many lines; b64decode drops the line breaks (validate=False).
        raw = b64decode(text(lead, "WaveFormData"))
    except (binascii.Error, ValueError):
        raise IntakeError(f"The waveform of lead {name} in this GE MUSE file is not valid base64. {REMEDY}",
                          "file") from None
    if len(raw) % 2:
        raw = raw[:-1]
    digits = np.frombuffer(raw, dtype="<i2")
    count = number(text(lead, "LeadSampleCountTotal"))
    if isinstance(count, int) and count > 0:
        if len(digits) < count:
            raise IntakeError(
                f"The waveform of lead {name} in this GE MUSE file holds {len(digits):,} samples but the file "
                f"states {count:,} (<LeadSampleCountTotal>); the file looks cut short. {REMEDY}",
                "file",
            )
        digits = digits[:count]
    return digits.astype(np.float64) * (per_bit * UNITS_MV[units])


def _device(root: Element) -> dict:
    demographics = child(root, "TestDemographics")
    device = text(demographics, "AcquisitionDevice") or next(
        (e.text.strip() for e in descendants(root, "MachineID") if e.text and e.text.strip()), "")
    diagnosis = child(root, "Diagnosis")
    if diagnosis is None or not children(diagnosis, "DiagnosisStatement"):
        diagnosis = child(root, "OriginalDiagnosis")
    measured = {}
    for key in MEASUREMENTS:
        value = number(text(root, "RestingECGMeasurements", key))
        if value is not None:
            measured[key] = value
    return {
        "device": device or None,
        "acquired": _acquired(text(demographics, "AcquisitionDate"), text(demographics, "AcquisitionTime")) or None,
        "statements": _statements(diagnosis),
        "measurements": measured,
    }


def _acquired(date: str, time: str) -> str:
    # MUSE writes the date as MM-DD-YYYY and the time as HH:MM:SS.
    m = re.fullmatch(r"(\d{2})-(\d{2})-(\d{4})", date)
    if m:
        date = f"{m[3]}-{m[1]}-{m[2]}"
    return f"{date}T{time}" if date and time else date


def _statements(diagnosis: Element | None) -> list[str]:
    """The diagnosis lines: MUSE splits a line into <DiagnosisStatement> fragments; ENDSLINE ends the line."""
    lines: list[str] = []
    current: list[str] = []
    for statement in children(diagnosis, "DiagnosisStatement"):
        fragment = text(statement, "StmtText")
        if fragment:
            current.append(fragment)
        if any(text(flag) == "ENDSLINE" for flag in children(statement, "StmtFlag")) and current:
            lines.append(" ".join(current))
            current = []
    if current:
        lines.append(" ".join(current))
    return lines


