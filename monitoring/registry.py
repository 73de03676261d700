"""The model registry (issue 20): the versions of the ensemble this site can serve, imported verified, promoted with
a compliance sign-off, rolled back in one step.

A version is an export folder (`python -m training export`): manifest.json with each member's sha256, the members'
weights, calibration.json, the drift reference, fold-9 and evaluation reports, run records. Importing one checks every
member against the manifest, refuses an export made from a working tree with uncommitted changes (the run record's
git commit ends in "+dirty") or without a commit, proves it loads, and keeps its files in the database (ModelFile,
by sha256), so that every web and worker process, on any machine, serves the same bytes: each writes them once to
its own disk (ECGAPP_DATA_DIR/models/) and loads them from there.

Until a version is imported the registry is empty and the weights shipped in the image serve, as before. The first
import registers those too (state "serving", source "image", their files stored like any other), so that a later
image with other weights changes nothing: what serves is what compliance promoted.

Promotion and rollback are signed by re-entering the password. Under the two-person rule (ECGAPP_MODEL_TWO_PERSON,
on by default) a promotion waits for a second compliance user's signature; a rollback to the version that served
before does not (going back to an already-approved model must not wait for a second person at 3 a.m.); both are
audited. Every prediction already records the model and calibration version that made it.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from clinical.audit import AuditAction, audit_log
from clinical.errors import ApplicationError
from clinical.models import AuditEvent
from monitoring.models import ModelChange, ModelFile, ModelVersion

log = logging.getLogger(__name__)

PERMISSION = "monitoring.manage_models"
IMPORTED, REQUESTED = AuditAction.MODEL_IMPORT, AuditAction.MODEL_CHANGE_REQUEST
PROMOTED, ROLLED_BACK = AuditAction.MODEL_PROMOTE, AuditAction.MODEL_ROLLBACK
WITHDRAWN, SIGN_FAILED = AuditAction.MODEL_CHANGE_WITHDRAW, AuditAction.MODEL_SIGN_FAILED
SHADOW_STARTED, SHADOW_STOPPED = AuditAction.MODEL_SHADOW_START, AuditAction.MODEL_SHADOW_STOP
# What an export folder holds; anything else in it (a README, a notebook) is not part of the version.
EXPORT_SUFFIXES = (".json", ".pt", ".npz")
MAX_FILE_BYTES = 64 * 1024 * 1024  # a member is a few MB (DEVELOPERS: "keep each member small")
REPORT_MAX_BYTES = 256 * 1024  # JSON reports kept readable in the row (the manifest's drift reference is not)
MIN_REASON = 10
SIGN_FAILURES_ALLOWED, SIGN_FAILURE_WINDOW = 5, timedelta(minutes=15)
# Manifest keys kept in ModelVersion.manifest for the pages; the rest (the drift reference, the standardizer) stays
# in the stored file.
MANIFEST_SUMMARY_KEYS = ("model_version", "created_at", "git_commit", "torch", "input", "labels", "members",
                         "calibration", "training_data", "metrics_fold9")


def _require(user) -> None:
    if user is not None and not user.has_perm(PERMISSION):
        raise ApplicationError("Only compliance staff can import, promote or roll back a model version.",
                            code="permission_denied")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _dirty(commit: str | None) -> bool:
    return not commit or commit.endswith("+dirty")


def export_read(path: str | Path) -> tuple[dict, dict[str, bytes]]:
    """(manifest, {file name: bytes}) of an export folder, every member verified; ApplicationError on anything wrong."""
    path = Path(path)
    if not (path / "manifest.json").is_file():
        raise ApplicationError(f"{path} is not a model export: it has no manifest.json.", "path")
    files: dict[str, bytes] = {}
    for f in sorted(path.iterdir()):
        if f.is_file() and f.suffix in EXPORT_SUFFIXES:
            if f.stat().st_size > MAX_FILE_BYTES:
                raise ApplicationError(f"{f.name} is {f.stat().st_size // 2**20} MB: a model file is at most "
                                    f"{MAX_FILE_BYTES // 2**20} MB.", "path")
            files[f.name] = f.read_bytes()
    try:
        manifest = json.loads(files["manifest.json"])
        version, members = manifest["model_version"], manifest["members"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ApplicationError(f"The manifest in {path} is not a model manifest ({type(exc).__name__}: {exc}).",
                            "path") from exc
    commit = manifest.get("git_commit")
    if _dirty(commit):
        how = ("without a git commit" if not commit
               else f"from a working tree with uncommitted changes ({commit})")
        raise ApplicationError(f"{version} was exported {how}: only an export of a committed tree can be traced to "
                            "its code. Commit, export again, import that.", "path", code="dirty_export")
    # The export's own run record too. The members' training records are kept as reports but not judged: a
    # member trained on a tree with changes is traced by its config and data fingerprint, and the export that
    # packaged it (with the preprocessing and calibration that serve) is what must be committed code.
    if "export.run.json" in files:
        run_commit = json.loads(files["export.run.json"]).get("git_commit")
        if _dirty(run_commit):
            raise ApplicationError(f"export.run.json records an export from a working tree with uncommitted changes "
                                f"({run_commit}): only committed code can be traced.", "path", code="dirty_export")
    if not members:
        raise ApplicationError(f"The manifest of {version} lists no members.", "path")
    for m in members:
        data = files.get(m["file"])
        if data is None:
            raise ApplicationError(f"Member {m['file']} of {version} is missing from {path}.", "path")
        if _sha256(data) != m["sha256"]:
            raise ApplicationError(f"Member {m['file']} of {version} is corrupt: its sha256 {_sha256(data)[:12]}… is "
                                f"not the manifest's {m['sha256'][:12]}….", "path", code="checksum")
    return manifest, files


def _store(manifest: dict, files: dict[str, bytes], *, state: str, source: str, actor) -> ModelVersion:
    digests = {}
    for name, data in files.items():
        digest = _sha256(data)
        ModelFile.objects.get_or_create(sha256=digest, defaults={"size": len(data), "content": data})
        digests[name] = digest
    reports = {name: json.loads(data) for name, data in files.items()
               if name.endswith(".json") and name != "manifest.json" and len(data) <= REPORT_MAX_BYTES}
    now = timezone.now()
    version = ModelVersion.objects.create(
        version=manifest["model_version"], state=state, source=source, git_commit=manifest["git_commit"],
        manifest={k: manifest[k] for k in MANIFEST_SUMMARY_KEYS if k in manifest}, files=digests, reports=reports,
        imported_by=actor, imported_at=now, serving_since=now if state == ModelVersion.State.SERVING else None)
    audit_log(actor=actor, action=IMPORTED, object_type="ModelVersion", object_id=version.version,
              details={"state": state, "source": source, "git_commit": version.git_commit,
                       "files": digests, "bytes": sum(len(d) for d in files.values())})
    return version


def _loads(manifest: dict, files: dict[str, bytes]) -> None:
    """Prove the export loads as an ensemble (the same check every worker makes before serving it)."""
    from mlcore.ensemble import Ensemble, EnsembleLoadError

    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            (Path(tmp) / name).write_bytes(data)
        try:
            Ensemble.load(tmp)
        except (EnsembleLoadError, RuntimeError, KeyError, ValueError) as exc:
            raise ApplicationError(f"{manifest['model_version']} does not load as an ensemble: {exc}", "path",
                                code="invalid_model") from exc


def _image_ensure(actor) -> ModelVersion:
    """The registry's first row: the image's weights, serving (what served until now keeps serving)."""
    serving = ModelVersion.objects.filter(state=ModelVersion.State.SERVING).first()
    if serving is not None or ModelVersion.objects.exists():
        return serving
    manifest, files = export_read(settings.ECG_WEIGHTS_DIR)
    return _store(manifest, files, state=ModelVersion.State.SERVING, source=ModelVersion.Source.IMAGE, actor=actor)


def model_version_import(*, path: str | Path, actor=None) -> ModelVersion:
    """Register an export folder as a candidate (verified, stored, audited). ``actor`` None: an operator's
    ``manage.py model_import``."""
    _require(actor)
    manifest, files = export_read(path)
    if ModelVersion.objects.filter(version=manifest["model_version"]).exists():
        raise ApplicationError(f"{manifest['model_version']} is already registered.", "path", code="conflict")
    _loads(manifest, files)
    try:
        with transaction.atomic():
            _image_ensure(actor)
            if ModelVersion.objects.filter(version=manifest["model_version"]).exists():
                raise ApplicationError(f"{manifest['model_version']} is already registered (it is the version "
                                    "shipped in the image).", "path", code="conflict")
            return _store(manifest, files, state=ModelVersion.State.CANDIDATE, source=ModelVersion.Source.IMPORT,
                          actor=actor)
    except IntegrityError as exc:  # two imports of the same version at the same moment
        raise ApplicationError(f"{manifest['model_version']} was being registered at the same moment.", "path",
                            code="conflict") from exc


# -- serving --------------------------------------------------------------------------------------------------------

def serving_version() -> ModelVersion | None:
    """The version in force; None while the registry is empty (the image's weights serve)."""
    return (ModelVersion.objects.filter(state=ModelVersion.State.SERVING)
            .only("id", "version", "source", "files").first())


def serving_weights_dir() -> str:
    """Where the served version's files are on this machine: the image's folder while the registry is empty, else
    the stored files, written once under ECGAPP_DATA_DIR/models/ (settings.ECG_MODELS_DIR). One small query per
    call, so every worker follows a promotion or a rollback at its next ECG, as site calibrations do."""
    version = serving_version()
    if version is None:
        return str(settings.ECG_WEIGHTS_DIR)
    return version_weights_dir(version)


def version_weights_dir(version: ModelVersion) -> str:
    return _materialised(version.version, json.dumps(version.files, sort_keys=True), str(settings.ECG_MODELS_DIR))


@functools.lru_cache(maxsize=8)
def _materialised(version: str, files_json: str, models_dir: str) -> str:
    files = json.loads(files_json)
    tag = _sha256(files_json.encode())[:12]
    dest = Path(models_dir) / f"{version}-{tag}"
    if (dest / ".complete").exists():
        return str(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=dest.parent))
    try:
        for name, digest in files.items():
            row = ModelFile.objects.get(sha256=digest)
            data = bytes(row.content)
            if _sha256(data) != digest:
                raise ApplicationError(f"The stored file {name} of {version} is corrupt (sha256 mismatch).",
                                    code="checksum")
            (tmp / name).write_bytes(data)
        (tmp / ".complete").write_text(timezone.now().isoformat())
        try:
            os.rename(tmp, dest)  # atomic: another process either finds it complete or not at all
        except OSError:
            if not (dest / ".complete").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return str(dest)


