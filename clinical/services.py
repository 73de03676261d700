"""Clinical writes. Each function changes state and writes its audit event in the same transaction."""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from clinical import compact, metrics, reviews
from clinical import measurements as ecg_measures
from clinical.audit import AuditAction, audit_log
from clinical.errors import ApplicationError
from clinical.intake import parse_upload, shown
from clinical.models import (
    EcgRecord,
    Finding,
    IdempotencyKey,
    InferenceJob,
    Patient,
    Prediction,
    Recommendation,
)
from clinical.recommend import MODELS_DISAGREE, FindingInput, QualityInput, RankedAction, rank_actions
from mlcore.features import intake_features
from mlcore.labels import STATEMENT_RULE_KEY, SUPERCLASS_KEY, SUPERCLASS_NAMES, LabelSpace
from mlcore.window import WindowChoice, WindowError, choose_window, crop, user_window

if TYPE_CHECKING:  # mlcore.ensemble imports torch: pages and forms that import this module do without it
    from mlcore.ensemble import EnsembleOutput

log = logging.getLogger(__name__)

PSEUDONYM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$")
# Evidence is computed for the top findings only: they share one batched backward pass whose cost grows with
# the batch (about 12 ms per finding for three members on one thread).
MAX_EXPLAINED = 5
STALE_QUEUED = timedelta(minutes=2)
STALE_RUNNING = timedelta(minutes=10)
# Evidence waits behind every analysis (its queue is taken last): only a long wait means its message was lost.
STALE_EVIDENCE = timedelta(minutes=15)
# A job whose analysis was started this many times without finishing (each time the worker died, e.g. an input
# that crashes the model code) is failed with the reason instead of being handed to yet another worker.
# Above run_inference's transient-error retries (4 runs), so those still get their own message.
MAX_ATTEMPTS = 5
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def _enqueue(job: InferenceJob) -> None:
    transaction.on_commit(lambda: _send(job.id))


def _send(job_id: int) -> None:
    """Hand a committed job to the broker. If the broker is down the upload still stands: the job is marked as
    not sent (enqueued_at NULL, our outbox) and the sweeper (jobs_requeue_stale, every 30 s) sends it once the
    broker is back. The publish retries briefly so that a person's upload is not held up by an outage."""
    from clinical.tasks import run_inference  # tasks import services

    try:
        run_inference.apply_async((job_id,), retry=True, retry_policy=PUBLISH_RETRY)
    except Exception as exc:  # kombu / redis connection errors; anything else is just as unsendable
        log.warning("broker unavailable, job %s kept for the sweeper: %s", job_id, exc)
        InferenceJob.objects.filter(pk=job_id, state=InferenceJob.State.QUEUED).update(
            enqueued_at=None, stage="Waiting for the message queue (it will be sent when it is back)")


def upload_sha256(files: dict[str, tuple[str, bytes]]) -> str:
    """SHA-256 of an upload's file bytes (in name order), as EcgRecord.upload_sha256 stores it: what a bulk import
    keys on to skip what is already in."""
    return hashlib.sha256(b"".join(data for _, data in sorted(files.values()))).hexdigest()


def ecg_submit(*, actor, pseudonym: str, age: int | None, sex: str, files: dict[str, tuple[str, bytes]],
               fs: float | None, idempotency_key: str = "", window_start_s: float | None = None,
               evidence: bool = True, queue_inference: bool = True, document: object = None) -> EcgRecord:
    """Parse, quality-check and store an upload, then queue its inference.

    The model reads 10 s: of a longer record, the cleanest 10 s by signal quality (mlcore.window), or the 10 s
    from ``window_start_s`` when the uploader gives it. The quality gate and the intake features read that window.

    On error nothing clinical is stored; the refusal itself is audited (who, when, which files, why).
    With an ``idempotency_key`` already used by this actor for the same request (patient fields and file bytes),
    the first submission's record is returned and nothing new is stored, also when two retries race; the same
    key with a different request is refused (code "idempotency_mismatch").

    ``evidence=False`` stores a job whose analysis computes no Grad-CAM evidence (a bulk import: evidence costs
    several times the prediction and nobody is looking at an archive's ECG now). ``queue_inference=False`` sends
    no message to the workers: the caller runs ``inference_run`` itself (an inline import); should it die first,
    the sweeper sends the still-queued job (jobs_requeue_stale). ``document``: the one .json file of ``files``
    already parsed (the API's JSON body), read instead of parsing its bytes again.
    """
    digest = upload_sha256(files)
    request_sha256 = (submission_sha256(pseudonym=pseudonym, age=age, sex=sex, fs=fs, files=files,
                                        window_start_s=window_start_s) if idempotency_key else "")
    try:
        if idempotency_key:
            seen = IdempotencyKey.objects.filter(user=actor, key=idempotency_key).select_related(
                "record__patient").first()
            if seen:
                return _replay(seen, request_sha256=request_sha256, digest=digest, pseudonym=pseudonym)
        try:
            return _ecg_submit(actor=actor, pseudonym=pseudonym, age=age, sex=sex, files=files, fs=fs,
                               digest=digest, idempotency_key=idempotency_key, request_sha256=request_sha256,
                               window_start_s=window_start_s, evidence=evidence, queue_inference=queue_inference,
                               document=document)
        except IntegrityError:
            if not idempotency_key:
                raise
            seen = IdempotencyKey.objects.select_related("record__patient").get(user=actor, key=idempotency_key)
            return _replay(seen, request_sha256=request_sha256, digest=digest, pseudonym=pseudonym)
    except ApplicationError as exc:
        audit_log(actor=actor, action=AuditAction.ECG_UPLOAD_REFUSED, object_type="Upload",
                  object_id=digest[:16],
                  details={"field": exc.field, "reason": exc.message,
                           # as the client sent them (folders too: evidence of a traversal attempt), but escaped:
                           # jsonb cannot hold a NUL, and a control character must not reach the audit page raw
                           "files": sorted(shown(name, 200) for name, _ in files.values())})
        raise


