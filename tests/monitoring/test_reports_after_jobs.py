"""The first reports of a seeded demo wait for its inference jobs, and do not wait for ever."""
from __future__ import annotations

from unittest import mock

from clinical import services
from monitoring import services as monitoring_services
from monitoring import tasks
from monitoring.models import DriftReport, FairnessReport


def _queued_job(clinician, wfdb_pair, django_capture_on_commit_callbacks) -> int:
    with django_capture_on_commit_callbacks():  # the job's message is never sent: it stays queued
        record = services.ecg_submit(actor=clinician, pseudonym="DEMO-0001", age=46, sex="F", files=wfdb_pair,
                                     fs=None)
    return record.job.pk


def test_reports_wait_while_a_job_is_queued_then_run(clinician, wfdb_pair, django_capture_on_commit_callbacks):
    job_id = _queued_job(clinician, wfdb_pair, django_capture_on_commit_callbacks)
    assert monitoring_services.reports_after_jobs(job_ids=[job_id]) is False
    assert not DriftReport.objects.exists() and not FairnessReport.objects.exists()

    services.inference_fail(job_id=job_id, error="finished one way or another")
    with (mock.patch.object(tasks.run_drift_report, "delay") as drift,
          mock.patch.object(tasks.run_fairness_report, "delay") as fairness,
          django_capture_on_commit_callbacks(execute=True)):
        assert monitoring_services.reports_after_jobs(job_ids=[job_id]) is True
    drift.assert_called_once_with(DriftReport.objects.get().pk)
    fairness.assert_called_once_with(FairnessReport.objects.get().pk)


def test_the_task_polls_a_bounded_number_of_times_then_runs_the_reports_anyway(
        clinician, wfdb_pair, django_capture_on_commit_callbacks, settings):
    job_id = _queued_job(clinician, wfdb_pair, django_capture_on_commit_callbacks)
    with (mock.patch.object(monitoring_services, "reports_after_jobs", wraps=monitoring_services.reports_after_jobs)
          as service, mock.patch.object(tasks.run_drift_report, "delay"), mock.patch.object(tasks.run_fairness_report,
                                                                                             "delay")):
        # Eager: each retry runs at once instead of after its countdown.
        assert tasks.reports_after_jobs.apply(args=([job_id],)).get() == "queued"
    assert service.call_count == tasks.REPORTS_MAX_POLLS + 1
    assert service.call_args_list[-1].kwargs["force"] is True
    assert DriftReport.objects.count() == 1 and FairnessReport.objects.count() == 1
