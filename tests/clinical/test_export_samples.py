"""Every real file in ../shared/ecg_samples goes through the whole intake (parser, quality gate, storage) as an
upload would: stored with its device reading, or refused for a stated clinical reason (the EDF file, recorded with
the chest electrodes off). Cited: see ../shared/ecg_samples/SOURCES.md for each file's source and licence."""
from __future__ import annotations

from pathlib import Path

import pytest

from clinical import services
from clinical.errors import ApplicationError
from clinical.models import EcgRecord

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "ecg_samples"
pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason="../shared/ecg_samples is not beside the checkout")

ACCEPTED = [
    (["wfdb/s0010_re.hea", "wfdb/s0010_re.dat", "wfdb/s0010_re.xyz"], None, "wfdb", 1000, "vx, vy and vz"),
    (["wfdb/JS00001.hea", "wfdb/JS00001.mat"], None, "wfdb", 500, None),
    (["hl7-aecg/Example_aECG.xml"], None, "hl7-aecg", 500, None),
    (["ge-muse-xml/braveheart_example1.xml"], None, "ge-muse-xml", 500, "derived from I and II"),
    (["philips-xml/129DYPRG.XML"], None, "philips-xml", 500, "calibration"),
    (["philips-xml/3191723_ZZDEMOPTONLY_1-04_orig.xml"], None, "philips-xml", 500, "calibration"),
    (["scp-ecg/Example.scp"], None, "scp-ecg", 500, None),
    (["dicom/waveform_ecg.dcm"], None, "dicom-ecg", 1000, None),
    (["csv/ECG_12L.csv"], None, "csv", 500, None),
    (["text/testing_ecg.txt"], 500, "csv", 500, None),
]


def _files(paths):
    return {f"f{i}": (Path(p).name, (SAMPLES / p).read_bytes()) for i, p in enumerate(paths)}


@pytest.mark.parametrize(("paths", "fs", "source_format", "rate", "note"), ACCEPTED, ids=[a[0][0] for a in ACCEPTED])
def test_each_sample_is_stored_as_an_upload_would_be(clinician, paths, fs, source_format, rate, note):
    record = services.ecg_submit(actor=clinician, pseudonym="PT-SAMPLE", age=None, sex="U", files=_files(paths),
                                 fs=fs)
    record.refresh_from_db()
    assert (record.source_format, record.fs) == (source_format, rate)
    assert record.signal_array().shape[0] == 12
    if note:
        assert any(note in n for n in record.intake_notes), record.intake_notes


def test_the_device_statements_of_the_exports_are_kept(clinician):
    muse = services.ecg_submit(actor=clinician, pseudonym="PT-S1", age=None, sex="U",
                               files=_files(["ge-muse-xml/braveheart_example1.xml"]), fs=None)
    assert muse.device["measurements"]["VentricularRate"] == 48  # what the MUSE file itself states
    dicom = services.ecg_submit(actor=clinician, pseudonym="PT-S2", age=None, sex="U",
                                files=_files(["dicom/waveform_ecg.dcm"]), fs=None)
    assert {"RITMO SINUSALE", "ECG NORMALE"} <= set(dicom.device["statements"])


def test_the_edf_recorded_without_chest_electrodes_is_refused_saying_so(clinician):
    with pytest.raises(ApplicationError, match="chest electrodes were not connected"):
        services.ecg_submit(actor=clinician, pseudonym="PT-S3", age=None, sex="U",
                            files=_files(["edf/0000050.ECG.edf"]), fs=None)
    assert not EcgRecord.objects.exists()


def test_the_api_takes_a_three_file_ptb_record_and_an_export(clinician, integrator):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(integrator)
    for i, paths in enumerate((["wfdb/s0010_re.hea", "wfdb/s0010_re.dat", "wfdb/s0010_re.xyz"],
                               ["scp-ecg/Example.scp"])):
        from django.core.files.uploadedfile import SimpleUploadedFile

        files = [SimpleUploadedFile(Path(p).name, (SAMPLES / p).read_bytes()) for p in paths]
        resp = api.post("/api/v1/ecgs/", {"files": files, "pseudonym": f"PT-API-{i}", "age": 70, "sex": "F"},
                        format="multipart")
        assert resp.status_code == 202, resp.content
