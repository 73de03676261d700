"""Result first, evidence after (issue 17): findings and actions are stored at the end of the forward pass, the
Grad-CAM evidence follows from its own queue, and nothing about the evidence can cost the result."""
from __future__ import annotations

from unittest import mock

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from clinical import services, tasks
from clinical.models import AuditEvent, Finding, InferenceJob, Prediction, Recommendation
from clinical.tokens import api_token_create
from mlcore.ensemble import Ensemble
from mlcore.preprocess import LEADS


def submit(user, files, **kwargs):
    return services.ecg_submit(actor=user, pseudonym="PT-EV", age=66, sex="M", files=files, fs=None, **kwargs)


def analyse(record, django_capture_on_commit_callbacks):
    """Run the analysis as the worker does, and return the evidence messages it sent after commit."""
    with mock.patch.object(tasks.compute_evidence, "apply_async") as send, \
            django_capture_on_commit_callbacks(execute=True):
        services.inference_run(job_id=record.job.id)
    return [c.args[0] for c in send.call_args_list]


def model_keys(prediction) -> list[str]:
    return [f.overlay_key for f in prediction.findings.exclude(head=Finding.Head.MEASUREMENT).order_by("rank")]


def test_the_result_is_stored_and_audited_before_its_evidence_which_is_sent_to_its_own_queue(
        clinician, wfdb_pair, weights_dir, django_capture_on_commit_callbacks):
    record = submit(clinician, wfdb_pair)
    sent = analyse(record, django_capture_on_commit_callbacks)
    job = InferenceJob.objects.get(record=record)
    prediction = Prediction.objects.get(record=record)
    assert job.state == InferenceJob.State.DONE and model_keys(prediction)
    assert prediction.evidence_state == Prediction.EvidenceState.PENDING
    assert prediction.explanations == {} and bytes(prediction.evidence) == b""
    assert Recommendation.objects.filter(prediction=prediction).exists()
    assert AuditEvent.objects.filter(action="inference.complete").count() == 1
    assert sent == [(prediction.pk,)]
    assert tasks.compute_evidence.app.amqp.router.route({}, tasks.compute_evidence.name)["queue"].name == "evidence"


def test_the_evidence_task_fills_the_top_findings_once(clinician, wfdb_pair, weights_dir,
                                                        django_capture_on_commit_callbacks):
    record = submit(clinician, wfdb_pair)
    analyse(record, django_capture_on_commit_callbacks)
    prediction = Prediction.objects.get(record=record)
    assert tasks.compute_evidence(prediction.pk) == Prediction.EvidenceState.READY
    prediction.refresh_from_db()
    expected = model_keys(prediction)[: services.MAX_EXPLAINED]
    assert sorted(prediction.explanations) == sorted(expected)
    for key in expected:
        ex = prediction.evidence_for(key)
        assert ex.lead_maps.shape == (12, 1000) and ex.gradcam.shape == (1000,) and ex.lead_relevance.shape == (12,)
    assert prediction.evidence_ms > 0 and prediction.evidence_at is not None
    first = (bytes(prediction.evidence), prediction.evidence_at)
    # A redelivered message (acks_late) finds the evidence there and does nothing twice.
    with mock.patch.object(Ensemble, "explain_many", side_effect=AssertionError("computed twice")):
        assert tasks.compute_evidence(prediction.pk) == Prediction.EvidenceState.READY
    prediction.refresh_from_db()
    assert (bytes(prediction.evidence), prediction.evidence_at) == first
    assert AuditEvent.objects.filter(action="inference.evidence").count() == 1


def test_a_failed_evidence_leaves_the_result_as_it_was(clinician, wfdb_pair, weights_dir,
                                                       django_capture_on_commit_callbacks):
    record = submit(clinician, wfdb_pair)
    analyse(record, django_capture_on_commit_callbacks)
    prediction = Prediction.objects.get(record=record)
    before = (list(prediction.findings.values_list("code", "probability")),
              list(prediction.recommendations.values_list("action", "urgency")), prediction.top_urgency)
    with mock.patch.object(Ensemble, "explain_many", side_effect=RuntimeError("out of memory")):
        assert tasks.compute_evidence(prediction.pk) == "failed"
    prediction.refresh_from_db()
    assert prediction.evidence_state == Prediction.EvidenceState.FAILED and prediction.explanations == {}
    assert (list(prediction.findings.values_list("code", "probability")),
            list(prediction.recommendations.values_list("action", "urgency")), prediction.top_urgency) == before
    assert InferenceJob.objects.get(record=record).state == InferenceJob.State.DONE
    event = AuditEvent.objects.get(action="inference.evidence_failed")
    assert "out of memory" in event.details["error"]


def test_a_job_without_evidence_sends_nothing_and_says_off(clinician, wfdb_pair, weights_dir,
                                                          django_capture_on_commit_callbacks):
    record = submit(clinician, wfdb_pair, evidence=False)
    assert analyse(record, django_capture_on_commit_callbacks) == []
    prediction = Prediction.objects.get(record=record)
    assert prediction.evidence_state == Prediction.EvidenceState.OFF and prediction.explanations == {}


