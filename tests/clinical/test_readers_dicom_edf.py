"""DICOM ECG waveforms and EDF recordings (issue 13): the real samples, checked against the formats' own libraries
and against the raw stored samples, and the ways such files go wrong."""
from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from edfio import EdfSignal, read_edf
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from clinical.intake import IntakeError, dicom, edf, parse_upload
from clinical.services import ApplicationError, ecg_submit
from mlcore.preprocess import LEADS
from mlcore.quality import assess
from tests.clinical.export_fixtures import edf_bytes

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "ecg_samples"
DCM = SAMPLES / "dicom" / "waveform_ecg.dcm"
EDF = SAMPLES / "edf" / "0000050.ECG.edf"
needs_dcm = pytest.mark.skipif(not DCM.exists(), reason="the DICOM sample (shared/ecg_samples/dicom) is not here")
needs_edf = pytest.mark.skipif(not EDF.exists(), reason="the EDF sample (shared/ecg_samples/edf) is not here")
UV = 1e-3  # mV


def _upload(name: str, content: bytes):
    return parse_upload(files={"file": (name, content)}, fs=None)


def _refusal(name: str, content: bytes) -> str:
    with pytest.raises(IntakeError) as exc:
        _upload(name, content)
    assert exc.value.field == "file"
    return exc.value.message


# ---------------------------------------------------------------------------------------------------------------
# DICOM


def _dcm_bytes(ds: Dataset) -> bytes:
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _sample_ds() -> Dataset:
    return pydicom.dcmread(DCM)


def _keep_channels(ds: Dataset, keep: list[int]) -> Dataset:
    """The sample with only the rhythm channels at ``keep`` (0-based), its WaveformData rewritten to match."""
    group = ds.WaveformSequence[0]
    raw = np.frombuffer(group.WaveformData, dtype="<i2").reshape(group.NumberOfWaveformSamples, -1)
    group.WaveformData = np.ascontiguousarray(raw[:, keep]).astype("<i2").tobytes()
    group.NumberOfWaveformChannels = len(keep)
    group.ChannelDefinitionSequence = [group.ChannelDefinitionSequence[i] for i in keep]
    return ds


@needs_dcm
def test_dicom_sample_is_accepted_with_pydicoms_values_in_millivolts():
    content = DCM.read_bytes()
    parsed = _upload("waveform_ecg.dcm", content)
    assert parsed.signal.shape == (12, 10_000) and parsed.fs == 1000.0 and parsed.duration_s == 10.0
    assert parsed.source_format == "dicom-ecg"

    ds = pydicom.dcmread(BytesIO(content))
    group = ds.WaveformSequence[0]
    assert group.MultiplexGroupLabel == "RHYTHM"  # not the median beat in item 1
    # Independently of pydicom: stored int16 samples × Channel Sensitivity (1.25, in uV) → mV.
    raw = np.frombuffer(group.WaveformData, dtype="<i2").reshape(10_000, 12).astype(np.float64)
    assert all(ch.ChannelSensitivityUnitsSequence[0].CodeValue == "uV" for ch in group.ChannelDefinitionSequence)
    sensitivity = np.array([float(ch.ChannelSensitivity) * float(ch.ChannelSensitivityCorrectionFactor)
                            for ch in group.ChannelDefinitionSequence])
    baseline = np.array([float(ch.ChannelBaseline) for ch in group.ChannelDefinitionSequence])
    ours = parsed.signal.astype(np.float64)
    np.testing.assert_allclose(ours, ((raw * sensitivity + baseline) * UV).T, rtol=0, atol=1 * UV)
    np.testing.assert_allclose(ours, ds.waveform_array(0).T * UV, rtol=0, atol=1 * UV)
    # The channels are in the standard order in this file; the labels said so ("Lead I (Einthoven)", ...).
    meanings = [ch.ChannelSourceSequence[0].CodeMeaning for ch in group.ChannelDefinitionSequence]
    assert meanings[0] == "Lead I (Einthoven)" and meanings[3] == "Lead aVR" and meanings[6] == "Lead V1"
    # Einthoven holds in what we read: a unit error in one lead would break it.
    i, ii, iii = ours[LEADS.index("I")], ours[LEADS.index("II")], ours[LEADS.index("III")]
    assert np.abs(iii - (ii - i)).max() < 0.01


@needs_dcm
def test_dicom_device_statements_and_intervals():
    reading = dicom.read(DCM.read_bytes(), "waveform_ecg.dcm")
    assert reading.device["statements"] == ["RITMO SINUSALE", "ECG NORMALE"]
    m = reading.device["measurements"]
    assert (m["PRInterval"], m["QRSDuration"], m["QTInterval"], m["RAxis"]) == (161.0, 75.0, 368.0, 52.0)
    assert reading.device["device"].startswith("Mortara")
    assert reading.device["acquired"] == "2013-01-25T10:59:19"
    assert _upload("waveform_ecg.dcm", DCM.read_bytes()).device == reading.device


