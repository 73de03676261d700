"""Thin Celery tasks for the monitoring queue: the periodic reports and the ones asked for on demand."""
from __future__ import annotations

from celery import shared_task

from monitoring import drift, fairness, services

# The demo's first reports wait for its ECGs: checked every REPORTS_POLL_S seconds, for at most about 20 minutes,
# then run with whatever has finished (a slow machine still gets its reports, and they say how many they saw).
REPORTS_POLL_S = 10
REPORTS_MAX_POLLS = 120


@shared_task(acks_late=True, name="monitoring.tasks.run_drift_report")
def run_drift_report(report_id: int) -> str:
    return drift.drift_report_run(report_id=report_id).outcome


@shared_task(acks_late=True, name="monitoring.tasks.run_fairness_report")
def run_fairness_report(report_id: int) -> str:
    return fairness.fairness_report_run(report_id=report_id).outcome


@shared_task(name="monitoring.tasks.drift_hourly")
def drift_hourly() -> str:
    return drift.drift_report_run(report_id=drift.drift_report_create().pk).outcome


@shared_task(name="monitoring.tasks.fairness_daily")
def fairness_daily() -> str:
    return fairness.fairness_report_run(report_id=fairness.fairness_report_create().pk).outcome


@shared_task(bind=True, max_retries=REPORTS_MAX_POLLS, name="monitoring.tasks.reports_after_jobs")
def reports_after_jobs(self, job_ids: list[int]) -> str:
    last_try = self.request.retries >= self.max_retries
    if not services.reports_after_jobs(job_ids=job_ids, force=last_try):
        raise self.retry(countdown=REPORTS_POLL_S)
    return "queued"
