"""The sweeper (jobs_requeue_stale, every 30 s) sends again what was never sent or was lost: the outbox's other half.
The fault suite kills the broker and workers for real; these check the rule on its own, in the fast suite."""
from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from clinical import services, tasks
from clinical.models import InferenceJob


def submit(user, files):
    return services.ecg_submit(actor=user, pseudonym="PT-SW", age=61, sex="F", files=files, fs=None)


def sweep(django_capture_on_commit_callbacks) -> tuple[int, list]:
    """One sweep as the beat task runs it; returns its count and the job ids it sent to the broker after commit."""
    with mock.patch.object(tasks.run_inference, "apply_async") as send, \
            django_capture_on_commit_callbacks(execute=True):
        n = services.jobs_requeue_stale()
    return n, [c.args[0] for c in send.call_args_list]


def test_a_job_the_broker_never_got_is_sent_by_the_next_sweep(clinician, wfdb_pair,
                                                              django_capture_on_commit_callbacks):
    with mock.patch.object(tasks.run_inference, "apply_async", side_effect=ConnectionError("broker down")), \
            django_capture_on_commit_callbacks(execute=True):
        record = submit(clinician, wfdb_pair)
    job = InferenceJob.objects.get(record=record)
    assert job.state == InferenceJob.State.QUEUED and job.enqueued_at is None  # kept in the outbox

    assert sweep(django_capture_on_commit_callbacks) == (1, [(job.id,)])
    job.refresh_from_db()
    assert job.state == InferenceJob.State.QUEUED and job.enqueued_at is not None
    assert sweep(django_capture_on_commit_callbacks) == (0, [])  # sent once, not at every sweep


@pytest.mark.parametrize("state, age, resent", [
    (InferenceJob.State.QUEUED, services.STALE_QUEUED + timedelta(seconds=5), True),
    (InferenceJob.State.QUEUED, services.STALE_QUEUED - timedelta(seconds=30), False),
    (InferenceJob.State.RUNNING, services.STALE_RUNNING + timedelta(seconds=5), True),
    (InferenceJob.State.RUNNING, services.STALE_RUNNING - timedelta(minutes=1), False),
    (InferenceJob.State.DONE, services.STALE_RUNNING * 3, False),
])
def test_a_lost_message_is_sent_again_once_it_is_old(clinician, wfdb_pair, django_capture_on_commit_callbacks,
                                                      state, age, resent):
    with mock.patch.object(tasks.run_inference, "apply_async"), django_capture_on_commit_callbacks(execute=True):
        record = submit(clinician, wfdb_pair)
    then = timezone.now() - age
    InferenceJob.objects.filter(record=record).update(state=state, enqueued_at=then, started_at=then)
    job = InferenceJob.objects.get(record=record)
    assert sweep(django_capture_on_commit_callbacks) == ((1, [(job.id,)]) if resent else (0, []))
    job.refresh_from_db()
    if resent:
        assert job.state == InferenceJob.State.QUEUED and job.enqueued_at > then
    else:
        assert job.state == state


def test_the_worker_that_starts_sends_every_running_job_again_at_once(clinician, wfdb_pair,
                                                                     django_capture_on_commit_callbacks):
    """The only worker of an installation knows, when it starts, that every running job is orphaned."""
    from monitoring.workers import orphaned_jobs_requeue

    with mock.patch.object(tasks.run_inference, "apply_async"), django_capture_on_commit_callbacks(execute=True):
        record = submit(clinician, wfdb_pair)
    InferenceJob.objects.filter(record=record).update(state=InferenceJob.State.RUNNING, started_at=timezone.now())
    with mock.patch.object(tasks.run_inference, "apply_async") as send, \
            django_capture_on_commit_callbacks(execute=True):
        assert orphaned_jobs_requeue() == 1
    assert [c.args[0] for c in send.call_args_list] == [(record.job.id,)]