@needs_dcm
def test_dicom_with_only_i_ii_and_chest_leads_gets_limb_leads_derived():
    full = _upload("full.dcm", DCM.read_bytes()).signal
    eight = _keep_channels(_sample_ds(), [0, 1, 6, 7, 8, 9, 10, 11])  # I, II, V1-V6
    parsed = _upload("eight.dcm", _dcm_bytes(eight))
    assert any("derived from I and II" in note for note in parsed.notes)
    np.testing.assert_allclose(parsed.signal[2], parsed.signal[1] - parsed.signal[0], atol=1e-6)
    np.testing.assert_array_equal(parsed.signal[6:], full[6:])


@needs_dcm
def test_dicom_with_ii_and_avl_reconstructs_i_and_the_other_limb_leads():
    full = _upload("full.dcm", DCM.read_bytes()).signal
    pair = _keep_channels(_sample_ds(), [1, 4, 6, 7, 8, 9, 10, 11])  # II, aVL, V1-V6
    parsed = _upload("pair.dcm", _dcm_bytes(pair))
    assert parsed.notes == ["I, III, aVR and aVF derived from II and aVL"]
    np.testing.assert_array_equal(parsed.signal[[1, 4, 6, 7, 8, 9, 10, 11]], full[[1, 4, 6, 7, 8, 9, 10, 11]])
    # The cart's own I and the one reconstructed from its II and aVL: the same to its 1.25 uV steps.
    np.testing.assert_allclose(parsed.signal[0], full[0], rtol=0, atol=2 * UV)
    np.testing.assert_allclose(parsed.signal[:6], full[:6], rtol=0, atol=2 * UV)


@needs_dcm
def test_dicom_without_v6_is_refused_naming_it():
    ds = _keep_channels(_sample_ds(), [0, 1, 2, 6, 7, 8, 9, 10])  # I, II, III, V1-V5
    message = _refusal("no_v6.dcm", _dcm_bytes(ds))
    assert message.startswith("Lead V6 is missing from the DICOM rhythm waveform") and "12-lead" in message


@needs_dcm
def test_dicom_absurd_sensitivity_is_refused_by_the_amplitude_check():
    ds = _sample_ds()
    for ch in ds.WaveformSequence[0].ChannelDefinitionSequence:
        ch.ChannelSensitivity = "1e9"
    assert "an ECG spans a few mV" in _refusal("huge.dcm", _dcm_bytes(ds))


@needs_dcm
def test_dicom_channel_in_wrong_units_is_refused():
    ds = _sample_ds()
    units = ds.WaveformSequence[0].ChannelDefinitionSequence[4].ChannelSensitivityUnitsSequence[0]
    units.CodeValue, units.CodeMeaning = "mm[Hg]", "millimeter of mercury"
    message = _refusal("mmhg.dcm", _dcm_bytes(ds))
    assert "Lead aVL" in message and "uV or mV" in message