IDEMPOTENCY_MISMATCH = ("This Idempotency-Key was already used with a different request (another patient or other "
                        "ECG data). A retry must repeat the first request exactly; use a new key for a new "
                        "submission.")


def submission_sha256(*, pseudonym: str, age: int | None, sex: str, fs: float | None,
                      files: dict[str, tuple[str, bytes]], window_start_s: float | None = None) -> str:
    """SHA-256 of what a submission asks for: the patient fields, the sampling rate, the window asked for (if any),
    each file's name and bytes.

    Every part is length-prefixed, so no two different requests share an encoding. A submission without a window
    hashes as it did before windows could be asked for, so stored keys still match their retries.
    """
    h = hashlib.sha256()
    asked = {"pseudonym": pseudonym, "age": age, "sex": sex, "fs": fs}
    if window_start_s is not None:
        asked["window_start_s"] = window_start_s
    fields = json.dumps(asked, sort_keys=True).encode()
    h.update(b"%d:%s" % (len(fields), fields))
    for name, data in sorted(files.values()):
        raw = name.encode("utf-8", "surrogatepass")
        h.update(b"%d:%s%d:" % (len(raw), raw, len(data)))
        h.update(data)
    return h.hexdigest()


def _replay(seen: IdempotencyKey, *, request_sha256: str, digest: str | None = None,
            pseudonym: str = "") -> EcgRecord:
    """The record a repeated key stands for, if the request is the one the key was first used with.

    ``digest`` (the upload's file bytes) matches a key stored before requests were hashed, always an upload's; a
    re-analysis passes none, so such a key never stands for one."""
    if seen.request_sha256:
        same = seen.request_sha256 == request_sha256
    elif digest is None:
        same = False
    else:  # stored before requests were hashed: the same files for the same patient
        same = seen.record.upload_sha256 == digest and seen.record.patient.pseudonym == (pseudonym or "").strip()
    if not same:
        raise ApplicationError(IDEMPOTENCY_MISMATCH, "Idempotency-Key", code="idempotency_mismatch")
    return seen.record