# -- promotion and rollback -----------------------------------------------------------------------------------------

def two_person_rule() -> bool:
    return bool(settings.ECG_MODEL_TWO_PERSON)


def _sign(*, user, password: str | None, version: ModelVersion) -> None:
    since = timezone.now() - SIGN_FAILURE_WINDOW
    failures = AuditEvent.objects.filter(action=SIGN_FAILED, actor=user, at__gte=since).count()
    if failures >= SIGN_FAILURES_ALLOWED:
        raise ApplicationError(f"{failures} wrong passwords in the last {SIGN_FAILURE_WINDOW.seconds // 60} minutes: "
                            "wait before signing again.", "password", code="signature")
    if not password or not user.check_password(password):
        audit_log(actor=user, action=SIGN_FAILED, object_type="ModelVersion", object_id=version.version,
                  details={"reason": "no password" if not password else "wrong password"})
        raise ApplicationError("Re-enter your password to sign: the one given is not correct. Nothing was changed.",
                            "password", code="signature")


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if len(reason) < MIN_REASON:
        raise ApplicationError("Say why (at least a sentence): the reason is kept in the model's history.", "reason")
    return reason[:2000]


def _apply(change: ModelChange, *, approver) -> ModelChange:
    """Serve ``change.version``: the version serving now is retired (kept, for a rollback). Inside a transaction."""
    now = timezone.now()
    current = ModelVersion.objects.select_for_update().filter(state=ModelVersion.State.SERVING).first()
    target = ModelVersion.objects.select_for_update().get(pk=change.version_id)
    if current is not None:
        current.state, current.retired_at = ModelVersion.State.RETIRED, now
        current.save(update_fields=["state", "retired_at"])
    target.state, target.serving_since, target.retired_at = ModelVersion.State.SERVING, now, None
    target.save(update_fields=["state", "serving_since", "retired_at"])
    change.status, change.replaced, change.approved_by, change.applied_at = (
        ModelChange.Status.APPLIED, current, approver, now)
    change.save(update_fields=["status", "replaced", "approved_by", "applied_at"])
    audit_log(actor=approver, action=PROMOTED if change.kind == ModelChange.Kind.PROMOTE else ROLLED_BACK,
              object_type="ModelVersion", object_id=target.version,
              details={"replaced": current.version if current else None, "change": change.pk,
                       "requested_by": change.requested_by.username, "approved_by": approver.username,
                       "reason": change.reason, "two_person": change.requested_by_id != approver.pk})
    return change


