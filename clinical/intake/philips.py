"""Philips Sierra ECG XML 1.03 and 1.04 (<restingecgdata>), as PageWriter carts, HeartStart monitors and
IntelliSpace ECG export them.

<parsedwaveforms> holds the leads, base64 and usually XLI-compressed (decoded by sierraecg, the format's reference
library); III, aVR, aVL and aVF are stored as the residuals of their prediction from I and II and are
reconstructed here. The stored time (durationperchannel) is the ECG followed by one second with a 1 mV
calibration pulse, which is cut off.
"""
from __future__ import annotations

from base64 import b64decode
from binascii import Error as Base64Error
from xml.etree.ElementTree import Element

import numpy as np
from sierraecg.xli import xli_decode

from clinical.intake.errors import IntakeError, join, shown
from clinical.intake.leads import check_leads, complete_leads
from clinical.intake.record import Reading
from clinical.intake.xml import attr, child, children, number, text
from mlcore.preprocess import LEADS, canonical_lead

VERSIONS = ("1.03", "1.04")  # and their point releases (1.04.01, 1.04.02)
# A stored duration above the 10 s of the ECG ends with this much calibration signal (a 0.2 s, 1 mV pulse).
ECG_MS = 10_000
CALIBRATION_MS = 1_000
# 1.03 files name no leads; their acquisition types store the standard 12 in order.
STANDARD_ACQUISITIONS = ("STD-12", "10-WIRE")
# Global measurements -> the names GE MUSE uses, each with the element names of 1.04 and of 1.03, in that order.
MEASUREMENTS = {
    "VentricularRate": ("heartrate", "meanventrate"),
    "PRInterval": ("print", "meanprint"),
    "QRSDuration": ("qrsdur", "meanqrsdur"),
    "QTInterval": ("qtint", "meanqtint"),
    "QTCorrected": ("qtcb", "meanqtc"),
    "PAxis": ("pfrontaxis",),
    "RAxis": ("qrsfrontaxis",),
    "TAxis": ("tfrontaxis",),
}
REMEDY = ("Export the ECG again from the PageWriter cart or IntelliSpace ECG as Philips XML 1.03 or 1.04 "
          "with its rhythm waveforms.")
# The leads the format stores as residuals of their prediction from I and II.
RESIDUAL_LEADS = ("III", "aVR", "aVL", "aVF")


def read_root(root: Element) -> Reading:
    version = text(root, "documentinfo", "documentversion")
    if not version.startswith(VERSIONS):
        raise IntakeError(f"This Philips XML file is version '{shown(version or '(none)', 12)}'; versions 1.03 and "
                          f"1.04 are read. {REMEDY}", "file")
    signal = child(root, "dataacquisition", "signalcharacteristics")
    waveforms = child(root, "waveforms", "parsedwaveforms")
    if waveforms is None or not (waveforms.text or "").strip():
        raise IntakeError("This Philips XML file has no rhythm waveform (<parsedwaveforms>). " + REMEDY, "file")
    fs = number(text(signal, "samplingrate") or attr(waveforms, "samplespersecond"))
    # The resolution in uV per unit: 1.04 states it on <parsedwaveforms> and as <resolution>, 1.03 as
    # <signalresolution>.
    uv = number(attr(waveforms, "resolution") or text(signal, "resolution") or text(signal, "signalresolution"))
    duration_ms = number(attr(waveforms, "durationperchannel"))
    if fs is None or fs <= 0 or uv is None or uv <= 0 or duration_ms is None or duration_ms <= 0:
        raise IntakeError(
            "This Philips XML file does not state its sampling rate, resolution and duration per channel "
            f"(found {shown(str(fs), 12)} Hz, {shown(str(uv), 12)} uV, {shown(str(duration_ms), 12)} ms). {REMEDY}",
            "file",
        )
    labels = _labels(signal, waveforms)
    digits = _decode(waveforms, len(labels), int(round(duration_ms * fs / 1000)))
    if len(digits) < len(labels):
        raise IntakeError(f"This Philips XML file names {len(labels)} leads but holds {len(digits)}; it looks cut "
                          f"short. {REMEDY}", "file")
    stored: dict[str, np.ndarray] = {}
    for label, lead in zip(labels, digits):
        name = canonical_lead(label)
        if name is not None and name not in stored:
            stored[name] = lead.astype(np.int64)
    what = "the rhythm waveforms of this Philips XML file"
    check_leads(labels, what=what, remedy=REMEDY)
    residual = [lead for lead in RESIDUAL_LEADS if lead in stored]
    if residual and len(residual) + ("I" in stored) + ("II" in stored) < len(RESIDUAL_LEADS) + 2:
        # Stored as differences from what I and II predict, they cannot be read without I, II and each other.
        raise IntakeError(f"This Philips XML file stores {join(residual)} but not all of I, II, III, aVR, aVL and "
                          f"aVF, from which the format reconstructs them. {REMEDY}", "file")
    if residual:
        _reconstruct_limb_leads(stored)
    n = min(len(lead) for lead in stored.values())
    notes = []
    if duration_ms > ECG_MS:
        # The last second holds the calibration pulse, not ECG.
        n = min(n, int(round((duration_ms - CALIBRATION_MS) * fs / 1000)))
        notes.append("The 1 s calibration segment (1 mV pulse) at the end of the Philips waveform was removed.")
    columns = {name: lead[:n] * (uv / 1000.0) for name, lead in stored.items()}
    notes = complete_leads(columns, what=what, remedy=REMEDY, labels=labels) + notes
    return Reading(columns=columns, fs=float(fs), source_format="philips-xml", device=_device(root), notes=notes)


