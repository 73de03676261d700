"""The model registry (issue 20): verified import, promotion with sign-off (two-person rule), rollback in one step;
each audited, and the served model follows it (the prediction records the version that made it)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Group, User

from clinical import services
from clinical.errors import ApplicationError
from clinical.models import AuditEvent, Prediction
from monitoring import registry
from monitoring.models import ModelChange, ModelFile, ModelVersion
from tests.clinical.conftest import csv_upload  # noqa: F401

PW = "pw-for-tests-1"
PAGE = "/monitoring/models/"
IMAGE = Path(django_settings.ECG_WEIGHTS_DIR)


def _export(dest: Path, version: str, commit: str = "0123456789abcdef0123456789abcdef01234567") -> Path:
    """An export folder: the committed members under another version name and commit."""
    shutil.copytree(IMAGE, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["model_version"], manifest["git_commit"] = version, commit
    (dest / "manifest.json").write_text(json.dumps(manifest))
    run = json.loads((dest / "export.run.json").read_text())
    run["git_commit"] = commit
    (dest / "export.run.json").write_text(json.dumps(run))
    return dest


@pytest.fixture(autouse=True)
def models_in_tmp(settings, tmp_path):
    settings.ECG_MODELS_DIR = tmp_path / "models-served"
    settings.ECG_MODEL_TWO_PERSON = True
    registry._materialised.cache_clear()


@pytest.fixture
def candidate_dir(tmp_path) -> Path:
    return _export(tmp_path / "export", "resnet1d-ens3-candidate")


@pytest.fixture
def second_officer(db) -> User:
    user = User.objects.create_user(username="comp-eli", password=PW)
    user.groups.add(Group.objects.get(name="compliance"))
    return user


def _image_version() -> str:
    return json.loads((IMAGE / "manifest.json").read_text())["model_version"]


@pytest.mark.parametrize("spoil, error", [
    (lambda d: _set(d, "git_commit", "0123abc+dirty"), "uncommitted changes"),
    (lambda d: _set(d, "git_commit", None), "without a git commit"),
    (lambda d: _flip_byte(d / "member-2.pt"), "is corrupt"),
    (lambda d: (d / "member-3.pt").unlink(), "missing"),
    (lambda d: (d / "manifest.json").unlink(), "no manifest.json"),
    (lambda d: _set_run(d, "a1b2c3+dirty"), "uncommitted changes"),
])
def test_a_dirty_corrupt_or_incomplete_export_is_refused_and_nothing_is_stored(
        candidate_dir, compliance_officer, spoil, error):
    spoil(candidate_dir)
    with pytest.raises(ApplicationError, match=error):
        registry.model_version_import(path=candidate_dir, actor=compliance_officer)
    assert not ModelVersion.objects.exists() and not ModelFile.objects.exists()
    assert not AuditEvent.objects.filter(action=registry.IMPORTED).exists()


def _flip_byte(f: Path) -> None:
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))


def _set(d: Path, key: str, value) -> None:
    manifest = json.loads((d / "manifest.json").read_text())
    manifest[key] = value
    (d / "manifest.json").write_text(json.dumps(manifest))


def _set_run(d: Path, commit: str) -> None:
    run = json.loads((d / "export.run.json").read_text())
    run["git_commit"] = commit
    (d / "export.run.json").write_text(json.dumps(run))


def test_only_compliance_staff_import_or_change_models(candidate_dir, clinician, reviewer, client):
    for user in (clinician, reviewer):
        with pytest.raises(ApplicationError, match="Only compliance"):
            registry.model_version_import(path=candidate_dir, actor=user)
        client.force_login(user)
        assert client.get(PAGE).status_code == 403
        assert client.post(f"{PAGE}rollback/", {"password": PW, "reason": "x" * 20}).status_code == 403
    assert not ModelVersion.objects.exists()


def test_register_promote_with_two_signatures_serve_and_roll_back(
        candidate_dir, compliance_officer, second_officer, clinician, csv_upload, client):  # noqa: F811
    image = _image_version()
    assert registry.serving_version() is None and services.get_model().version == image  # empty: the image serves

    candidate = registry.model_version_import(path=candidate_dir, actor=compliance_officer)
    versions = {v.version: v for v in ModelVersion.objects.all()}
    assert versions[image].state == "serving" and versions[image].source == "image"  # kept for a rollback
    assert candidate.state == "candidate" and candidate.git_commit.startswith("0123456789ab")
    assert set(candidate.files) >= {"manifest.json", "member-1.pt", "calibration.json", "reference_fold9.npz"}
    assert candidate.reports["fold9_report.json"]
    # Same member bytes as the image's: stored once, by sha256.
    assert ModelFile.objects.filter(sha256=candidate.files["member-1.pt"]).count() == 1
    assert [e.object_id for e in AuditEvent.objects.filter(action=registry.IMPORTED).order_by("id")] == [
        image, candidate.version]

    # Requested by one officer: nothing changes yet; they cannot sign it a second time.
    change = registry.model_promote(version=candidate, user=compliance_officer, password=PW,
                                    reason="Better AF sensitivity on the fold-10 evaluation.")
    assert change.status == "pending" and registry.serving_version().version == image
    with pytest.raises(ApplicationError, match="another compliance user"):
        registry.model_change_approve(change=change, user=compliance_officer, password=PW)
    with pytest.raises(ApplicationError, match="password"):
        registry.model_change_approve(change=change, user=second_officer, password="wrong")
    assert AuditEvent.objects.filter(action=registry.SIGN_FAILED, actor=second_officer).count() == 1
    assert registry.serving_version().version == image

    registry.model_change_approve(change=change, user=second_officer, password=PW)
    assert registry.serving_version().version == candidate.version
    served = services.get_model()
    assert served.version == candidate.version
    assert Path(registry.serving_weights_dir()).is_relative_to(django_settings.ECG_MODELS_DIR)
    promoted = AuditEvent.objects.get(action=registry.PROMOTED)
    assert promoted.object_id == candidate.version and promoted.details["replaced"] == image
    assert (promoted.details["requested_by"], promoted.details["approved_by"]) == ("comp-di", "comp-eli")

    # A new ECG is analysed by the promoted model and says so.
    record = services.ecg_submit(actor=clinician, pseudonym="PT-REG", age=60, sex="F", files=csv_upload, fs=500,
                                 queue_inference=False)
    services.inference_run(job_id=record.job.id)
    assert Prediction.objects.get(record=record).model_version == candidate.version

    # The page shows it, then rolls back in one signed step.
    client.force_login(compliance_officer)
    page = client.get(PAGE).content.decode()
    assert f'id="serving-version">{candidate.version}<' in page and f"Roll back to {image}" in page
    response = client.post(f"{PAGE}rollback/", {"password": PW, "reason": "Too many false AF alerts on ward 3."})
    assert response.status_code == 302
    assert registry.serving_version().version == image and services.get_model().version == image
    rolled = AuditEvent.objects.get(action=registry.ROLLED_BACK)
    assert rolled.object_id == image and rolled.details["replaced"] == candidate.version
    candidate.refresh_from_db()
    assert candidate.state == "retired" and candidate.retired_at is not None
    record2 = services.ecg_submit(actor=clinician, pseudonym="PT-REG2", age=61, sex="M", files=csv_upload, fs=500,
                                  queue_inference=False)
    services.inference_run(job_id=record2.job.id)
    assert Prediction.objects.get(record=record2).model_version == image
    # The version rolled away from is not offered as a "rollback": serving it again is a promotion, signed twice.
    assert registry.rollback_target() is None and "Roll back to" not in client.get(PAGE).content.decode()
    with pytest.raises(ApplicationError, match="Nothing to roll back"):
        registry.model_rollback(user=compliance_officer, password=PW, reason="Back to the candidate, quickly.")
    history = [(c.kind, c.version.version, c.status) for c in ModelChange.objects.order_by("id")]
    assert history == [("promote", candidate.version, "applied"), ("rollback", image, "applied")]

    # The model card describes the serving version and lists the history.
    card = client.get("/monitoring/model-card/").content.decode()
    assert 'id="model-history"' in card and "Too many false AF alerts" in card and candidate.version in card


def test_one_signature_promotes_when_the_two_person_rule_is_off(settings, candidate_dir, compliance_officer):
    settings.ECG_MODEL_TWO_PERSON = False
    candidate = registry.model_version_import(path=candidate_dir, actor=compliance_officer)
    change = registry.model_promote(version=candidate, user=compliance_officer, password=PW,
                                    reason="Validated on our own 300 confirmed readings.")
    assert change.status == "applied" and change.approved_by == compliance_officer
    assert registry.serving_version().version == candidate.version


def test_a_promotion_needs_a_reason_and_waits_alone(candidate_dir, tmp_path, compliance_officer):
    candidate = registry.model_version_import(path=candidate_dir, actor=compliance_officer)
    with pytest.raises(ApplicationError, match="Say why"):
        registry.model_promote(version=candidate, user=compliance_officer, password=PW, reason="ok")
    registry.model_promote(version=candidate, user=compliance_officer, password=PW, reason="A reason long enough.")
    other = registry.model_version_import(path=_export(tmp_path / "other", "resnet1d-other"), actor=compliance_officer)
    with pytest.raises(ApplicationError, match="waits for a second sign-off"):
        registry.model_promote(version=other, user=compliance_officer, password=PW, reason="A reason long enough.")
    with pytest.raises(ApplicationError, match="already registered"):
        registry.model_version_import(path=candidate_dir, actor=compliance_officer)
    with pytest.raises(ApplicationError, match="Nothing to roll back"):
        registry.model_rollback(user=compliance_officer, password=PW, reason="A reason long enough.")


def test_the_pages_request_and_sign_a_promotion(candidate_dir, compliance_officer, second_officer, client):
    candidate = registry.model_version_import(path=candidate_dir, actor=compliance_officer)
    client.force_login(compliance_officer)
    client.post(f"{PAGE}{candidate.pk}/promote/", {"password": PW, "reason": "Better on fold 10."})
    change = ModelChange.objects.get()
    page = client.get(PAGE).content.decode()
    assert 'id="model-pending"' in page and 'id="approve-form"' not in page  # not their own
    client.force_login(second_officer)
    assert 'id="approve-form"' in client.get(PAGE).content.decode()
    client.post(f"{PAGE}changes/{change.pk}/approve/", {"password": PW})
    assert registry.serving_version().version == candidate.version


def test_a_corrupt_stored_file_is_not_served(candidate_dir, compliance_officer, settings):
    settings.ECG_MODEL_TWO_PERSON = False
    candidate = registry.model_version_import(path=candidate_dir, actor=compliance_officer)
    registry.model_promote(version=candidate, user=compliance_officer, password=PW, reason="A reason long enough.")
    row = ModelFile.objects.get(sha256=candidate.files["calibration.json"])
    row.content = b"{}"
    row.save()
    registry._materialised.cache_clear()
    with pytest.raises(ApplicationError, match="corrupt"):
        registry.serving_weights_dir()
