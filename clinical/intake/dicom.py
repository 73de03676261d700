"""DICOM ECG waveforms (.dcm): the 12-Lead ECG and General ECG Waveform Storage IODs (PS3.3 A.34).

The rhythm multiplex group is read with pydicom's ``Dataset.waveform_array``, which applies each channel's
Channel Sensitivity × Channel Sensitivity Correction Factor + Channel Baseline (PS3.3 C.10.9.1.4); the result is
in the channel's Channel Sensitivity Units (UCUM), converted here to mV. Leads are named by the channel's source
code (SCP-ECG or MDC lead codes, PS3.16 CID 3001), else by its code meaning ("Lead I (Einthoven)", "Lead aVR").
"""
from __future__ import annotations

import math
import re
from io import BytesIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRBigEndian
from pydicom.waveforms import multiplex_array

from clinical.intake.device import canonical_measurement
from clinical.intake.errors import IntakeError, shown
from clinical.intake.leads import complete_leads
from clinical.intake.record import Reading, mv_per_unit
from clinical.intake.registry import register
from mlcore.preprocess import canonical_lead

SOURCE_FORMAT = "dicom-ecg"
ECG_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.9.1.1": "12-lead ECG Waveform Storage",
    "1.2.840.10008.5.1.4.1.1.9.1.2": "General ECG Waveform Storage",
}
# Below this a multiplex group is not a diagnostic ECG (PS3.3 A.34.3.4.2 asks 200-1000 Hz for 12-lead ECGs).
MIN_RHYTHM_FS = 100.0
# Channel Sensitivity Units are UCUM codes (case-sensitive: "MV" would be megavolt).
# The lead number N of SCP-ECG code "5.6.3-9-N" and MDC code "2:N" (the same numbering, PS3.16 CID 3001).
LEAD_BY_CODE_NUMBER = {1: "I", 2: "II", 3: "V1", 4: "V2", 5: "V3", 6: "V4", 7: "V5", 8: "V6",
                       61: "III", 62: "aVR", 63: "aVL", 64: "aVF"}
_LEAD_CODE = re.compile(r"^(?:5\.6\.3-9-|2:)(\d+)$")
_BEAT_LABELS = ("MEDIAN", "REPRESENTATIVE", "AVERAGE")
WHAT_TO_UPLOAD = "Export the ECG from the cart or PACS as a DICOM 12-lead ECG (or General ECG) waveform file."


def _refuse(message: str) -> IntakeError:
    return IntakeError(message, "file")


def _lead_of(channel: Dataset) -> str | None:
    """The canonical lead a channel records, from its Channel Source Sequence, or None."""
    source = channel.get("ChannelSourceSequence")
    if not source:
        return None
    code = source[0]
    match = _LEAD_CODE.match(str(code.get("CodeValue", "")).strip())
    if match and int(match.group(1)) in LEAD_BY_CODE_NUMBER:
        return LEAD_BY_CODE_NUMBER[int(match.group(1))]
    meaning = re.sub(r"\(.*?\)", "", str(code.get("CodeMeaning", ""))).strip()  # "Lead I (Einthoven)"
    meaning = re.sub(r"^lead[\s_]+", "", meaning, flags=re.IGNORECASE)
    return canonical_lead(meaning)


def _label(channel: Dataset, number: int) -> str:
    source = channel.get("ChannelSourceSequence")
    meaning = str(source[0].get("CodeMeaning", "")).strip() if source else ""
    return meaning or str(channel.get("ChannelLabel", "")).strip() or f"channel {number}"


def _duration(group: Dataset) -> float:
    return float(group.get("NumberOfWaveformSamples") or 0) / float(group.get("SamplingFrequency") or 1.0)


