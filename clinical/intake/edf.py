"""EDF and EDF+ (.edf): European Data Format recordings with 12 ECG signals (https://www.edfplus.info/specs/).

Signals are read with edfio, which converts each signal's digital samples to its physical dimension through the
header's digital and physical ranges. Leads are matched by label ("I", "V1", EDF+ style "ECG V1"); other signals
(EEG, respiration, ...) are ignored and named in the notes, and EDF+ annotation signals are not data.
"""
from __future__ import annotations

import warnings

import numpy as np
from edfio import Edf, read_edf

from clinical.intake.errors import IntakeError, shown
from clinical.intake.leads import complete_leads
from clinical.intake.record import Reading, mv_per_unit
from clinical.intake.registry import register
from mlcore.preprocess import canonical_lead

SOURCE_FORMAT = "edf"
# EDF+ physical dimensions use "u" for micro (EDF+ spec, section 2.1.3.4); the micro sign also occurs.
# EDF+ labels are "<signal type> <specification>"; ECG is the type for ECG leads ("EKG" in some exports).
ECG_TYPES = ("ecg ", "ekg ")
WHAT_TO_UPLOAD = "Upload an EDF or EDF+ file with the 12 standard ECG leads."


def _refuse(message: str) -> IntakeError:
    return IntakeError(message, "file")


def _lead_of(label: str) -> str | None:
    key = label.strip()
    if key.lower().startswith(ECG_TYPES):
        key = key[4:]
    return canonical_lead(key)


def _stated_records(content: bytes) -> int | None:
    try:
        return int(content[236:244].decode("ascii"))  # the header's "number of data records" field
    except ValueError:
        return None


def _open(content: bytes) -> Edf:
    try:
        with warnings.catch_warnings():
            # edfio warns and reads what is there when the file ends early; that is refused below instead.
            warnings.simplefilter("ignore", UserWarning)
            edf = read_edf(content, lazy_load_data=False)
        stated = _stated_records(content)
        if stated is not None and stated >= 0 and stated != edf.num_data_records:
            raise _refuse(f"The EDF file is cut short: its header announces {stated} data records but it holds "
                          f"{edf.num_data_records}. Upload the complete file.")
        if not edf.is_continuous:
            raise _refuse("The EDF+ file is discontinuous (EDF+D): its data records leave gaps. Upload a continuous "
                          "recording (EDF or EDF+C).")
        return edf
    except IntakeError:
        raise
    except Exception as exc:  # edfio raises many types for a cut or malformed file
        raise _refuse(f"The .edf file is not a readable EDF file (damaged, cut short or another format). "
                      f"{WHAT_TO_UPLOAD}") from exc


@register("edf", "an EDF or EDF+ recording")
def read(content: bytes, name: str) -> Reading:
    """The 12 leads of an EDF/EDF+ file in mV (the shared checks judge whether they carry an ECG)."""
    edf = _open(content)
    columns: dict[str, np.ndarray] = {}
    rates: dict[str, float] = {}
    ignored: list[str] = []
    labels: list[str] = []
    for signal in edf.signals:  # annotation signals are not among them
        label = signal.label.strip()
        labels.append(label)
        lead = _lead_of(label)
        if lead is None:
            ignored.append(shown(label) if label else "(unlabelled)")
            continue
        if lead in columns:
            raise _refuse(f"Lead {lead} appears twice in the EDF file; each lead must appear once. {WHAT_TO_UPLOAD}")
        unit = signal.physical_dimension.strip()
        if mv_per_unit(unit) is None:
            stated = f'"{shown(unit, 8)}"' if unit else "no unit"
            raise _refuse(f"Lead {lead} is in {stated}; ECG leads must be in uV or mV (the EDF physical dimension). "
                          f"{WHAT_TO_UPLOAD}")
        try:
            ranges = (signal.physical_min, signal.physical_max, signal.digital_min, signal.digital_max)
        except ValueError:  # edfio decodes these header fields only when asked
            raise _refuse(f"The EDF header of lead {lead} is damaged: its physical or digital range is not a number. "
                          f"{WHAT_TO_UPLOAD}") from None
        if not np.isfinite(ranges).all() or ranges[0] == ranges[1] or ranges[2] == ranges[3]:
            # edfio returns an empty range's digital values uncalibrated, which would be read as microvolts.
            raise _refuse(f"Lead {lead} has no usable calibration: its physical or digital range in the EDF header is "
                          f"empty or not a number. {WHAT_TO_UPLOAD}")
        columns[lead] = np.asarray(signal.data, dtype=np.float64) * mv_per_unit(unit)
        rates[lead] = float(signal.sampling_frequency)
    if len(set(rates.values())) > 1:
        by_rate: dict[float, list[str]] = {}
        for lead, rate in rates.items():
            by_rate.setdefault(rate, []).append(lead)
        rates_shown = "; ".join(f"{', '.join(leads)} at {rate:g} Hz" for rate, leads in sorted(by_rate.items()))
        raise _refuse(f"The ECG leads of the EDF file have different sampling rates ({rates_shown}); all 12 leads must "
                      "share one sampling rate. Export them at one rate.")
    notes = complete_leads(columns, what="the EDF file", labels=labels,
                           remedy=f'Leads are matched by label ("V1" or "ECG V1"). {WHAT_TO_UPLOAD}')
    if ignored:
        notes.append(f"Signals that are not ECG leads were ignored: {', '.join(ignored)}")
    fs = next(iter(rates.values())) if rates else 0.0
    return Reading(columns=columns, fs=fs, source_format=SOURCE_FORMAT, device=_device(edf), notes=notes)


def _device(edf: Edf) -> dict:
    """The equipment and start time from the header; "X" is EDF+'s "not known"."""
    try:
        equipment = edf.recording.equipment_code
    except Exception:  # a plain EDF recording field is free text, not EDF+ subfields
        equipment = ""
    try:
        acquired = edf.startdatetime.isoformat()
    except Exception:  # an unparsable start date is not a reason to refuse the waveform
        acquired = ""
    return {"device": "" if equipment == "X" else equipment, "acquired": acquired}