def _no_pending() -> None:
    pending = ModelChange.objects.select_for_update().filter(status=ModelChange.Status.PENDING).first()
    if pending is not None:
        raise ApplicationError(f"A {pending.get_kind_display().lower()} to {pending.version.version} requested by "
                            f"{pending.requested_by.username} waits for a second sign-off: approve or withdraw it "
                            "first.", code="conflict")


def model_promote(*, version: ModelVersion, user, password: str | None, reason: str) -> ModelChange:
    """Request the promotion of a candidate (or a retired version) to serving, signed; applied at once unless the
    two-person rule asks for a second signature (model_change_approve)."""
    _require(user)
    reason = _reason(reason)
    _sign(user=user, password=password, version=version)
    with transaction.atomic():
        _image_ensure(user)
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if version.state == ModelVersion.State.SERVING:
            raise ApplicationError(f"{version.version} is already serving.", code="conflict")
        _no_pending()
        change = ModelChange.objects.create(kind=ModelChange.Kind.PROMOTE, version=version, reason=reason,
                                            requested_by=user)
        audit_log(actor=user, action=REQUESTED, object_type="ModelVersion", object_id=version.version,
                  details={"kind": change.kind, "change": change.pk, "reason": reason,
                           "two_person": two_person_rule()})
        if not two_person_rule():
            _apply(change, approver=user)
    return change


