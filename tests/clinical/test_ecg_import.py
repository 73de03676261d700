"""manage.py ecg_import (clinical.imports): an archive through the upload service, resumable, errors per file."""
from __future__ import annotations

import csv
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import wfdb
from django.core.management import call_command
from django.core.management.base import CommandError

from clinical import demo
from clinical.imports import Outcome, ecg_import, file_pseudonym
from clinical.models import AuditEvent, EcgRecord, InferenceJob, Patient, Prediction
from mlcore.preprocess import LEADS
from tests.clinical import export_fixtures

PATIENTS = [("PT-A", 64, "M"), ("PT-B", 51, "F"), ("PT-A", 65, "M")]  # PT-A twice: a patient with two ECGs


def write_record(folder: Path, name: str, seed: int, comments: list[str] | None = None) -> None:
    sig = demo.synthesize(demo.CASES[seed % len(demo.CASES)], fs=500, seed=seed)  # (12, 5000) mV
    wfdb.wrsamp(name, fs=500, units=["mV"] * 12, sig_name=list(LEADS), p_signal=sig.T.astype(np.float64),
                fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(folder),
                comments=comments or [])


@pytest.fixture
def archive(tmp_path) -> Path:
    """Three synthetic WFDB records in subfolders, one record whose signal file is cut short, a README, and a
    manifest (file, patient, age, sex)."""
    root = tmp_path / "archive"
    (root / "2019").mkdir(parents=True)
    (root / "2020").mkdir()
    rows = []
    for i, (patient, age, sex) in enumerate(PATIENTS):
        folder = root / ("2019" if i < 2 else "2020")
        write_record(folder, f"ecg{i}", seed=i)
        rows.append({"file": f"{folder.name}/ecg{i}.hea", "patient": patient, "age": age, "sex": sex})
    write_record(root / "2020", "broken", seed=9)
    dat = root / "2020" / "broken.dat"
    dat.write_bytes(dat.read_bytes()[:1000])
    rows.append({"file": "2020/broken", "patient": "PT-C", "age": "", "sex": "U"})
    (root / "README.md").write_text("Exported from the cardiology archive.")
    with open(tmp_path / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["file", "patient", "age", "sex"])
        w.writeheader()
        w.writerows(rows)
    return root


def run(*args, **kw) -> str:
    out = io.StringIO()
    call_command("ecg_import", *map(str, args), "--no-progress", stdout=out, **kw)
    return out.getvalue()


def test_an_archive_goes_in_through_the_upload_service_and_a_rerun_imports_nothing(archive, clinician,
                                                                                    weights_dir):
    out = run(archive, "--actor", clinician.username, "--manifest", archive.parent / "manifest.csv", "--inline")

    assert "3 imported, 0 skipped (already in), 1 refused, 0 analysis failed" in out
    assert "2020/broken" in out  # listed with its reason, and the others still went in
    records = EcgRecord.objects.order_by("source_files")
    assert [(r.patient.pseudonym, r.age_at_ecg, r.sex_at_ecg) for r in records] == PATIENTS
    assert Patient.objects.get(pseudonym="PT-A").ecgs.count() == 2
    assert all(r.uploaded_by == clinician and r.fs == 500 for r in records)
    # Analysed inline, without evidence: findings and actions, no Grad-CAM.
    assert all(r.job.state == InferenceJob.State.DONE and not r.job.with_evidence for r in records)
    assert all(p.explanations == {} and p.recommendations.exists() for p in Prediction.objects.all())
    # Audited as uploads are: each ECG, the refusal, the results, and the run itself.
    assert AuditEvent.objects.filter(action="ecg.upload", actor=clinician).count() == 3
    assert AuditEvent.objects.filter(action="ecg.upload_refused").count() == 1
    assert AuditEvent.objects.filter(action="inference.complete").count() == 3
    run_event = AuditEvent.objects.get(action="ecg.import")
    assert run_event.details["counts"][Outcome.IMPORTED] == 3 and run_event.details["refused"] == ["2020/broken"]

    again = run(archive, "--actor", clinician.username, "--manifest", archive.parent / "manifest.csv", "--inline")
    assert "0 imported, 3 skipped (already in), 1 refused" in again
    assert EcgRecord.objects.count() == 3


def test_strict_exits_with_status_1_when_a_file_is_refused(archive, clinician, weights_dir):
    with pytest.raises(CommandError) as exc:
        run(archive, "--actor", clinician.username, "--manifest", archive.parent / "manifest.csv", "--strict")
    assert exc.value.returncode == 1
    assert EcgRecord.objects.count() == 3  # the others still went in