def _rhythm_index(ds: Dataset) -> int:
    """The multiplex group holding the rhythm: the one labelled RHYTHM, else the longest at >= 100 Hz that is
    not a median or representative beat."""
    candidates = []
    for index, group in enumerate(ds.WaveformSequence):
        label = str(group.get("MultiplexGroupLabel", "")).strip().upper()
        fs = float(group.get("SamplingFrequency") or 0)
        if fs < MIN_RHYTHM_FS or any(word in label for word in _BEAT_LABELS):
            continue
        candidates.append((label == "RHYTHM", _duration(group), -index, index))
    if not candidates:
        raise _refuse("The DICOM file has no rhythm waveform sampled at 100 Hz or more (only median beats or "
                      f"low-rate data). {WHAT_TO_UPLOAD}")
    return max(candidates)[3]


def _device(ds: Dataset) -> dict:
    """What the cart says besides the waveform: who made it, when, its statements and its measurements."""
    device = " ".join(str(ds.get(k, "")).strip() for k in ("Manufacturer", "ManufacturerModelName")).strip()
    acquired = ""
    try:
        if ds.get("AcquisitionDateTime"):
            acquired = pydicom.valuerep.DT(ds.AcquisitionDateTime).isoformat()
        elif ds.get("AcquisitionDate"):
            acquired = pydicom.valuerep.DT(str(ds.AcquisitionDate) + str(ds.get("AcquisitionTime", ""))).isoformat()
    except ValueError:  # a malformed date is not a reason to refuse the waveform; keep what the file says
        acquired = str(ds.get("AcquisitionDateTime", ""))
    statements, measurements = [], {}
    for note in ds.get("WaveformAnnotationSequence", []):
        text = str(note.get("UnformattedTextValue", "") or "").strip()
        if text:
            statements.append(text)
        concept = note.get("ConceptNameCodeSequence")
        value = note.get("NumericValue")
        if concept and value not in (None, ""):
            name = canonical_measurement(str(concept[0].get("CodeMeaning", "") or concept[0].get("CodeValue", "")))
            values = value if isinstance(value, pydicom.multival.MultiValue) else [value]
            if name and name not in measurements:  # per-lead repeats keep the first (the global one)
                measurements[name] = float(values[0])
    return {"device": device, "acquired": acquired, "statements": statements, "measurements": measurements}


@register("dcm", "a DICOM ECG waveform")
def read(content: bytes, name: str) -> Reading:
    try:
        ds = pydicom.dcmread(BytesIO(content), force=False)
    except InvalidDicomError as exc:
        raise _refuse(f"The .dcm file is not a DICOM file (no DICOM preamble and header). {WHAT_TO_UPLOAD}") from exc
    except Exception as exc:  # pydicom raises many types for a cut or damaged file
        raise _refuse(f"The DICOM file is damaged or cut short and cannot be read. {WHAT_TO_UPLOAD}") from exc
    try:
        return _read_dataset(ds)
    except IntakeError:
        raise
    except Exception as exc:  # elements are decoded lazily, so a damaged one fails only here
        raise _refuse(f"The DICOM file is damaged or cut short and its waveform cannot be read. {WHAT_TO_UPLOAD}"
                      ) from exc


