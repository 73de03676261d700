"""Export files generated in code, one writer per format the intake reads (issue 13): each writes a synthetic ECG
the way the format's specification stores it, with the knobs the failure-mode tests turn (which leads, the gain or
resolution, the sampling rate). The samples are always stored at the format's usual resolution (4.88 µV per unit
in MUSE, 5 µV in Philips, 1 µV elsewhere): a stated gain other than that is the failure under test. Nothing binary
is committed; the real samples live in ../shared/ecg_samples.
"""
from __future__ import annotations

import base64
import struct
import tempfile
from collections.abc import Sequence
from functools import cache
from io import BytesIO
from pathlib import Path

import numpy as np
from edfio import Edf, EdfSignal
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from clinical import demo
from clinical.intake import scp_ecg
from mlcore.preprocess import LEADS

FS = 500
# SCP-ECG / DICOM lead codes (the SCP lead table, which DICOM's "5.6.3-9-N" codes reuse).
LEAD_CODES = {lead: code for code, lead in scp_ecg.LEAD_NAMES.items()}
# GE MUSE stores the 8 independent leads; the reader derives III, aVR, aVL and aVF.
MUSE_LEADS = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")


@cache
def ecg(fs: int = FS, seconds: float = 10.0) -> np.ndarray:
    """(12, n) mV, standard lead order: the demo's normal ECG."""
    return demo.synthesize(demo.CASES[0], fs=fs, seconds=seconds, seed=5).astype(np.float64)


def _row(lead: str, fs: int) -> np.ndarray:
    return ecg(fs)[LEADS.index(lead)]


def _resized(x: np.ndarray, n: int | None) -> np.ndarray:
    return x if n is None else np.resize(x, n) if n > len(x) else x[:n]


# ---------------------------------------------------------------------------------------------------------------
# XML: GE MUSE, Philips Sierra ECG, HL7 aECG


def muse_xml(*, leads: Sequence[str] = MUSE_LEADS, fs: int = FS, sample_base: str | None = None,
             units_per_bit: str = "4.88", units: str = "MICROVOLTS", sample_count: int | None = None,
             waveform_type: str = "Rhythm", lengths: dict[str, int] | None = None) -> bytes:
    """A MUSE <RestingECG>: a rhythm <Waveform> with one <LeadData> per lead, base64 of little-endian int16
    (``lengths``: leads stored with that many samples, cut or padded with zeros)."""
    lead_xml = []
    for lead in leads:
        digits = _resized(np.round(_row(lead, fs) * 1000 / 4.88), (lengths or {}).get(lead)).astype("<i2")
        count = len(digits) if sample_count is None else sample_count
        lead_xml.append(
            f"<LeadData><LeadSampleCountTotal>{count}</LeadSampleCountTotal>"
            f"<LeadAmplitudeUnitsPerBit>{units_per_bit}</LeadAmplitudeUnitsPerBit>"
            f"<LeadAmplitudeUnits>{units}</LeadAmplitudeUnits><LeadID>{lead}</LeadID>"
            f"<WaveFormData>{base64.b64encode(digits.tobytes()).decode()}</WaveFormData></LeadData>")
    base = str(fs) if sample_base is None else sample_base
    return ('<?xml version="1.0" encoding="ISO-8859-1"?>\n<RestingECG><TestDemographics><AcquisitionDevice>MAC55'
            "</AcquisitionDevice></TestDemographics><Waveform><WaveformType>" + waveform_type + "</WaveformType>"
            f"<SampleBase>{base}</SampleBase><SampleExponent>0</SampleExponent>" + "".join(lead_xml)
            + "</Waveform></RestingECG>\n").encode("iso-8859-1")


def philips_xml(*, leads: Sequence[str] = LEADS, fs: int = FS, sampling_rate: str | None = None,
                resolution: str = "5", version: str = "1.04") -> bytes:
    """A Philips Sierra ECG XML file with uncompressed parsed waveforms (lead after lead, int16): III, aVR, aVL and
    aVF stored as the residuals of their prediction from I and II, as the format stores them."""
    d = {lead: np.round(_row(lead, fs) * 1000 / 5).astype(np.int64) for lead in LEADS}
    i, ii, iii = d["I"], d["II"], d["III"]
    stored = d | {"III": ii - i - iii, "aVR": -d["aVR"] - (i + ii) // 2, "aVL": (i - iii) // 2 - d["aVL"],
                  "aVF": (ii + iii) // 2 - d["aVF"]}
    data = np.concatenate([stored[lead] for lead in leads]).astype("<i2").tobytes()
    n = len(i)
    rate = str(fs) if sampling_rate is None else sampling_rate
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<restingecgdata><documentinfo><documentversion>'
            f"{version}</documentversion></documentinfo><dataacquisition><signalcharacteristics><samplingrate>"
            f"{rate}</samplingrate><resolution>{resolution}</resolution><acquisitiontype>STD-12</acquisitiontype>"
            "<numberchannelsallocated>12</numberchannelsallocated></signalcharacteristics></dataacquisition>"
            f'<waveforms><parsedwaveforms leadlabels="{" ".join(leads)}" numberofleads="{len(leads)}" '
            f'durationperchannel="{n * 1000 // fs}" compressmethod="Uncompressed">'
            f"{base64.b64encode(data).decode()}</parsedwaveforms></waveforms></restingecgdata>\n").encode()