def model_change_approve(*, change: ModelChange, user, password: str | None) -> ModelChange:
    """The second signature under the two-person rule: another compliance user than the one who asked."""
    _require(user)
    if change.requested_by_id == user.pk:
        raise ApplicationError("The second sign-off must come from another compliance user than the one who asked.",
                            code="forbidden")
    _sign(user=user, password=password, version=change.version)
    with transaction.atomic():
        change = ModelChange.objects.select_for_update().select_related("requested_by").get(pk=change.pk)
        if change.status != ModelChange.Status.PENDING:
            raise ApplicationError(f"This change is {change.get_status_display().lower()}.", code="conflict")
        return _apply(change, approver=user)


def model_change_withdraw(*, change: ModelChange, user) -> ModelChange:
    _require(user)
    with transaction.atomic():
        change = ModelChange.objects.select_for_update().get(pk=change.pk)
        if change.status != ModelChange.Status.PENDING:
            raise ApplicationError(f"This change is {change.get_status_display().lower()}.", code="conflict")
        change.status = ModelChange.Status.WITHDRAWN
        change.save(update_fields=["status"])
        audit_log(actor=user, action=WITHDRAWN, object_type="ModelVersion", object_id=change.version.version,
                  details={"change": change.pk})
    return change


def rollback_target() -> ModelVersion | None:
    """What a rollback puts back: the version the serving one was promoted over, or None.

    Only a promotion can be rolled back. After a rollback the version rolled away from is not offered again as a
    "rollback": serving it again is a promotion, with its sign-off (under the two-person rule, two signatures)."""
    last = (ModelChange.objects.filter(status=ModelChange.Status.APPLIED, kind=ModelChange.Kind.PROMOTE,
                                       version__state=ModelVersion.State.SERVING)
            .select_related("replaced").order_by("-applied_at", "-id").first())
    return last.replaced if last else None