def _ecg_submit(*, actor, pseudonym: str, age: int | None, sex: str, files: dict[str, tuple[str, bytes]],
                fs: float | None, digest: str, idempotency_key: str, request_sha256: str,
                window_start_s: float | None, evidence: bool = True, queue_inference: bool = True,
                document: object = None) -> EcgRecord:
    pseudonym = (pseudonym or "").strip()
    if not PSEUDONYM.match(pseudonym):
        raise ApplicationError("Use 2-64 letters, digits, '.', '_' or '-' (a pseudonymous id, never a name).",
                               "pseudonym")
    if age is not None and not 0 <= age <= 120:  # None: the uploader said the age is unknown
        raise ApplicationError("Age must be a whole number of years between 0 and 120, or unknown.", "age")
    if sex not in Patient.Sex.values:
        raise ApplicationError("Choose male, female or unknown.", "sex")
    parsed = parse_upload(files=files, fs=fs, document=document)  # IntakeError: an ApplicationError on its field
    window, quality, features, measured = _analyse_window(parsed.signal, parsed.fs, window_start_s)
    with transaction.atomic():
        patient, created = Patient.objects.get_or_create(pseudonym=pseudonym, defaults={"age": age, "sex": sex})
        # "Unknown" at this upload never erases what an earlier one knew (the record keeps its own age_at_ecg).
        known = (age if age is not None else patient.age, sex if sex != Patient.Sex.UNKNOWN else patient.sex)
        before = {"age": patient.age, "sex": patient.sex}
        if not created and (patient.age, patient.sex) != known:
            patient.age, patient.sex = known
            patient.save(update_fields=["age", "sex"])
        # Each ECG keeps the age and sex given with it: what its pages and the monitoring read.
        record = EcgRecord.objects.create(
            patient=patient, age_at_ecg=age, sex_at_ecg=sex, uploaded_by=actor, source_format=parsed.source_format,
            source_files=sorted(name for name, _ in files.values()), upload_sha256=digest, fs=parsed.fs,
            n_samples=parsed.n_samples, **EcgRecord.signal_fields(parsed.signal),
            quality=quality, features=features, device=_jsonable(parsed.device),
            intake_notes=[str(n) for n in parsed.notes], measurements=measured, window_start_s=window.start_s,
            window_chosen_by=window.chosen_by,
        )
        job = InferenceJob.objects.create(record=record, enqueued_at=timezone.now(), stage="Waiting for a worker",
                                          with_evidence=evidence)
        if idempotency_key:  # unique per actor: a concurrent retry with the same key fails here and rolls back
            IdempotencyKey.objects.create(user=actor, key=idempotency_key, record=record,
                                          request_sha256=request_sha256)
        changed = [] if created else [k for k in ("age", "sex") if getattr(patient, k) != before[k]]
        if changed:  # a shared patient's stored demographics: who changed them, from what, with which ECG
            audit_log(actor=actor, action=AuditAction.PATIENT_CHANGE, object_type="Patient", object_id=pseudonym,
                      details={"old": {k: before[k] for k in changed}, "new": {k: getattr(patient, k) for k in changed},
                               "ecg": str(record.public_id)})
        audit_log(actor=actor, action=AuditAction.ECG_UPLOAD, object_type="EcgRecord", object_id=record.public_id,
                  details={"patient": pseudonym, "format": parsed.source_format, "fs": parsed.fs,
                           "seconds": round(parsed.duration_s, 2), "sha256": digest,
                           "window": _window_audit(window),
                           "quality_warnings": [i.code for i in window.quality.warnings()]})
        if queue_inference:
            _enqueue(job)
    return record


def _window(signal: np.ndarray, fs: float, start_s: float | None) -> WindowChoice:
    """The analysed window: the one asked for, else the cleanest (ApplicationError on field "window_start_s")."""
    if start_s is None:
        return choose_window(signal, fs)
    try:
        return user_window(signal, fs, start_s)
    except WindowError as exc:
        raise ApplicationError(str(exc), "window_start_s") from exc


def _analyse_window(signal: np.ndarray, fs: float, start_s: float | None) -> tuple[WindowChoice, dict, dict, dict]:
    """What upload and re-analysis store of the analysed window: the window, the quality report (saying which window
    it judged), the intake features and this system's measurements; a ApplicationError when it cannot be analysed."""
    window = _window(signal, fs, start_s)
    span = f"{window.start_s:.1f}–{window.end_s:.1f} s of {window.record_s:.1f} s"
    if not window.quality.usable:
        reasons = " ".join(i.message for i in window.quality.refusals())
        if window.record_s <= window.end_s - window.start_s:  # the record is its own window
            raise ApplicationError(f"This ECG cannot be analysed: {reasons} {window.quality.next_step()}", "file")
        if window.chosen_by == "user":
            raise ApplicationError(f"This ECG cannot be analysed at {span}: {reasons} Choose another start.",
                                   "window_start_s")
        raise ApplicationError(f"This ECG cannot be analysed: no 10 s of the {window.record_s:.1f} s recording is "
                               f"clean enough. The cleanest ({span}): {reasons} {window.quality.next_step()}", "file")
    quality = {**window.quality.to_dict(), "window": window.to_dict()}
    samples = crop(signal, fs, window.start_s)
    return window, quality, intake_features(samples, fs, window.quality), ecg_measures.ecg_measurements(samples, fs)


def _window_audit(window: WindowChoice) -> dict:
    return {"start_s": window.start_s, "end_s": window.end_s, "chosen_by": window.chosen_by}