def test_the_api_gives_timings_and_the_evidence_state_then_the_maps(clinician, wfdb_pair, weights_dir,
                                                                   django_capture_on_commit_callbacks):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=clinician, name='t')[1]}")
    record = submit(clinician, wfdb_pair)
    queued = client.get(f"/api/v1/ecgs/{record.public_id}/job/").json()
    assert queued["queued_at"] and queued["started_at"] is None and queued["processing_ms"] is None
    analyse(record, django_capture_on_commit_callbacks)
    job = client.get(f"/api/v1/ecgs/{record.public_id}/job/").json()
    assert job["queued_at"] <= job["started_at"] <= job["finished_at"] and job["processing_ms"] >= 0
    result = client.get(f"/api/v1/ecgs/{record.public_id}/result/?evidence=1").json()
    assert result["evidence_state"] == "pending" and result["evidence_ms"] is None
    assert result["findings"] and not any("evidence" in f for f in result["findings"])
    assert result["finished_at"] == job["finished_at"] and result["processing_ms"] == job["processing_ms"]
    tasks.compute_evidence(record.prediction.pk)
    result = client.get(f"/api/v1/ecgs/{record.public_id}/result/?evidence=1").json()
    assert result["evidence_state"] == "ready" and result["evidence_ms"] > 0
    assert set(result["findings"][0]["evidence"]) == set(LEADS)


@pytest.mark.parametrize("state", ["pending", "ready"])
def test_the_status_the_page_polls_says_when_the_evidence_is_ready(client, clinician, wfdb_pair, weights_dir,
                                                                  django_capture_on_commit_callbacks, state):
    record = submit(clinician, wfdb_pair)
    analyse(record, django_capture_on_commit_callbacks)
    if state == "ready":
        tasks.compute_evidence(record.prediction.pk)
    client.force_login(clinician)
    assert client.get(reverse("clinical:ecg-status", args=[record.public_id])).json()["evidence_state"] == state
    page = client.get(reverse("clinical:ecg-detail", args=[record.public_id])).content.decode()
    assert ("Evidence on the leads: being computed" in page) == (state == "pending")


def test_evidence_whose_message_was_lost_is_sent_again_once_it_is_old(clinician, wfdb_pair, weights_dir,
                                                                     django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.utils import timezone

    record = submit(clinician, wfdb_pair)
    analyse(record, django_capture_on_commit_callbacks)
    prediction = Prediction.objects.get(record=record)
    with mock.patch.object(tasks.compute_evidence, "apply_async") as send:
        services.jobs_requeue_stale()
        assert send.call_count == 0  # waiting behind the analyses is not lost
        old = timezone.now() - services.STALE_EVIDENCE - timedelta(seconds=1)
        Prediction.objects.filter(pk=prediction.pk).update(evidence_queued_at=old)
        services.jobs_requeue_stale()
        services.jobs_requeue_stale()  # sent again once, not at every sweep
    assert [c.args[0] for c in send.call_args_list] == [(prediction.pk,)]


# Evidence on demand (issue 17: "or on first view, then cached"): a result stored without it gets it when first
# opened in the page or asked for through the API, once.

def test_the_first_view_of_a_result_without_evidence_computes_it_once(client, clinician, reviewer, wfdb_pair,
                                                                      weights_dir,
                                                                      django_capture_on_commit_callbacks):
    record = submit(clinician, wfdb_pair, evidence=False)
    analyse(record, django_capture_on_commit_callbacks)
    client.force_login(reviewer)
    url = reverse("clinical:ecg-detail", args=[record.public_id])
    with mock.patch.object(tasks.compute_evidence, "apply_async") as send, \
            django_capture_on_commit_callbacks(execute=True):
        page = client.get(url).content.decode()
        again = client.get(url).content.decode()  # a reload, or a second reader: not queued twice
    prediction = Prediction.objects.get(record=record)
    assert [c.args[0] for c in send.call_args_list] == [(prediction.pk,)]
    assert prediction.evidence_state == Prediction.EvidenceState.PENDING and prediction.evidence_queued_at
    assert "Evidence on the leads: being computed" in page and "being computed" in again
    event = AuditEvent.objects.get(action="inference.evidence_requested")
    assert event.actor == reviewer and event.object_id == str(record.public_id)
    assert tasks.compute_evidence(prediction.pk) == Prediction.EvidenceState.READY
    assert "being computed" not in client.get(url).content.decode()


def test_the_api_computes_evidence_when_asked_for_it_not_by_default(integrator, ecg_500hz, weights_dir,
                                                                   django_capture_on_commit_callbacks):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=integrator, name='t')[1]}")
    body = {"fs": 500, "patient": {"id": "PT-API-EV", "age": 50, "sex": "F"},
            "leads": {lead: ecg_500hz[i].tolist() for i, lead in enumerate(LEADS)}}
    later = client.post("/api/v1/ecgs/", body, format="json").json()
    now = client.post("/api/v1/ecgs/", {**body, "evidence": True}, format="json").json()
    records = {k: InferenceJob.objects.get(record__public_id=v["id"]).record for k, v in
               (("later", later), ("now", now))}
    for record in records.values():
        analyse(record, django_capture_on_commit_callbacks)
    states = {k: Prediction.objects.get(record=r).evidence_state for k, r in records.items()}
    assert states == {"later": "off", "now": "pending"}
    url = f"/api/v1/ecgs/{later['id']}/result/"
    assert client.get(url).json()["evidence_state"] == "off"  # a plain read asks for nothing
    assert not AuditEvent.objects.filter(action="inference.evidence_requested").exists()
    with mock.patch.object(tasks.compute_evidence, "apply_async") as send, \
            django_capture_on_commit_callbacks(execute=True):
        assert client.get(f"{url}?evidence=1").json()["evidence_state"] == "pending"
    assert len(send.call_args_list) == 1
    tasks.compute_evidence(records["later"].prediction.pk)
    result = client.get(f"{url}?evidence=1").json()
    assert result["evidence_state"] == "ready" and set(result["findings"][0]["evidence"]) == set(LEADS)