def model_rollback(*, user, password: str | None, reason: str) -> ModelChange:
    """Put back the version that served before, in one signed step (no second signature: it was approved once)."""
    _require(user)
    reason = _reason(reason)
    target = rollback_target()
    if target is None:
        raise ApplicationError("Nothing to roll back to: the serving version was not promoted over another.",
                            code="conflict")
    _sign(user=user, password=password, version=target)
    with transaction.atomic():
        if rollback_target() != target:
            raise ApplicationError("The serving version changed meanwhile: reload the page.", code="conflict")
        ModelChange.objects.select_for_update().filter(status=ModelChange.Status.PENDING).update(
            status=ModelChange.Status.WITHDRAWN)
        change = ModelChange.objects.create(kind=ModelChange.Kind.ROLLBACK, version=target, reason=reason,
                                            requested_by=user)
        audit_log(actor=user, action=REQUESTED, object_type="ModelVersion", object_id=target.version,
                  details={"kind": change.kind, "change": change.pk, "reason": reason, "two_person": False})
        return _apply(change, approver=user)


# -- shadow ---------------------------------------------------------------------------------------------------------

def shadow_version() -> ModelVersion | None:
    """The version running in shadow beside the serving one, or None (one small query per new ECG)."""
    return ModelVersion.objects.filter(state=ModelVersion.State.SHADOW).only("id", "version", "files").first()


def model_shadow_start(*, version: ModelVersion, user) -> ModelVersion:
    """Run a candidate (or a retired version) beside the serving model on every new ECG, its outputs stored for the
    comparison page only (monitoring.shadow). One shadow at a time: stop the other first."""
    _require(user)
    try:
        with transaction.atomic():
            _image_ensure(user)
            version = ModelVersion.objects.select_for_update().get(pk=version.pk)
            if version.state not in (ModelVersion.State.CANDIDATE, ModelVersion.State.RETIRED):
                raise ApplicationError(f"{version.version} is {version.get_state_display().lower()}: only a candidate "
                                    "or a retired version can run in shadow.", code="conflict")
            other = ModelVersion.objects.filter(state=ModelVersion.State.SHADOW).first()
            if other is not None:
                raise ApplicationError(f"{other.version} is already in shadow: stop it first (one shadow at a time).",
                                    code="conflict")
            before = version.state
            version.state = ModelVersion.State.SHADOW
            version.save(update_fields=["state"])
            audit_log(actor=user, action=SHADOW_STARTED, object_type="ModelVersion", object_id=version.version,
                      details={"from": before})
    except IntegrityError as exc:  # another shadow started at the same moment (one_shadow_model_version)
        raise ApplicationError("Another version was put in shadow at the same moment: reload the page.",
                            code="conflict") from exc
    return version


def model_shadow_stop(*, version: ModelVersion, user) -> ModelVersion:
    """Stop the shadow (back to candidate); its stored outputs stay for the comparison."""
    _require(user)
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if version.state != ModelVersion.State.SHADOW:
            raise ApplicationError(f"{version.version} is not in shadow.", code="conflict")
        version.state = ModelVersion.State.CANDIDATE
        version.save(update_fields=["state"])
        audit_log(actor=user, action=SHADOW_STOPPED, object_type="ModelVersion", object_id=version.version,
                  details={"shadow_predictions": version.shadow_predictions.count()})
    return version


def model_versions() -> list[ModelVersion]:
    return list(ModelVersion.objects.defer("reports").select_related("imported_by"))


def model_history() -> list[ModelChange]:
    return list(ModelChange.objects.select_related("version", "replaced", "requested_by", "approved_by"))