def ecg_reanalyse(*, actor, record: EcgRecord, window_start_s: float, idempotency_key: str = "") -> EcgRecord:
    """Analyse another 10 s of a stored ECG: a new record (same patient, signal and upload facts, ``reanalysis_of``
    the original) with its own job, so the original result, perhaps already reviewed, stays as it was.

    The caller has checked that ``actor`` may upload and may see ``record``. A start outside the record or a
    window the quality gate refuses is a ApplicationError on "window_start_s", and nothing is stored. An
    ``idempotency_key`` works as on upload: the same key for the same request returns the first re-analysis.
    """
    origin = record.reanalysis_of or record  # a re-analysis of a re-analysis points at the first upload
    request_sha256 = ""
    if idempotency_key:
        asked = json.dumps({"reanalyse": str(record.public_id), "window_start_s": window_start_s}, sort_keys=True)
        request_sha256 = hashlib.sha256(asked.encode()).hexdigest()
        seen = IdempotencyKey.objects.filter(user=actor, key=idempotency_key).select_related("record").first()
        if seen:
            return _replay(seen, request_sha256=request_sha256)
    window, quality, features, measured = _analyse_window(record.signal_array(), record.fs, window_start_s)
    try:
        with transaction.atomic():
            new = EcgRecord.objects.create(
                patient=record.patient, age_at_ecg=record.age_at_ecg, sex_at_ecg=record.sex_at_ecg, uploaded_by=actor,
                source_format=record.source_format, source_files=record.source_files,
                upload_sha256=record.upload_sha256, fs=record.fs, n_samples=record.n_samples, signal=record.signal,
                signal_encoding=record.signal_encoding, quality=quality, features=features, device=record.device,
                intake_notes=record.intake_notes,
                measurements=measured, window_start_s=window.start_s, window_chosen_by=window.chosen_by,
                reanalysis_of=origin,
            )
            job = InferenceJob.objects.create(record=new, enqueued_at=timezone.now(), stage="Waiting for a worker")
            if idempotency_key:  # a concurrent retry with the same key fails here and returns the winner's record
                IdempotencyKey.objects.create(user=actor, key=idempotency_key, record=new,
                                              request_sha256=request_sha256)
            audit_log(actor=actor, action=AuditAction.ECG_REANALYSE, object_type="EcgRecord", object_id=new.public_id,
                      details={"reanalysis_of": str(origin.public_id), "from": str(record.public_id),
                               "patient": record.patient.pseudonym, "window": _window_audit(window),
                               "quality_warnings": [i.code for i in window.quality.warnings()]})
            _enqueue(job)
    except IntegrityError:
        if not idempotency_key:
            raise
        seen = IdempotencyKey.objects.select_related("record").get(user=actor, key=idempotency_key)
        return _replay(seen, request_sha256=request_sha256)
    return new


def members_disagree(pred, labels, n_members: int) -> set[tuple[str, int]]:
    """(head, index) of the labels of the first ECG in ``pred`` on which the ensemble members disagree: some of them,
    not all, have their own calibrated probability at or above the label's threshold."""
    out = set()
    for head, codes in (("superclass", labels.superclasses), ("statements", labels.statements)):
        above = getattr(pred, f"{head}_members_above")[0]
        out |= {(head, j) for j in range(len(codes)) if 0 < above[j] < n_members}
    return out


def _jsonable(value):
    """A reader's device dict as JSON can hold it: numpy numbers as numbers, anything else as (short) text."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None  # JSON (and PostgreSQL's jsonb) has no NaN or infinity
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value).replace("\x00", "")[:2000]  # jsonb holds no NUL; a device field is a short text


@functools.lru_cache(maxsize=4)
def _statement_names(weights_dir: str) -> dict[str, str]:
    manifest = json.loads((Path(weights_dir) / "manifest.json").read_text())
    return {c: d[:1].upper() + d[1:] for c, d in (manifest["labels"].get("descriptions") or {}).items()}


def statement_names() -> dict[str, str]:
    """Statement code -> its description, capitalised, from the model's manifest (no torch: for pages and forms)."""
    from monitoring.registry import serving_weights_dir

    return _statement_names(serving_weights_dir())


def get_model():
    """The served ensemble with its manifest's calibration: the version compliance promoted (monitoring.registry;
    the image's weights while none is registered), loaded once per process and version."""
    from mlcore.ensemble import load_cached
    from monitoring.registry import serving_weights_dir  # monitoring reads clinical's models

    return load_cached(serving_weights_dir(), settings.ECG_TORCH_THREADS)


def get_ensemble():
    """The served ensemble under the calibration in force: a site version activated by compliance staff, else the
    manifest's own (monitoring.calibration)."""
    from monitoring.calibration import ensemble_calibrated  # monitoring reads clinical's models

    return ensemble_calibrated(get_model())


def _round(a: np.ndarray, digits: int = 3) -> list:
    return np.round(np.asarray(a, dtype=np.float64), digits).tolist()


@dataclass(frozen=True)
class Candidate:
    """A label the ensemble flagged on this ECG: a Finding row once stored, and an input to the action table."""

    head: str  # the model's head, as Finding.head stores it: "superclass" or "statements"
    code: str
    display: str
    probability: float
    threshold: float
    spread: float
    disputed: bool  # some ensemble members, not all, reach the threshold

    @property
    def finding_key(self) -> str:
        return f"{self.head}:{self.code}"  # "superclass:MI", "statements:AFIB" (stored in the audit details)

    @property
    def rule_key(self) -> str:
        return (SUPERCLASS_KEY if self.head == "superclass" else STATEMENT_RULE_KEY) + self.code


