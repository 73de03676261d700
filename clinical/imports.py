"""Bulk import of an ECG archive (issue 17): a folder, a zip, or an ECG system's export directory, each ECG through
the same upload service and audit as a person's upload (clinical.services.ecg_submit).

- Uploads are grouped as a person would send them: a WFDB .hea with its signal files (.dat, .mat, .xyz of the same
  name), any other accepted file on its own.
- The patient comes from a CSV manifest (columns file, patient, age, sex; or PTB-XL's ptbxl_database.csv), else from
  what the file states (clinical.intake.demographics). A file-stated id is an export system's own number, so it is
  stored only as a keyed pseudonym.
- Resumable: a file whose bytes this uploader already stored (EcgRecord.upload_sha256) is skipped.
- A refused file is listed with the reason (and audited as a refused upload is); the others go in.
- Evidence (Grad-CAM) is off by default: an archive's results are for baselines and comparison, and evidence costs
  several times the prediction. Inference runs inline in this process, or is queued to the workers.
"""
from __future__ import annotations

import csv
import hashlib
import hmac
import io
import logging
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from django.conf import settings

from clinical import services
from clinical.audit import AuditAction, audit_log
from clinical.errors import ApplicationError
from clinical.intake import UPLOAD_EXTENSIONS
from clinical.intake.demographics import stated_patient
from clinical.intake.limits import WFDB_SIGNAL_EXTENSIONS
from clinical.models import EcgRecord, InferenceJob, Patient, Prediction

log = logging.getLogger(__name__)

# PTB-XL's metadata files, never ECGs; its documentation: sex 0 = male, 1 = female; ages above 89 written as 300.
PTBXL_DATABASE = "ptbxl_database.csv"
PTBXL_METADATA = {PTBXL_DATABASE, "scp_statements.csv"}
PTBXL_SEX = {"0": Patient.Sex.MALE, "1": Patient.Sex.FEMALE}
PTBXL_AGE_OVER_89 = 300
# Stored as 90 (the youngest such a patient can be), so that the age band monitoring reads stays right.
PTBXL_AGE_STORED = 90
SEX_WORDS = {"m": Patient.Sex.MALE, "male": Patient.Sex.MALE, "f": Patient.Sex.FEMALE, "female": Patient.Sex.FEMALE,
             "u": Patient.Sex.UNKNOWN, "unknown": Patient.Sex.UNKNOWN, "": Patient.Sex.UNKNOWN}


class Outcome:
    IMPORTED = "imported"
    SKIPPED = "skipped"  # already in: the same bytes stored by the same uploader
    REFUSED = "refused"  # not stored: the reason says why
    ANALYSIS_FAILED = "analysis failed"  # stored, but its inline analysis failed (the job says why; Retry works)


@dataclass(frozen=True)
class PatientFacts:
    pseudonym: str
    age: int | None
    sex: str


@dataclass(frozen=True)
class ArchiveUpload:
    """One ECG as a person would upload it. ``key`` is its path in the archive without the extension (a WFDB
    record's name), what a manifest's ``file`` column names."""

    key: str
    names: tuple[str, ...]
    read: Callable[[], dict[str, tuple[str, bytes]]]


@dataclass(frozen=True)
class ImportResult:
    key: str
    outcome: str
    message: str = ""
    record_id: str = ""


@dataclass
class ImportSummary:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        (Outcome.IMPORTED, Outcome.SKIPPED, Outcome.REFUSED, Outcome.ANALYSIS_FAILED), 0))
    problems: list[ImportResult] = field(default_factory=list)
    # Listed in the manifest, absent from the archive (PTB-XL's copy here leaves out fold 10 on purpose).
    missing: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, result: ImportResult) -> None:
        self.counts[result.outcome] += 1
        if result.outcome in (Outcome.REFUSED, Outcome.ANALYSIS_FAILED):
            self.problems.append(result)

    @property
    def ecg_per_s(self) -> float:
        return self.counts[Outcome.IMPORTED] / self.seconds if self.seconds else 0.0


# ---------------------------------------------------------------------------------------------------------------
# The archive: a folder or a zip, grouped into uploads.


def _group(paths: list[PurePosixPath], skip: set[str]) -> dict[str, list[PurePosixPath]]:
    """key -> the paths of one upload: a .hea with its signal files, every other accepted file alone. Signal files
    without a header stay an upload of their own, which the intake refuses with its reason."""
    heads = {p.with_suffix("").as_posix() for p in paths if p.suffix.lower() == ".hea"}
    groups: dict[str, list[PurePosixPath]] = {}
    others = []
    for p in sorted(paths):
        ext = p.suffix.lower().lstrip(".")
        if p.name.startswith(".") or p.name.lower() in skip or ext not in UPLOAD_EXTENSIONS:
            continue
        key = p.with_suffix("").as_posix()
        if key in heads and (ext == "hea" or ext in WFDB_SIGNAL_EXTENSIONS):
            groups.setdefault(key, []).append(p)
        else:
            others.append(p)
    for p in others:  # keyed by name without extension, unless another upload has that name
        key = p.with_suffix("").as_posix()
        groups[p.as_posix() if key in groups else key] = [p]
    return groups