def aecg_xml(*, leads: Sequence[str] = LEADS, fs: int = FS, increment: str | None = None, unit: str = "s",
             scale: str = "1", scale_unit: str = "uV", lengths: dict[str, int] | None = None) -> bytes:
    """An HL7 aECG <AnnotatedECG>: a RHYTHM series, a TIME_ABSOLUTE sequence and one SLIST_PQ per lead."""
    step = f"{1 / fs:g}" if increment is None else increment
    sequences = [f'<component><sequence><code code="TIME_ABSOLUTE"/><value xsi:type="GLIST_TS"><head '
                 f'value="20260101120000"/><increment value="{step}" unit="{unit}"/></value></sequence></component>']
    for lead in leads:
        digits = " ".join(str(int(v)) for v in _resized(np.round(_row(lead, fs) * 1000), (lengths or {}).get(lead)))
        sequences.append(f'<component><sequence><code code="MDC_ECG_LEAD_{lead.upper()}"/><value '
                         f'xsi:type="SLIST_PQ"><origin value="0" unit="uV"/><scale value="{scale}" '
                         f'unit="{scale_unit}"/><digits>{digits}</digits></value></sequence></component>')
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<AnnotatedECG xmlns="urn:hl7-org:v3" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><component><series><code code="RHYTHM"/>'
            "<component><sequenceSet>" + "".join(sequences)
            + "</sequenceSet></component></series></component></AnnotatedECG>\n").encode()


# ---------------------------------------------------------------------------------------------------------------
# DICOM 12-lead ECG waveform