@dataclass(frozen=True)
class Analysis:
    """What the ensemble, the measurements and the action table made of one ECG: everything inference_run stores."""

    model_version: str
    calibration_version: str
    operating_points: dict
    labels: LabelSpace
    output: EnsembleOutput  # the batch of one ECG
    candidates: list[Candidate]  # superclasses first, then statements, each by confidence
    by_measurement: list[dict]  # criteria met by this system's measurements (clinical.measurements.statements)
    actions: list[RankedAction]  # ranked; never empty
    needs_review: bool
    elapsed_ms: float


def inference_run(*, job_id: int) -> InferenceJob:
    """Run the ensemble on a queued job's ECG and store prediction, findings and actions. Idempotent.

    Three steps: claim the job (one commit), analyse its ECG (no database write), store the result (one commit)."""
    job = _inference_claim(job_id=job_id)
    if job.state != InferenceJob.State.RUNNING:  # done already, or failed for having crashed too often
        return job
    cpu_started = time.process_time()
    return _inference_store(job=job, analysis=_inference_analyse(job.record, get_ensemble()), cpu_started=cpu_started)


def _inference_claim(*, job_id: int) -> InferenceJob:
    """The job marked running by this worker; or, untouched, a finished job; or failed, one that crashed too often."""
    with transaction.atomic():
        job = InferenceJob.objects.select_for_update().select_related("record").get(pk=job_id)
        if job.state in (InferenceJob.State.DONE, InferenceJob.State.FAILED):
            return job
        crashed = job.attempts >= MAX_ATTEMPTS
        if not crashed:
            # One write for the claim: loading the model takes ~0.1 s once per worker, so a stage of its own was a
            # second commit per ECG that nobody saw.
            job.state, job.progress, job.stage = InferenceJob.State.RUNNING, 30, "Running the ensemble"
            job.attempts += 1
            job.started_at, job.error = timezone.now(), ""
            job.save()
            if job.enqueued_at:
                metrics.QUEUE_WAIT_SECONDS.observe((job.started_at - job.enqueued_at).total_seconds())
    if crashed:
        return inference_fail(job_id=job_id, error=(
            f"The analysis of this ECG was started {job.attempts} times and never finished (the worker process "
            "stopped each time), so it was not tried again. Check the recording, then use Retry."))
    return job


def _inference_analyse(record: EcgRecord, ens) -> Analysis:
    """The ensemble's findings on the analysed window, the measurement criteria and the ranked actions: ``ens`` the
    serving ensemble (get_ensemble), or a shadow version's (monitoring.shadow) on the same code path."""
    started = time.perf_counter()
    signal = record.window_array()  # (12, m) mV: the analysed 10 s at the record's own rate
    pred = ens.predict([signal], record.fs)
    labels = ens.labels

    candidates: list[Candidate] = []
    disputed = members_disagree(pred, labels, len(ens.members))
    disputed_absent = []  # not flagged, yet a member is above the threshold: a possible miss
    for j, code in enumerate(labels.superclasses):
        if pred.superclass_flags[0, j]:
            candidates.append(Candidate("superclass", code, SUPERCLASS_NAMES.get(code, code),
                                        float(pred.superclass[0, j]), float(ens.threshold["superclass"][j]),
                                        float(pred.superclass_spread[0, j]), ("superclass", j) in disputed))
        elif ("superclass", j) in disputed:
            disputed_absent.append(f"{SUPERCLASS_KEY}{code}")
    for j, code in enumerate(labels.statements):
        # The NORM statement repeats the NORM class; listing both would read as two findings.
        if pred.statements_flags[0, j] and code not in labels.superclasses:
            text = labels.descriptions.get(code, code)
            candidates.append(Candidate("statements", code, text[:1].upper() + text[1:],
                                        float(pred.statements[0, j]), float(ens.threshold["statements"][j]),
                                        float(pred.statements_spread[0, j]), ("statements", j) in disputed))
        elif not pred.statements_flags[0, j] and ("statements", j) in disputed:
            disputed_absent.append(f"{STATEMENT_RULE_KEY}{code}")
    # Superclasses first, then statements, each by confidence.
    candidates.sort(key=lambda c: (c.head != "superclass", -c.probability))

    # Criteria met by this system's measurements: findings of their own, after the model's, and inputs to the
    # action table like the model's (a STEMI by measurement is as immediate as one by the model).
    by_measurement = ecg_measures.statements(record.measurements, age=record.age_at_ecg, sex=record.sex_at_ecg)
    elapsed_ms = (time.perf_counter() - started) * 1000
    actions = rank_actions(
        [*(FindingInput(c.rule_key, c.probability, c.disputed) for c in candidates),
         *ecg_measures.action_inputs(by_measurement)],
        quality=[QualityInput(i["code"], i["message"], i.get("lead"))
                 for i in record.quality.get("issues", []) if i.get("severity") == "warn"],
        disputed_absent=disputed_absent)
    return Analysis(
        model_version=ens.version, calibration_version=ens.calibration_version,
        operating_points=ens.operating_points, labels=labels, output=pred, candidates=candidates,
        by_measurement=by_measurement, actions=actions,
        # "Needs review" only when the members disagree about a dangerous finding (the action table's caveat).
        needs_review=any(a.rule_id == MODELS_DISAGREE for a in actions), elapsed_ms=elapsed_ms)


