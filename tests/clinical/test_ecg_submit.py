"""clinical.services.ecg_submit and the inference services, against the configured database."""
from __future__ import annotations

import numpy as np
import pytest

from clinical import demo, services
from clinical.errors import ApplicationError
from clinical.models import AuditEvent, EcgRecord, Finding, InferenceJob, Patient, Prediction, Recommendation


def submit(actor, files, fs=None, **kw):
    args = {"pseudonym": "PT-001", "age": 64, "sex": "M"} | kw
    return services.ecg_submit(actor=actor, files=files, fs=fs, **args)


def test_submit_stores_the_record_queues_a_job_after_commit_and_audits(clinician, wfdb_pair, ecg_500hz,
                                                                        django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        record = submit(clinician, wfdb_pair)
    assert len(callbacks) == 1  # the Celery message is sent only once the rows are committed
    assert record.fs == 500 and record.n_samples == 5000 and record.source_format == "wfdb"
    assert np.allclose(record.signal_array(), ecg_500hz, atol=1e-3)
    assert record.job.state == InferenceJob.State.QUEUED
    event = AuditEvent.objects.get(action="ecg.upload")
    assert event.actor == clinician and event.object_id == str(record.public_id)


def test_resubmitting_for_a_known_patient_updates_age(clinician, wfdb_pair, csv_upload):
    submit(clinician, wfdb_pair)
    submit(clinician, csv_upload, fs=500, age=65)
    assert Patient.objects.get().age == 65
    assert list(EcgRecord.objects.values_list("age_at_ecg", flat=True).order_by("id")) == [64, 65]


@pytest.mark.parametrize(("kw", "field"), [
    ({"pseudonym": "a"}, "pseudonym"), ({"pseudonym": "John Smith"}, "pseudonym"),
    ({"age": 130}, "age"), ({"age": -1}, "age"), ({"sex": "X"}, "sex"),
])
def test_bad_patient_fields_store_nothing(clinician, wfdb_pair, kw, field):
    with pytest.raises(ApplicationError) as exc:
        submit(clinician, wfdb_pair, **kw)
    assert exc.value.field == field
    assert not Patient.objects.exists() and not EcgRecord.objects.exists()
    refused = AuditEvent.objects.exclude(action__startswith="role.").get()
    assert refused.action == "ecg.upload_refused" and refused.details["field"] == field


def test_an_age_said_to_be_unknown_is_stored_as_unknown(clinician, wfdb_pair):
    record = submit(clinician, wfdb_pair, age=None, sex="U")
    assert record.age_at_ecg is None and record.patient.age is None and record.age_label == "age unknown"


def test_quality_gate_refuses_an_unusable_record_with_reasons(clinician, ecg_500hz):
    sig = ecg_500hz.copy()
    sig[6:10] = 0.0  # four chest leads off
    with pytest.raises(ApplicationError, match="cannot be analysed.*V1"):
        submit(clinician, {"json": ("x.json", demo.as_json(sig, 500))})
    assert not EcgRecord.objects.exists()


def test_inference_stores_prediction_findings_and_actions_and_is_idempotent(clinician, wfdb_pair, weights_dir):
    record = submit(clinician, wfdb_pair)
    job = services.inference_run(job_id=record.job.id)
    assert job.state == InferenceJob.State.DONE and job.progress == 100 and job.attempts == 1
    pred = Prediction.objects.get(record=record)
    assert set(pred.superclass) == {"NORM", "MI", "STTC", "CD", "HYP"}
    assert all(0 <= p <= 1 for p in pred.superclass.values())
    recs = list(Recommendation.objects.filter(prediction=pred))
    assert recs and recs[0].rank == 0 and recs[0].table_version
    assert all(r.rule_id for r in recs) and recs[0].kind != Recommendation.Kind.CAVEAT
    assert pred.top_urgency == recs[0].urgency
    # The model's top findings carry evidence maps (computed after the result); those by measurement do not.
    assert pred.evidence_state == Prediction.EvidenceState.PENDING
    pred = services.evidence_compute(prediction_id=pred.pk)
    for f in Finding.objects.filter(prediction=pred).exclude(head="measurement")[: services.MAX_EXPLAINED]:
        ex = pred.evidence_for(f.overlay_key)
        assert ex.lead_relevance.shape == (12,) and ex.lead_maps.shape == (12, 1000) and ex.gradcam.shape == (1000,)
    again = services.inference_run(job_id=record.job.id)  # a redelivered message changes nothing
    assert again.attempts == 1 and Prediction.objects.count() == 1
    assert AuditEvent.objects.filter(action="inference.complete").count() == 1


def test_a_flat_lead_adds_repeat_the_ecg_and_no_normal_reassurance(clinician, ecg_500hz, weights_dir):
    sig = ecg_500hz.copy()
    sig[7] = 0.0  # V2 off: a warning, not a refusal
    record = submit(clinician, {"json": ("x.json", demo.as_json(sig, 500))})
    services.inference_run(job_id=record.job.id)
    recs = list(Recommendation.objects.filter(prediction__record=record))
    repeat = [r for r in recs if r.kind == Recommendation.Kind.QUALITY]
    assert len(repeat) == 1 and "Repeat the ECG" in repeat[0].action and "V2" in repeat[0].action
    assert repeat[0].rule_id == "quality:REPEAT_ECG" and repeat[0].triggered_by == "quality:flat_line"
    assert not any(r.action.startswith(("Normal ECG", "Sinus rhythm")) for r in recs)


@pytest.mark.parametrize("disputed, flagged, needs_review", [
    ("SR", True, False),  # not dangerous: no badge, whatever the members say
    ("AFIB", True, True),  # flagged, but one member below its threshold
    ("AFIB", False, True),  # not flagged, yet one member above its threshold: a possible miss
])
def test_needs_review_only_when_the_members_disagree_about_a_dangerous_finding(clinician, wfdb_pair, weights_dir,
                                                                              monkeypatch, disputed, flagged,
                                                                              needs_review):
    ens = services.get_ensemble()
    real = ens.predict

    def disputing(signals, fs, leads=None):
        pred = real(signals, fs, leads)
        j = ens.labels.statements.index(disputed)
        pred.statements[0, j], pred.statements_flags[0, j] = (0.6 if flagged else 0.05), flagged
        pred.statements_members_above[0, j] = len(ens.members) - 1 if flagged else 1
        return pred

    monkeypatch.setattr(ens, "predict", disputing)
    record = submit(clinician, wfdb_pair)
    services.inference_run(job_id=record.job.id)
    pred = Prediction.objects.get(record=record)
    if flagged:
        assert Finding.objects.get(prediction=pred, code=disputed).needs_review
    else:
        assert not Finding.objects.filter(prediction=pred, code=disputed).exists()
    assert pred.needs_review is needs_review
    caveats = list(pred.recommendations.filter(kind=Recommendation.Kind.CAVEAT, rule_id="caveat:MODELS_DISAGREE"))
    assert len(caveats) == int(needs_review) and pred.recommendations.first().kind != Recommendation.Kind.CAVEAT
    if needs_review:
        assert disputed in caveats[0].action and caveats[0].urgency == "routine"


def test_members_that_all_agree_raise_no_review_however_spread_their_probabilities(clinician, wfdb_pair,
                                                                                     weights_dir, monkeypatch):
    """The badge follows the members' verdicts, not the spread of their probabilities: three members all above
    AFIB's threshold (0.40, 0.60, 0.95) agree that it is there."""
    ens = services.get_ensemble()
    real = ens.predict

    def spread_but_agreeing(signals, fs, leads=None):
        pred = real(signals, fs, leads)
        j = ens.labels.statements.index("AFIB")
        pred.statements[0, j], pred.statements_flags[0, j], pred.statements_spread[0, j] = 0.65, True, 0.3
        pred.statements_members_above[0, j] = len(ens.members)
        return pred

    monkeypatch.setattr(ens, "predict", spread_but_agreeing)
    record = submit(clinician, wfdb_pair)
    services.inference_run(job_id=record.job.id)
    pred = Prediction.objects.get(record=record)
    assert not pred.needs_review and not Finding.objects.get(prediction=pred, code="AFIB").needs_review


def test_a_failed_job_can_be_retried_and_requeued(clinician, wfdb_pair, django_capture_on_commit_callbacks):
    record = submit(clinician, wfdb_pair)
    services.inference_fail(job_id=record.job.id, error="worker lost")
    job = InferenceJob.objects.get(pk=record.job.id)
    assert job.state == InferenceJob.State.FAILED and job.error == "worker lost"
    with django_capture_on_commit_callbacks() as callbacks:
        services.inference_retry(job=job, actor=clinician)
    assert len(callbacks) == 1
    assert InferenceJob.objects.get(pk=job.pk).state == InferenceJob.State.QUEUED
    with pytest.raises(ApplicationError, match="Only a failed"):
        services.inference_retry(job=job, actor=clinician)


def test_model_failure_marks_the_job_failed_with_the_reason(clinician, wfdb_pair, settings, tmp_path):
    from clinical.tasks import run_inference
    from mlcore.ensemble import load_cached

    settings.ECG_WEIGHTS_DIR = str(tmp_path / "nowhere")
    load_cached.cache_clear()
    record = submit(clinician, wfdb_pair)
    assert run_inference.apply(args=[record.job.id]).get() == "failed"
    job = InferenceJob.objects.get(pk=record.job.id)
    assert job.state == InferenceJob.State.FAILED and "manifest.json" in job.error


def test_unknown_at_a_later_upload_keeps_what_the_patient_record_knew(clinician, wfdb_pair):
    submit(clinician, wfdb_pair, age=64, sex="F")
    later = submit(clinician, wfdb_pair, age=None, sex="U")
    later.patient.refresh_from_db()
    assert (later.patient.age, later.patient.sex) == (64, "F")
    assert later.age_at_ecg is None  # the ECG keeps what its uploader said
    newer = submit(clinician, wfdb_pair, age=65, sex="F")
    newer.patient.refresh_from_db()
    assert newer.patient.age == 65


def test_demo_ecgs_are_labelled_synthetic_on_the_pages(client, clinician):
    from django.urls import reverse

    sig = demo.synthesize(demo.CASES[0], fs=500, seed=3)
    record = submit(clinician, {"json": ("DEMO-0001-synthetic-normal.json", demo.as_json(sig, 500))},
                    pseudonym="DEMO-0001")
    real = submit(clinician, {"json": ("ecg.json", demo.as_json(sig, 500))}, pseudonym="PT-77")
    assert record.is_synthetic_demo and not real.is_synthetic_demo
    client.force_login(clinician)
    assert "Synthetic demo ECG" in client.get(reverse("clinical:ecg-detail", args=[record.public_id])).text
    assert "Synthetic demo ECG" not in client.get(reverse("clinical:ecg-detail", args=[real.public_id])).text
    assert ">synthetic</span>" in client.get(reverse("clinical:ecg-list")).text