def archive_uploads(path: Path, *, skip: set[str] = frozenset()) -> dict[str, ArchiveUpload]:
    """The uploads in a folder (any depth) or a zip file, by key. Files of types the intake does not read (a
    README, a PDF report) and PTB-XL's metadata files are left out; ``skip`` names more files to leave out."""
    skip = {s.lower() for s in skip} | PTBXL_METADATA
    if path.is_dir():
        paths = [PurePosixPath(p.relative_to(path).as_posix()) for p in path.rglob("*") if p.is_file()]

        def reader(members: list[PurePosixPath]):
            return lambda: {m.name: (m.name, (path / m).read_bytes()) for m in members}
    elif zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        paths = [PurePosixPath(i.filename) for i in archive.infolist() if not i.is_dir()]

        def reader(members: list[PurePosixPath]):
            return lambda: {m.name: (m.name, archive.read(m.as_posix())) for m in members}
    else:
        raise ApplicationError(f"{path} is neither a folder nor a zip file.", "path")
    return {key: ArchiveUpload(key, tuple(m.as_posix() for m in members), reader(members))
            for key, members in _group(paths, skip).items()}


# ---------------------------------------------------------------------------------------------------------------
# The manifest: who each file's patient is.


def _manifest_key(name: str) -> str:
    p = PurePosixPath(name.strip().replace("\\", "/").removeprefix("./"))
    return p.with_suffix("").as_posix() if p.suffix.lower().lstrip(".") in UPLOAD_EXTENSIONS else p.as_posix()


def _age(text: str, *, ptbxl: bool = False) -> int | None:
    text = (text or "").strip()
    if not text:
        return None
    years = int(float(text))
    return PTBXL_AGE_STORED if ptbxl and years == PTBXL_AGE_OVER_89 else years


def manifest_read(path: Path, *, ptbxl_rate: int = 100) -> dict[str, PatientFacts]:
    """key -> patient, from a CSV with columns file, patient, age, sex (sex M/F/U or male/female/unknown; age
    blank when unknown), or PTB-XL's ptbxl_database.csv (ecg_id, patient_id, age, sex, filename_lr/filename_hr:
    ``ptbxl_rate`` 100 or 500 says which records it lists). In the file's order. ApplicationError for a manifest
    this cannot read."""
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ApplicationError(f"The manifest {path} cannot be read: {exc}", "manifest") from exc
    columns = set(rows[0]) if rows else set()
    out: dict[str, PatientFacts] = {}
    try:
        if {"ecg_id", "patient_id", "filename_lr", "filename_hr"} <= columns:
            column = "filename_lr" if ptbxl_rate == 100 else "filename_hr"
            for row in rows:
                out[_manifest_key(row[column])] = PatientFacts(
                    f"ptbxl-{int(float(row['patient_id']))}", _age(row["age"], ptbxl=True),
                    PTBXL_SEX.get(row["sex"].strip(), Patient.Sex.UNKNOWN))
        elif {"file", "patient"} <= columns:
            for row in rows:
                sex = (row.get("sex") or "").strip().lower()
                if sex not in SEX_WORDS:
                    raise ValueError(f"sex {row.get('sex')!r} of {row['file']!r} is not M, F or U")
                out[_manifest_key(row["file"])] = PatientFacts(row["patient"].strip(), _age(row.get("age", "")),
                                                               SEX_WORDS[sex])
        else:
            raise ValueError("it needs the columns file, patient, age and sex (or is PTB-XL's ptbxl_database.csv)")
    except (ValueError, KeyError, TypeError) as exc:
        raise ApplicationError(f"The manifest {path} cannot be used: {exc}", "manifest") from exc
    return out


def file_pseudonym(patient_id: str) -> str:
    """A pseudonym for an id an export file states (a hospital number, say), keyed with this installation's
    secret: the same id gives the same pseudonym here, so one patient's ECGs stay together, and the id itself is
    never stored. (Rotating SECRET_KEY starts new pseudonyms for the same ids.)"""
    mac = hmac.new(settings.SECRET_KEY.encode(), b"ecg_import patient id:" + patient_id.encode(), hashlib.sha256)
    return f"imp-{mac.hexdigest()[:20]}"


def _patient(upload: ArchiveUpload, files: dict, manifest: dict[str, PatientFacts] | None) -> PatientFacts:
    if manifest is not None:
        facts = manifest.get(upload.key)
        if facts is not None:
            return facts
    stated = stated_patient(files)
    if not stated.patient_id:
        raise ApplicationError("No patient for this file: it states no patient id and the manifest does not list it. "
                               "Add it to a manifest (columns file, patient, age, sex) and import again.", "patient")
    return PatientFacts(file_pseudonym(stated.patient_id), stated.age, stated.sex or Patient.Sex.UNKNOWN)