def _inference_store(*, job: InferenceJob, analysis: Analysis, cpu_started: float) -> InferenceJob:
    """Prediction, findings and actions of a claimed job in one transaction with the job's end and its audit event;
    the job as it is if another delivery of the same message stored its result first."""
    a, pred, labels, top_action, record = analysis, analysis.output, analysis.labels, analysis.actions[0], job.record
    # The result does not wait for its evidence (issue 17): the backward pass for the top findings costs several
    # forward passes, so it runs afterwards on the "evidence" queue (evidence_compute) and the page shows it when
    # it arrives. A job stored without evidence (a bulk import) asks for none.
    if not job.with_evidence:
        evidence_state = Prediction.EvidenceState.OFF
    elif a.candidates:
        evidence_state = Prediction.EvidenceState.PENDING
    else:  # nothing flagged, nothing to explain
        evidence_state = Prediction.EvidenceState.READY
    with transaction.atomic():
        job = InferenceJob.objects.select_for_update().get(pk=job.pk)
        if job.state == InferenceJob.State.DONE:  # another delivery of the same message won the race
            return job
        Prediction.objects.filter(record=record).delete()
        prediction = Prediction.objects.create(
            record=record, model_version=a.model_version,
            superclass=dict(zip(labels.superclasses, _round(pred.superclass[0], 4))),
            statements=dict(zip(labels.statements, _round(pred.statements[0], 4))),
            spread={"superclass": dict(zip(labels.superclasses, _round(pred.superclass_spread[0], 4))),
                    "statements": dict(zip(labels.statements, _round(pred.statements_spread[0], 4)))},
            operating_points=a.operating_points, calibration_version=a.calibration_version,
            embedding=_round(pred.embedding[0], 4), evidence_state=evidence_state,
            evidence_queued_at=timezone.now() if evidence_state == Prediction.EvidenceState.PENDING else None,
            needs_review=a.needs_review,
            top_urgency=top_action.urgency,
            inference_ms=round(a.elapsed_ms, 1),
        )
        Finding.objects.bulk_create([
            Finding(prediction=prediction, head=c.head, code=c.code, display=c.display, probability=c.probability,
                    threshold=c.threshold, spread=c.spread, needs_review=c.disputed, rank=i)
            for i, c in enumerate(a.candidates)] + [
            Finding(prediction=prediction, head=Finding.Head.MEASUREMENT, code=st["code"], display=st["text"][:128],
                    probability=None, threshold=None, spread=None, rank=len(a.candidates) + i)
            for i, st in enumerate(a.by_measurement)])
        Recommendation.objects.bulk_create([
            Recommendation(prediction=prediction, rank=i, action=r.action, urgency=r.urgency, reasoning=r.reasoning,
                           source=r.source, triggered_by=r.triggered_by, confidence=r.confidence,
                           table_version=r.table_version, kind=r.kind, rule_id=r.rule_id)
            for i, r in enumerate(a.actions)])
        top = int(np.argmax(pred.superclass[0]))
        transaction.on_commit(lambda: _count_result(a.elapsed_ms, labels.superclasses[top],
                                                    float(pred.superclass[0, top]), top_action.urgency))
        job.state, job.progress, job.stage = InferenceJob.State.DONE, 100, "Done"
        job.finished_at = timezone.now()
        job.save()
        if prediction.top_urgency == Recommendation.Urgency.IMMEDIATE:  # at once, not after the escalation limit
            reviews.result_notify(prediction=prediction)
        audit_log(actor=None, action=AuditAction.INFERENCE_COMPLETE,
                  object_type="EcgRecord", object_id=record.public_id,
                  details={"model_version": a.model_version, "calibration_version": a.calibration_version,
                           "findings": [c.finding_key for c in a.candidates],
                           "measurements": {k: record.measurements.get(k) for k in ecg_measures.API_KEYS},
                           "measurement_version": record.measurements.get("version"),
                           "criteria": [st["code"] for st in a.by_measurement],
                           "top_urgency": top_action.urgency, "needs_review": a.needs_review,
                           "ms": round(a.elapsed_ms, 1)})
        if evidence_state == Prediction.EvidenceState.PENDING:
            transaction.on_commit(lambda: _send_evidence(prediction.pk))
        transaction.on_commit(lambda: _send_shadow(prediction.pk))
    metrics.WORKER_CPU_SECONDS.labels(step="analysis").observe(time.process_time() - cpu_started)
    return job