def _labels(signal: Element | None, waveforms: Element) -> list[str]:
    labels = attr(waveforms, "leadlabels").split()
    if labels:
        count = number(attr(waveforms, "numberofleads"))
        return labels[:count] if isinstance(count, int) and count > 0 else labels
    acquisition = text(signal, "acquisitiontype")
    channels = number(text(signal, "numberchannelsallocated"))
    if acquisition in STANDARD_ACQUISITIONS and isinstance(channels, int) and channels >= len(LEADS):
        return list(LEADS) + [f"channel {k}" for k in range(len(LEADS) + 1, channels + 1)]
    raise IntakeError(
        f"This Philips XML file names no leads and its acquisition type '{shown(acquisition or '(none)', 20)}' "
        f"with {shown(str(channels), 8)} channels is not the standard 12-lead one. {REMEDY}",
        "file",
    )


def _decode(waveforms: Element, n_leads: int, n_samples: int) -> list[np.ndarray]:
    try:
        data = b64decode(waveforms.text or "")
    except (Base64Error, ValueError):
        raise IntakeError(f"The waveforms of this Philips XML file are not valid base64. {REMEDY}", "file") from None
    method = attr(waveforms, "compressmethod") or attr(waveforms, "compression") or "Uncompressed"
    if method == "XLI":
        try:
            leads = xli_decode(data, [""] * n_leads)
        except (IndexError, ValueError, KeyError, OverflowError):
            raise IntakeError(f"The XLI-compressed waveforms of this Philips XML file cannot be decoded; the file "
                              f"looks damaged. {REMEDY}", "file") from None
        return [lead[:n_samples] for lead in leads]
    if method == "Uncompressed":
        samples = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")
        return [samples[k * n_samples:(k + 1) * n_samples] for k in range(n_leads)
                if len(samples) >= (k + 1) * n_samples]
    raise IntakeError(f"The waveforms of this Philips XML file are compressed with '{shown(method, 20)}'; XLI and "
                      f"uncompressed waveforms are read. {REMEDY}", "file")


def _reconstruct_limb_leads(leads: dict[str, np.ndarray]) -> None:
    """III, aVR, aVL and aVF are stored as their differences from what I and II predict (as the format's
    reference decoders reconstruct them, with floor division; aVL and aVF use the reconstructed III)."""
    n = min(len(lead) for lead in leads.values())
    i, ii = leads["I"][:n], leads["II"][:n]
    iii = ii - i - leads["III"][:n]
    leads["III"] = iii
    leads["aVR"] = -leads["aVR"][:n] - (i + ii) // 2
    leads["aVL"] = (i - iii) // 2 - leads["aVL"][:n]
    leads["aVF"] = (ii + iii) // 2 - leads["aVF"][:n]


def _device(root: Element) -> dict:
    acquisition = child(root, "dataacquisition")
    machine = child(acquisition, "machine")
    device = " ".join(part for part in (text(machine), f"(machine {attr(machine, 'machineid')})"
                                        if attr(machine, "machineid") else "") if part)
    date, time = attr(acquisition, "date"), attr(acquisition, "time")
    interpretation = child(root, "interpretations", "interpretation")
    statements = [text(s, "leftstatement") for s in children(interpretation, "statement") if text(s, "leftstatement")]
    sources = [child(interpretation, "globalmeasurements"), child(interpretation, "interpretationmeasurements"),
               child(root, "measurements", "globalmeasurements")]
    measurements = {}
    for key, names in MEASUREMENTS.items():
        for source in sources:
            value = next((number(text(source, name)) for name in names if number(text(source, name)) is not None),
                         None)
            if value is not None:
                measurements[key] = value
                break
    return {"device": device or None, "acquired": f"{date}T{time}" if date and time else (date or None),
            "statements": statements, "measurements": measurements}