def _read_dataset(ds: Dataset) -> Reading:
    sop_class = str(ds.get("SOPClassUID", ""))
    if not sop_class:
        raise _refuse(f"The DICOM file does not say what it holds (no SOP Class UID): it is damaged or cut short. "
                      f"{WHAT_TO_UPLOAD}")
    if sop_class not in ECG_SOP_CLASSES:
        # A damaged file can hold any bytes here: the name is shown short and escaped.
        raise _refuse(f"The DICOM file is {shown(UID(sop_class[:64]).name, 60)}, not an ECG waveform. "
                      f"{WHAT_TO_UPLOAD}")
    if "WaveformSequence" not in ds or not ds.WaveformSequence:
        raise _refuse(f"The DICOM ECG file holds no waveform. {WHAT_TO_UPLOAD}")
    if getattr(ds, "file_meta", None) is not None and ds.file_meta.get("TransferSyntaxUID") == ExplicitVRBigEndian:
        # pydicom's waveform_array reads samples in the machine's byte order (little-endian here).
        raise _refuse("The DICOM file uses the retired big-endian transfer syntax; export it as little-endian.")
    index = _rhythm_index(ds)
    group = ds.WaveformSequence[index]
    if str(group.get("WaveformSampleInterpretation", "")) in ("MB", "AB"):
        raise _refuse("The DICOM waveform is mu-law or A-law compressed (8 bit), which is not read here; export "
                      "it with 16-bit samples.")
    fs = float(group.SamplingFrequency)
    channels = list(group.get("ChannelDefinitionSequence", []))
    n_channels = int(group.NumberOfWaveformChannels)
    if len(channels) != n_channels:
        raise _refuse(f"The DICOM rhythm waveform has {n_channels} channels but defines {len(channels)}; the file "
                      f"is damaged. {WHAT_TO_UPLOAD}")
    expected = int(group.NumberOfWaveformSamples) * n_channels * int(group.WaveformBitsAllocated) // 8
    if len(group.get("WaveformData", b"")) < expected:
        raise _refuse(f"The DICOM waveform data are cut short: the file is truncated. {WHAT_TO_UPLOAD}")
    values = ds.waveform_array(index)  # (n, channels), Sensitivity × Correction + Baseline, in the units below
    raw = multiplex_array(ds, index, as_raw=True)  # (n, channels) stored sample values
    padding = None
    if group.get("WaveformPaddingValue"):
        padding = np.frombuffer(bytes(group.WaveformPaddingValue)[:raw.itemsize], dtype=raw.dtype)[0]

    columns: dict[str, np.ndarray] = {}
    ignored: list[str] = []
    labels: list[str] = []  # each channel's lead, or the channel's own label where it records none of the 12
    for number, channel in enumerate(channels, start=1):
        lead = _lead_of(channel)
        labels.append(lead or _label(channel, number))
        if lead is None:
            ignored.append(shown(_label(channel, number)))
            continue
        if lead in columns:
            raise _refuse(f"Lead {lead} appears twice in the DICOM rhythm waveform; each lead must appear once. "
                          f"{WHAT_TO_UPLOAD}")
        if "ChannelSensitivity" not in channel:
            raise _refuse(f"Lead {lead} has no Channel Sensitivity, so its samples have no unit. {WHAT_TO_UPLOAD}")
        sensitivity = float(channel.ChannelSensitivity) * float(channel.get("ChannelSensitivityCorrectionFactor")
                                                                 or 1)
        if not math.isfinite(sensitivity) or sensitivity <= 0:
            # The value of one stored unit (PS3.3 C.10.9.1.4.3): zero is no signal, a negative one inverts the lead.
            raise _refuse(f"Lead {lead} has a Channel Sensitivity of {sensitivity:g}; it must be a positive number "
                          f"(the value of one stored unit). {WHAT_TO_UPLOAD}")
        units = channel.get("ChannelSensitivityUnitsSequence")
        unit = str(units[0].get("CodeValue", "")).strip() if units else ""
        if mv_per_unit(unit) is None:
            stated = f'"{shown(unit, 16)}"' if unit else "none"
            raise _refuse(f"Lead {lead} is in units {stated}; an ECG lead must be in uV or mV (UCUM codes in the "
                          f"Channel Sensitivity Units Sequence). {WHAT_TO_UPLOAD}")
        x = values[:, number - 1].astype(np.float64) * mv_per_unit(unit)
        if padding is not None:  # padded samples are not data (PS3.3 C.10.9.1.6); the shared check names them
            x[raw[:, number - 1] == padding] = np.nan
        columns[lead] = x
    notes = complete_leads(columns, what="the DICOM rhythm waveform", remedy=WHAT_TO_UPLOAD, labels=labels)
    if ignored:
        notes.append(f"Channels that are not standard leads were ignored: {', '.join(ignored)}")
    return Reading(columns=columns, fs=fs, source_format=SOURCE_FORMAT, device=_device(ds), notes=notes)