# ---------------------------------------------------------------------------------------------------------------
# The import.


def ecg_import_one(*, actor, upload: ArchiveUpload, manifest: dict[str, PatientFacts] | None, inline: bool,
                   evidence: bool = False, fs: float | None = None) -> ImportResult:
    """Import one upload: skipped when this actor already stored its bytes, else submitted as an upload is (and
    audited so; a refusal too), then analysed here (``inline``) or queued to the workers."""
    try:
        files = upload.read()
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        return ImportResult(upload.key, Outcome.REFUSED, f"The file cannot be read: {exc}")
    digest = services.upload_sha256(files)
    done = EcgRecord.objects.filter(uploaded_by=actor, upload_sha256=digest).values_list("public_id", flat=True)
    if seen := done.first():
        return ImportResult(upload.key, Outcome.SKIPPED, record_id=str(seen))
    try:
        facts = _patient(upload, files, manifest)
        record = services.ecg_submit(actor=actor, pseudonym=facts.pseudonym, age=facts.age, sex=facts.sex,
                                     files=files, fs=fs, evidence=evidence, queue_inference=not inline)
    except ApplicationError as exc:
        return ImportResult(upload.key, Outcome.REFUSED, f"{exc.field}: {exc.message}" if exc.field else exc.message)
    except Exception as exc:  # a reader's bug on one odd file must not stop the other thousands
        log.exception("import of %s failed", upload.key)
        return ImportResult(upload.key, Outcome.REFUSED, f"Unexpected error ({type(exc).__name__}): {exc}")
    if inline:
        job_id = InferenceJob.objects.filter(record=record).values_list("pk", flat=True).get()
        try:
            job = services.inference_run(job_id=job_id)
        except Exception as exc:  # as the worker's task does: the job says why, and Retry works
            job = services.inference_fail(job_id=job_id, error=f"{type(exc).__name__}: {exc}")
        if job.state != InferenceJob.State.DONE:
            return ImportResult(upload.key, Outcome.ANALYSIS_FAILED, job.error, str(record.public_id))
        if evidence:  # inline means no worker is assumed: the evidence (sent to its queue too) is computed here
            pending = Prediction.objects.filter(record=record, evidence_state=Prediction.EvidenceState.PENDING)
            for prediction_id in pending.values_list("pk", flat=True):
                try:
                    services.evidence_compute(prediction_id=prediction_id)
                except Exception as exc:  # the result stands without its evidence
                    services.evidence_fail(prediction_id=prediction_id, error=f"{type(exc).__name__}: {exc}")
    return ImportResult(upload.key, Outcome.IMPORTED, record_id=str(record.public_id))


def ecg_import(*, actor, path: Path, manifest_path: Path | None = None, ptbxl_rate: int = 100, inline: bool = False,
               evidence: bool = False, fs: float | None = None, limit: int | None = None,
               progress: Callable[[Iterator, int], Iterator] = lambda it, total: it,
               on_result: Callable[[ImportResult], None] = lambda result: None) -> ImportSummary:
    """Import an archive (see the module's docstring). With a manifest, the files it lists that the archive holds,
    in its order (those it lacks are counted as missing); without one, every upload in the archive. ``limit``: the
    first N of these. ``progress`` wraps the iteration (a progress bar); ``on_result`` hears each file's result.
    The run itself is audited ("ecg.import") with its counts."""
    if manifest_path is None and path.is_dir() and (path / PTBXL_DATABASE).is_file():
        manifest_path = path / PTBXL_DATABASE  # a PTB-XL folder carries its own manifest
    manifest = manifest_read(manifest_path, ptbxl_rate=ptbxl_rate) if manifest_path else None
    uploads = archive_uploads(path, skip={manifest_path.name} if manifest_path else set())
    summary = ImportSummary()
    keys = list(manifest) if manifest is not None else sorted(uploads)
    summary.missing = [k for k in keys if k not in uploads]
    keys = [k for k in keys if k in uploads]
    keys = keys[:limit] if limit is not None else keys
    started = time.perf_counter()
    for key in progress(iter(keys), len(keys)):
        result = ecg_import_one(actor=actor, upload=uploads[key], manifest=manifest, inline=inline,
                                evidence=evidence, fs=fs)
        summary.add(result)
        on_result(result)
    summary.seconds = time.perf_counter() - started
    audit_log(actor=actor, action=AuditAction.ECG_IMPORT, object_type="Archive", object_id=path.name[:64],
              details={"path": str(path), "manifest": str(manifest_path or ""), "inline": inline,
                       "evidence": evidence, "counts": summary.counts, "missing": len(summary.missing),
                       "seconds": round(summary.seconds, 1),
                       "refused": [r.key for r in summary.problems][:200]})
    return summary