def test_a_zip_is_imported_and_queued_to_the_workers_by_default(archive, clinician, tmp_path,
                                                                django_capture_on_commit_callbacks):
    zipped = tmp_path / "archive.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        for f in archive.rglob("*"):
            if f.is_file() and "broken" not in f.name:
                z.write(f, f.relative_to(archive).as_posix())
    with django_capture_on_commit_callbacks(execute=False) as sent:
        out = run(zipped, "--actor", clinician.username, "--manifest", archive.parent / "manifest.csv")
    assert "3 imported" in out and "queued to the workers" in out
    assert len(sent) == 3  # one message to the inference queue per ECG, after commit, as an upload sends
    assert set(InferenceJob.objects.values_list("state", "with_evidence")) == {(InferenceJob.State.QUEUED, False)}


def test_the_patient_an_export_states_is_stored_under_a_keyed_pseudonym(tmp_path, clinician, weights_dir):
    folder = tmp_path / "philips"
    folder.mkdir()
    patient = ("<patient><generalpatientdata><patientid>H-0042</patientid><age><years>58</years></age>"
               "<sex>Female</sex></generalpatientdata></patient>")
    xml = export_fixtures.philips_xml().decode().replace("<waveforms>", patient + "<waveforms>")
    (folder / "cart1.xml").write_text(xml)
    write_record(folder, "no_patient", seed=2, comments=["Age: 71", "Sex: Male"])

    out = run(folder, "--actor", clinician.username, "--inline")

    record = EcgRecord.objects.get()
    assert (record.patient.pseudonym, record.age_at_ecg, record.sex_at_ecg) == (file_pseudonym("H-0042"), 58, "F")
    # The hospital's own number is stored nowhere, not even in the audit trail.
    assert not AuditEvent.objects.filter(details__icontains="H-0042").exists()
    assert "H-0042" not in str(list(Patient.objects.values()))
    # A WFDB header may state age and sex but no patient id: refused with what to do.
    assert "no_patient" in out and "manifest" in out


def test_ptbxl_manifest_maps_patients_sex_and_ages_over_89(ptbxl_dir, clinician, weights_dir):
    summary = ecg_import(actor=clinician, path=ptbxl_dir, inline=True, limit=6)

    assert summary.counts[Outcome.IMPORTED] == 6
    got = {r.patient.pseudonym: (r.age_at_ecg, r.sex_at_ecg) for r in EcgRecord.objects.all()}
    # ptbxl_dir's rows: patient_id 100 + i, age [25, 45, 65, 85, 300, 55][i], sex i % 2 (0 male, 1 female)
    assert got == {"ptbxl-100": (25, "M"), "ptbxl-101": (45, "F"), "ptbxl-102": (65, "M"), "ptbxl-103": (85, "F"),
                   "ptbxl-104": (90, "M"), "ptbxl-105": (55, "F")}


def test_an_account_that_may_not_upload_is_refused(archive, compliance_officer):
    with pytest.raises(CommandError, match="may upload"):
        run(archive, "--actor", compliance_officer.username)


def test_evidence_is_computed_when_asked(archive, clinician, weights_dir):
    run(archive, "--actor", clinician.username, "--manifest", archive.parent / "manifest.csv", "--inline",
        "--evidence", "--limit", "1")
    prediction = Prediction.objects.get()
    assert prediction.record.job.with_evidence
    assert prediction.explanations or not prediction.findings.exclude(head="measurement").exists()


PTBXL = os.environ.get("PTBXL_DIR", "")


@pytest.mark.skipif(not (PTBXL and (Path(PTBXL) / "records100").is_dir()),
                    reason="set PTBXL_DIR to an unpacked PTB-XL layout (../shared/ptbxl/unpack.py DEST)")
def test_real_ptbxl_records_import_and_a_rerun_imports_none(clinician, weights_dir):
    first = ecg_import(actor=clinician, path=Path(PTBXL), inline=True, limit=50)
    assert first.counts[Outcome.IMPORTED] == 50 and not first.problems
    again = ecg_import(actor=clinician, path=Path(PTBXL), inline=True, limit=50)
    assert again.counts[Outcome.IMPORTED] == 0 and again.counts[Outcome.SKIPPED] == 50


def test_a_muse_export_and_a_wfdb_header_state_their_patient(tmp_path):
    from clinical.intake.demographics import StatedPatient, stated_patient

    demo_xml = ("<PatientDemographics><PatientID>MRN-7</PatientID><PatientAge>47</PatientAge>"
                "<PatientAgeUnits>YEARS</PatientAgeUnits><Gender>MALE</Gender></PatientDemographics>")
    muse = export_fixtures.muse_xml().decode("iso-8859-1").replace("<TestDemographics>",
                                                                   demo_xml + "<TestDemographics>")
    assert stated_patient({"file": ("m.xml", muse.encode("iso-8859-1"))}) == StatedPatient("MRN-7", 47, "M")
    write_record(tmp_path, "c", seed=1, comments=["Age: 71", "Sex: Female", "Dx: 164889003"])
    hea = (tmp_path / "c.hea").read_bytes()
    assert stated_patient({"hea": ("c.hea", hea)}) == StatedPatient(None, 71, "F")
    assert stated_patient({"csv": ("e.csv", b"I,II\n0,0\n")}) == StatedPatient()
