"""Thin Celery tasks for the monitoring queue: the periodic reports and the ones asked for on demand."""
from __future__ import annotations

from celery import shared_task

from monitoring import drift, fairness


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