def dicom_dataset(*, leads: Sequence[str] = LEADS, fs: int = FS, sensitivity: str = "1", units: str = "uV",
                  n_samples: int | None = None, n_channels: int | None = None) -> Dataset:
    """A 12-lead ECG Waveform Storage dataset: one RHYTHM multiplex group of int16 samples (µV by default)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.9.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Manufacturer = "ECG", "Test cart"
    digits = np.stack([np.round(_row(lead, fs) * 1000) for lead in leads], axis=1).astype("<i2")  # (n, channels)
    group = Dataset()
    group.MultiplexGroupLabel = "RHYTHM"
    group.SamplingFrequency = str(fs)
    group.NumberOfWaveformChannels = len(leads) if n_channels is None else n_channels
    group.NumberOfWaveformSamples = len(digits) if n_samples is None else n_samples
    group.WaveformBitsAllocated, group.WaveformSampleInterpretation = 16, "SS"
    channels = []
    for lead in leads:
        channel, source, unit = Dataset(), Dataset(), Dataset()
        source.CodeValue, source.CodingSchemeDesignator = f"5.6.3-9-{LEAD_CODES[lead]}", "SCPECG"
        source.CodeMeaning = f"Lead {lead}"
        unit.CodeValue, unit.CodingSchemeDesignator, unit.CodeMeaning = units, "UCUM", units
        channel.ChannelSourceSequence = DicomSequence([source])
        channel.ChannelSensitivity = sensitivity
        channel.ChannelSensitivityUnitsSequence = DicomSequence([unit])
        channel.ChannelSensitivityCorrectionFactor = "1"
        channel.ChannelBaseline = "0"
        channel.WaveformBitsStored = 16
        channels.append(channel)
    group.ChannelDefinitionSequence = DicomSequence(channels)
    group.WaveformData = digits.tobytes()
    ds.WaveformSequence = DicomSequence([group])
    return ds


def dicom_bytes(ds: Dataset | None = None, **kwargs) -> bytes:
    buf = BytesIO()
    (dicom_dataset(**kwargs) if ds is None else ds).save_as(buf, enforce_file_format=True)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------------------------
# EDF


def edf_bytes(signals: list[EdfSignal]) -> bytes:
    buf = BytesIO()
    Edf(signals).write(buf)
    return buf.getvalue()


def edf_ecg(*, leads: Sequence[str] = LEADS, fs: int = FS, unit: str = "uV") -> bytes:
    """An EDF+ file of the ECG in µV, one signal per lead labelled as EDF+ labels ECG ("ECG V1")."""
    return edf_bytes([EdfSignal(_row(lead, fs) * 1000, fs, label=f"ECG {lead}", physical_dimension=unit,
                                physical_range=(-10_000, 10_000)) for lead in leads])


# ---------------------------------------------------------------------------------------------------------------
# SCP-ECG


def scp_section(number: int, body: bytes) -> bytes:
    """A section: CRC, number, length, version bytes and 6 reserved bytes ("SCPECG" in section 0), then the body."""
    rest = struct.pack("<HIBB6s", number, 16 + len(body), 20, 20, b"SCPECG" if number == 0 else b"\0" * 6) + body
    return struct.pack("<H", scp_ecg.crc_ccitt(rest)) + rest


def scp_record(sections: dict[int, bytes]) -> bytes:
    """A record of the given section bodies with a fresh section 0 (pointers to sections 1-11), lengths and CRCs."""
    numbers = sorted(set(range(12)) | set(sections))
    numbers.remove(0)
    length0 = 16 + 10 * (len(numbers) + 1)
    at, pointers, parts = 7 + length0, [struct.pack("<HII", 0, length0, 7)], []
    for number in numbers:
        if number in sections:
            part = scp_section(number, sections[number])
            pointers.append(struct.pack("<HII", number, len(part), at))
            parts.append(part)
            at += len(part)
        else:
            pointers.append(struct.pack("<HII", number, 0, 0))
    rest = struct.pack("<I", 6 + length0 + sum(map(len, parts))) + scp_section(0, b"".join(pointers)) + b"".join(parts)
    return struct.pack("<H", scp_ecg.crc_ccitt(rest)) + rest


def scp_sections(*, leads: Sequence[str] = LEADS, fs: int = FS, multiplier_nv: int = 1000,
                 interval_us: int | None = None) -> dict[int, bytes]:
    """Sections 3 (leads) and 6 (rhythm data, plain int16 without Huffman tables or differences)."""
    n = len(_row("I", fs))
    section3 = bytes([len(leads), 0b100]) + b"".join(struct.pack("<IIB", 1, n, LEAD_CODES[lead]) for lead in leads)
    streams = [np.round(_row(lead, fs) * 1e6 / max(multiplier_nv, 1)).astype("<i2").tobytes() for lead in leads]
    interval = round(1e6 / fs) if interval_us is None else interval_us
    section6 = (struct.pack("<HHBB", multiplier_nv, interval, 0, 0) + struct.pack(f"<{len(leads)}H", *map(len, streams))
                + b"".join(streams))
    return {3: section3, 6: section6}


def scp_bytes(**kwargs) -> bytes:
    return scp_record(scp_sections(**kwargs))


# ---------------------------------------------------------------------------------------------------------------
# WFDB, CSV, JSON (the formats people write themselves)


@cache
def wfdb_pair(fs: int = FS) -> tuple[bytes, bytes]:
    """The (.hea, .dat) of record 'rec', as wfdb writes it: format 16, 1000 ADC units per mV."""
    with tempfile.TemporaryDirectory() as tmp:
        demo.write_wfdb(ecg(fs), fs, "rec", tmp)
        return (Path(tmp) / "rec.hea").read_bytes(), (Path(tmp) / "rec.dat").read_bytes()


def wfdb_files(hea: bytes | None = None, dat: bytes | None = None) -> dict[str, tuple[str, bytes]]:
    good_hea, good_dat = wfdb_pair()
    return {"hea": ("rec.hea", good_hea if hea is None else hea), "dat": ("rec.dat", good_dat if dat is None else dat)}


def wfdb_header(*, record: dict[int, str | None] | None = None, signal: dict[int, str] | None = None,
                leads: Sequence[str] = LEADS) -> bytes:
    """The good header with fields of the record line (index -> value; None cuts the line there) or of every
    signal line replaced, keeping only the signal lines of ``leads``."""
    lines = wfdb_pair()[0].decode().splitlines()
    first = lines[0].split()
    for index, value in sorted((record or {}).items(), reverse=True):
        if value is None:
            del first[index:]
        else:
            first[index] = value
    kept = [line.split() for line in lines[1:] if line.split()[-1] in leads]
    if leads != LEADS and len(first) > 1 and not record:
        first[1] = str(len(kept))
    for parts in kept:
        for index, value in (signal or {}).items():
            parts[index] = value
    return ("\n".join([" ".join(first)] + [" ".join(p) for p in kept]) + "\n").encode()


def csv_bytes(*, preamble: str = "", leads: Sequence[str] = LEADS, fs: int = FS, scale: float = 1.0) -> bytes:
    """A CSV export: optional 'key: value' lines, a header row of lead names, one row per sample (mV × scale)."""
    rows = np.stack([_row(lead, fs) * scale for lead in leads], axis=1)
    body = "\n".join(",".join(f"{v:.4f}" for v in row) for row in rows)
    return (preamble + ",".join(leads) + "\n" + body + "\n").encode()


def json_doc(*, leads: Sequence[str] = LEADS, fs: object = FS, units: object = "mV", scale: float = 1.0) -> dict:
    return {"fs": fs, "units": units, "leads": {lead: np.round(_row(lead, FS) * scale, 4).tolist() for lead in leads}}