@needs_dcm
def test_truncated_dicom_is_refused():
    content = DCM.read_bytes()
    for cut in (len(content) // 2, len(content) - 1000, 200):
        assert "cut short" in _refusal("cut.dcm", content[:cut])


def test_non_dicom_bytes_named_dcm_are_refused():
    message = _refusal("ecg.dcm", b"I,II,III\n1,2,3\n" * 20)
    assert "not a DICOM file" in message and "Export the ECG" in message


def test_dicom_image_is_refused_as_not_an_ecg():
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Rows, ds.Columns = "CT", 4, 4
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel = 15, 0, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = np.zeros((4, 4), dtype="<u2").tobytes()
    message = _refusal("image.dcm", _dcm_bytes(ds))
    assert "CT Image Storage" in message and "not an ECG waveform" in message


# ---------------------------------------------------------------------------------------------------------------
# EDF


def _edf_physical(content: bytes) -> dict[str, np.ndarray]:
    """Physical values straight from the EDF bytes (header ranges, int16 records), without any EDF library."""
    head = content[:256]
    ns = int(head[252:256])
    n_records = int(head[236:244])
    fields = content[256:256 + 256 * ns]

    def column(offset: int, width: int) -> list[str]:
        start = offset * ns
        return [fields[start + width * i:start + width * (i + 1)].decode().strip() for i in range(ns)]

    labels = column(0, 16)
    pmin, pmax = (np.array(column(o, 8), dtype=float) for o in (104, 112))
    dmin, dmax = (np.array(column(o, 8), dtype=float) for o in (120, 128))
    per_record = np.array(column(216, 8), dtype=int)
    records = np.frombuffer(content[256 * (ns + 1):], dtype="<i2")[:n_records * per_record.sum()]
    records = records.reshape(n_records, per_record.sum())
    bounds = np.concatenate([[0], np.cumsum(per_record)])
    return {labels[i]: (records[:, bounds[i]:bounds[i + 1]].ravel() - dmin[i]) * (pmax[i] - pmin[i])
            / (dmax[i] - dmin[i]) + pmin[i] for i in range(ns)}


@needs_edf
def test_edf_sample_reads_as_the_stored_physical_values():
    content = EDF.read_bytes()
    reading = edf.read(content, EDF.name)
    assert reading.fs == 800.0 and sorted(reading.columns) == sorted(LEADS) and reading.notes == []
    independent = _edf_physical(content)
    library = {s.label: s.data for s in read_edf(content).signals}
    for lead in LEADS:
        assert {s.physical_dimension for s in read_edf(content).signals} == {"mV"}
        np.testing.assert_allclose(reading.columns[lead], independent[lead], rtol=0, atol=1 * UV)
        np.testing.assert_allclose(reading.columns[lead], library[lead], rtol=0, atol=1 * UV)
    assert len(reading.columns["I"]) / reading.fs == pytest.approx(47.31875)  # within the 60 s limit
    assert all(np.ptp(reading.columns[v]) == 0 for v in ("V1", "V2", "V3", "V4", "V5", "V6"))


@needs_edf
def test_edf_sample_is_refused_because_the_chest_electrodes_were_off():
    message = _refusal(EDF.name, EDF.read_bytes())
    assert message.startswith("The chest leads V1–V6 are flat: the chest electrodes were not connected")


@needs_edf
def test_quality_gate_alone_would_only_say_each_chest_lead_is_flat():
    # Why the reader words the refusal itself: the gate lists six "lead off?" lines and no cause.
    reading = edf.read(EDF.read_bytes(), EDF.name)
    report = assess(np.stack([reading.columns[lead] for lead in LEADS]).astype(np.float32), reading.fs)
    assert not report.usable
    assert all("flat (lead off?)" in i.message for i in report.refusals())
    assert not any("chest" in i.message for i in report.refusals())


@needs_edf
def test_submitting_the_edf_sample_tells_the_clinician_about_the_chest_electrodes(clinician):
    with pytest.raises(ApplicationError) as exc:
        ecg_submit(actor=clinician, pseudonym="edf-patient", age=50, sex="F",
                   files={"file": (EDF.name, EDF.read_bytes())}, fs=None)
    assert "the chest electrodes were not connected" in exc.value.message


def _ecg_uv(fs: int = 500, seconds: int = 10) -> dict[str, np.ndarray]:
    t = np.arange(fs * seconds) / fs
    beat = 1000 * np.exp(-(((t % 1.0) - 0.5) ** 2) / 0.0005)  # a 1 mV spike each second, in uV
    return {lead: beat * (1 + k / 10) + 30 * np.sin(2 * np.pi * 0.3 * t) for k, lead in enumerate(LEADS)}


def _signal(label: str, data: np.ndarray, fs: float, unit: str = "uV") -> EdfSignal:
    return EdfSignal(data, fs, label=label, physical_dimension=unit, physical_range=(-5000, 5000))


def test_edf_plus_labels_in_microvolts_are_read_in_millivolts_and_other_signals_noted():
    leads = _ecg_uv()
    content = edf_bytes([_signal(f"ECG {lead}", leads[lead], 500) for lead in LEADS]
                         + [_signal("EEG Fpz-Cz", leads["I"], 500), _signal("Resp chest", leads["I"][::5], 100)])
    parsed = _upload("edfplus.edf", content)
    assert parsed.fs == 500.0 and parsed.signal.shape == (12, 5000)
    # The stored values are digitised over ±5000 uV in 16 bits: 0.15 uV steps.
    np.testing.assert_allclose(parsed.signal[LEADS.index("V3")], leads["V3"] * UV, atol=1 * UV)
    assert parsed.notes == ["Signals that are not ECG leads were ignored: EEG Fpz-Cz, Resp chest"]


def test_edf_with_mixed_sampling_rates_is_refused():
    leads = _ecg_uv()
    signals = [_signal(lead, leads[lead], 500) for lead in LEADS[:-1]] + [_signal("V6", leads["V6"][::2], 250)]
    message = _refusal("mixed.edf", edf_bytes(signals))
    assert "different sampling rates" in message and "V6 at 250 Hz" in message


def test_edf_missing_v6_is_refused():
    leads = _ecg_uv()
    message = _refusal("eleven.edf", edf_bytes([_signal(lead, leads[lead], 500) for lead in LEADS[:-1]]))
    assert message.startswith("Lead V6 is missing from the EDF file")


def _einthoven_uv() -> dict[str, np.ndarray]:
    """_ecg_uv with limb leads that obey Einthoven's and Goldberger's relations, as a cart's do."""
    leads = _ecg_uv()
    i, ii = leads["I"], leads["II"] * 0.7 - 200 * np.sin(np.linspace(0, 60, len(leads["I"])))
    leads.update(II=ii, III=ii - i, aVR=-(i + ii) / 2, aVL=i - ii / 2, aVF=ii - i / 2)
    return leads


def test_edf_with_i_ii_and_v1_v6_derives_the_other_limb_leads():
    leads = _einthoven_uv()
    eight = ("I", "II", *LEADS[6:])
    parsed = _upload("eight.edf", edf_bytes([_signal(f"ECG {lead}", leads[lead], 500) for lead in eight]))
    full = _upload("full.edf", edf_bytes([_signal(f"ECG {lead}", leads[lead], 500) for lead in LEADS]))
    assert parsed.notes == ["III, aVR, aVL and aVF derived from I and II"]
    rows = [LEADS.index(lead) for lead in eight]
    np.testing.assert_array_equal(parsed.signal[rows], full.signal[rows])
    np.testing.assert_allclose(parsed.signal[2], parsed.signal[1].astype(float) - parsed.signal[0], atol=1e-6)
    np.testing.assert_allclose(parsed.signal, full.signal, rtol=0, atol=1 * UV)


def test_edf_with_ii_and_avl_reconstructs_i():
    leads = _einthoven_uv()
    parsed = _upload("pair.edf", edf_bytes([_signal(lead, leads[lead], 500) for lead in ("aVL", "II", *LEADS[6:])]))
    assert parsed.notes == ["I, III, aVR and aVF derived from II and aVL"]
    for k, lead in enumerate(LEADS[:6]):
        np.testing.assert_allclose(parsed.signal[k], leads[lead] * UV, rtol=0, atol=1 * UV)


def test_edf_of_a_two_lead_holter_is_refused_as_one():
    leads = _ecg_uv(fs=360)
    message = _refusal("holter.edf", edf_bytes([_signal("ECG MLII", leads["II"], 360),
                                                _signal("ECG V5", leads["V5"], 360)]))
    assert message.startswith("This is a 2-lead recording (ECG MLII and ECG V5), such as a Holter or monitor strip")


def test_edf_holter_with_numbered_channels_is_refused_as_one():
    leads = _ecg_uv(fs=256)
    message = _refusal("holter.edf", edf_bytes([_signal(f"ECG {k}", leads["II"], 256) for k in (1, 2, 3)]
                                               + [_signal("Resp chest", leads["I"][::8], 32)]))
    assert message.startswith("This is a 3-lead recording (ECG 1, ECG 2 and ECG 3), such as a Holter")


def test_edf_without_v3_is_refused_naming_it():
    leads = _einthoven_uv()
    message = _refusal("no_v3.edf", edf_bytes([_signal(lead, leads[lead], 500) for lead in LEADS if lead != "V3"]))
    assert message.startswith("Lead V3 is missing from the EDF file")


def test_edf_with_flat_chest_leads_is_refused_saying_so():
    leads = _einthoven_uv()
    flat = {lead: (np.full_like(v, 12.0) if lead.startswith("V") else v) for lead, v in leads.items()}
    message = _refusal("flat.edf", edf_bytes([_signal(lead, flat[lead], 500) for lead in LEADS]))
    assert message.startswith("The chest leads V1–V6 are flat")


def test_edf_in_wrong_units_is_refused():
    leads = _ecg_uv()
    signals = [_signal(lead, leads[lead], 500, unit="mmHg" if lead == "V2" else "uV") for lead in LEADS]
    message = _refusal("mmhg.edf", edf_bytes(signals))
    assert "Lead V2" in message and "uV or mV" in message


def test_edf_in_microvolts_labelled_millivolts_is_refused_by_the_amplitude_check():
    leads = _ecg_uv()
    signals = [_signal(lead, leads[lead], 500, unit="mV") for lead in LEADS]
    assert "an ECG spans a few mV" in _refusal("huge.edf", edf_bytes(signals))


def test_truncated_and_foreign_edf_are_refused():
    leads = _ecg_uv()
    content = edf_bytes([_signal(lead, leads[lead], 500) for lead in LEADS])
    message = _refusal("cut.edf", content[: len(content) // 2])
    assert "cut short" in message and "announces 10 data records but it holds 4" in message
    for bad in (content[:300], b"not an edf file at all" * 30):
        assert "not a readable EDF file" in _refusal("bad.edf", bad)