def _send_evidence(prediction_id: int) -> None:
    """Hand a committed result's evidence to the broker. If that fails the result stands without evidence
    ("pending" until the sweeper sends it again): evidence must never cost a result."""
    from clinical.tasks import compute_evidence  # tasks import services

    try:
        compute_evidence.apply_async((prediction_id,), retry=True, retry_policy=PUBLISH_RETRY)
    except Exception:
        log.exception("could not send the evidence of prediction %s; the sweeper will send it", prediction_id)


def _send_shadow(prediction_id: int) -> None:
    """With a version in shadow, hand the committed result to its own queue ("shadow"). Anything going wrong here is
    logged and nothing else: the shadow must never cost the serving result."""
    try:
        from monitoring.registry import shadow_version  # monitoring reads clinical's models
        from monitoring.tasks import shadow_inference

        version = shadow_version()
        if version is not None:
            shadow_inference.apply_async((version.pk, prediction_id), retry=True, retry_policy=PUBLISH_RETRY)
    except Exception:
        log.exception("could not send prediction %s to the shadow model", prediction_id)


def evidence_request(*, prediction: Prediction, actor) -> Prediction:
    """Evidence on demand: a result stored without it (an API submission that did not ask for it, an imported
    archive) gets it when someone first opens it, or when the API asks; then it is kept (issue 17: evidence on
    its own queue "or on first view, then cached"). Pending, ready or a stored failure: nothing to do, so a
    reload or a second reader never queues it twice (a failure is not retried by looking again: the sweeper
    and the task's retries already tried)."""
    with transaction.atomic():
        locked = Prediction.objects.select_for_update().select_related("record").get(pk=prediction.pk)
        if locked.evidence_state != Prediction.EvidenceState.OFF:
            return locked
        locked.evidence_state, locked.evidence_queued_at = Prediction.EvidenceState.PENDING, timezone.now()
        locked.save(update_fields=["evidence_state", "evidence_queued_at"])
        audit_log(actor=actor, action=AuditAction.INFERENCE_EVIDENCE_REQUESTED, object_type="EcgRecord",
                  object_id=locked.record.public_id, details={"model_version": locked.model_version})
        transaction.on_commit(lambda: _send_evidence(locked.pk))
    return locked


def evidence_compute(*, prediction_id: int) -> Prediction:
    """Grad-CAM and per-lead evidence for a stored result's top findings (the first MAX_EXPLAINED of the model's,
    in the result's own order), on the same window and ensemble. Idempotent: only a pending result is computed,
    and only the first delivery to finish stores its maps.

    Evidence is derived data, not a clinical decision: the findings, actions and review queue were fixed (and
    audited) when the result was stored, and the maps are recomputable from the stored signal and model version.
    It is still audited, because it changes what a reader is shown beside the findings."""
    prediction = Prediction.objects.select_related("record").get(pk=prediction_id)
    if prediction.evidence_state != Prediction.EvidenceState.PENDING:
        return prediction
    started, cpu_started = time.perf_counter(), time.process_time()
    ens = get_ensemble()
    if ens.version != prediction.model_version:  # a deploy between result and evidence: not this model's maps
        return evidence_fail(prediction_id=prediction_id,
                             error=f"the served model is {ens.version}, the result's is {prediction.model_version}")
    record = prediction.record
    targets = [(f.head, f.code) for f in prediction.findings.filter(
        head__in=(Finding.Head.SUPERCLASS, Finding.Head.STATEMENT)).order_by("rank")[:MAX_EXPLAINED]]
    signal = record.window_array()  # (12, m) mV: the analysed 10 s, as the prediction read it
    maps = {f"{head}:{code}": compact.Evidence(gradcam=ex.gradcam, lead_maps=ex.lead_maps,
                                              lead_relevance=ex.lead_relevance)
            for (head, code), ex in zip(targets, ens.explain_many(signal, record.fs, targets) if targets else [])}
    explanations, evidence = compact.evidence_encode(maps)
    elapsed_ms = (time.perf_counter() - started) * 1000
    with transaction.atomic():
        prediction = Prediction.objects.select_for_update().select_related("record").get(pk=prediction_id)
        if prediction.evidence_state != Prediction.EvidenceState.PENDING:  # another delivery stored it first
            return prediction
        prediction.explanations, prediction.evidence = explanations, evidence
        prediction.evidence_state, prediction.evidence_ms = Prediction.EvidenceState.READY, round(elapsed_ms, 1)
        prediction.evidence_at = timezone.now()
        prediction.save(update_fields=["explanations", "evidence", "evidence_state", "evidence_ms", "evidence_at"])
        audit_log(actor=None, action=AuditAction.INFERENCE_EVIDENCE, object_type="EcgRecord",
                  object_id=prediction.record.public_id,
                  details={"model_version": ens.version, "findings": list(maps), "ms": round(elapsed_ms, 1)})
    metrics.WORKER_CPU_SECONDS.labels(step="evidence").observe(time.process_time() - cpu_started)
    return prediction


def evidence_fail(*, prediction_id: int, error: str) -> Prediction:
    """The evidence could not be computed: say so on the result, which itself is left as it was."""
    with transaction.atomic():
        prediction = Prediction.objects.select_for_update().select_related("record").get(pk=prediction_id)
        if prediction.evidence_state != Prediction.EvidenceState.PENDING:
            return prediction
        prediction.evidence_state, prediction.evidence_at = Prediction.EvidenceState.FAILED, timezone.now()
        prediction.save(update_fields=["evidence_state", "evidence_at"])
        audit_log(actor=None, action=AuditAction.INFERENCE_EVIDENCE_FAILED, object_type="EcgRecord",
                  object_id=prediction.record.public_id, details={"error": error[:500]})
    return prediction


def _count_result(elapsed_ms: float, top_class: str, probability: float, urgency: str) -> None:
    metrics.INFERENCE_SECONDS.observe(elapsed_ms / 1000)
    metrics.PREDICTIONS.labels(superclass=top_class, urgency=urgency).inc()
    metrics.CONFIDENCE.observe(probability)


def inference_fail(*, job_id: int, error: str) -> InferenceJob:
    with transaction.atomic():
        job = InferenceJob.objects.select_for_update().select_related("record").get(pk=job_id)
        if job.state == InferenceJob.State.DONE:
            return job
        job.state, job.error, job.stage = InferenceJob.State.FAILED, error[:2000], "Failed"
        transaction.on_commit(metrics.JOB_FAILURES.inc)
        job.finished_at = timezone.now()
        job.save()
        audit_log(actor=None, action=AuditAction.INFERENCE_FAILED,
                  object_type="EcgRecord", object_id=job.record.public_id,
                  details={"error": error[:500], "attempts": job.attempts})
    return job


def inference_retry(*, job: InferenceJob, actor) -> InferenceJob:
    """Queue a failed job again (the retry button)."""
    with transaction.atomic():
        job = InferenceJob.objects.select_for_update().select_related("record").get(pk=job.pk)
        if job.state != InferenceJob.State.FAILED:
            raise ApplicationError("Only a failed analysis can be retried.")
        job.state, job.progress, job.stage, job.error = InferenceJob.State.QUEUED, 0, "Waiting for a worker", ""
        job.enqueued_at, job.attempts = timezone.now(), 0
        job.save()
        audit_log(actor=actor, action=AuditAction.INFERENCE_RETRY,
                  object_type="EcgRecord", object_id=job.record.public_id)
        _enqueue(job)
    return job


def jobs_requeue_stale(*, running_for: timedelta = STALE_RUNNING) -> int:
    """Send again the jobs whose message was lost: never sent (broker down at upload), queued for too long, or
    running on a worker that died. The only worker of an installation, when it starts, knows that every running
    job is orphaned and passes running_for=0 (monitoring.workers). Also the evidence of results pending for long.
    Returns the number of jobs sent again."""
    now = timezone.now()
    queued = InferenceJob.objects.filter(state=InferenceJob.State.QUEUED)
    stale = list(queued.filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=now - STALE_QUEUED))) + \
        list(InferenceJob.objects.filter(state=InferenceJob.State.RUNNING, started_at__lte=now - running_for))
    for job in stale:
        with transaction.atomic():
            InferenceJob.objects.filter(pk=job.pk).update(state=InferenceJob.State.QUEUED, enqueued_at=now,
                                                          stage="Waiting for a worker (re-sent)")
            _enqueue(job)
    # Evidence whose message was lost (broker down after the result was stored): sent again, at most once per
    # STALE_EVIDENCE; a duplicate finds the evidence stored and does nothing.
    lost = list(Prediction.objects.filter(evidence_state=Prediction.EvidenceState.PENDING,
                                          evidence_queued_at__lt=now - STALE_EVIDENCE).values_list("pk", flat=True))
    for prediction_id in lost:
        Prediction.objects.filter(pk=prediction_id).update(evidence_queued_at=now)
        _send_evidence(prediction_id)
    return len(stale)
