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


@shared_task(bind=True, acks_late=True, max_retries=3, name="monitoring.tasks.shadow_inference")
def shadow_inference(self, version_id: int, prediction_id: int, deferred_s: float = 0.0) -> str:
    """A shadow version's analysis of an ECG the serving model analysed, on the "shadow" queue. While serving work
    is in hand (monitoring.shadow.serving_busy) it waits, up to ECG_SHADOW_DEFER_MAX_S in all, so that the shadow
    never competes with the serving path for the CPU: in the task on a worker of the shadow queue alone, else sent
    again for later, so that it never holds a shared worker (the embedded one runs every queue in one process)
    while an ECG waits. Idempotent; a failure is logged and leaves the serving result as it was."""
    import logging

    from django.conf import settings

    from clinical.models import Prediction
    from clinical.services import PUBLISH_RETRY
    from clinical.tasks import TRANSIENT
    from monitoring import shadow

    try:
        if deferred_s < settings.ECG_SHADOW_DEFER_MAX_S and shadow.serving_busy():
            if shadow.dedicated_worker(self.app):  # wait here: the messages behind this one cost nothing meanwhile
                shadow.wait_while_busy(settings.ECG_SHADOW_DEFER_MAX_S - deferred_s)
            else:
                wait = shadow.defer_wait_s(deferred_s)
                shadow_inference.apply_async((version_id, prediction_id), {"deferred_s": deferred_s + wait},
                                             countdown=wait, retry=True, retry_policy=PUBLISH_RETRY)
                return "deferred"
        row = shadow.shadow_run(version_id=version_id, prediction_id=prediction_id)
    except Prediction.DoesNotExist:  # deleted, or re-analysed meanwhile (the new result is sent again)
        return "missing"
    except TRANSIENT as exc:
        if self.request.retries >= self.max_retries:
            logging.getLogger(__name__).exception("shadow inference gave up on prediction %s", prediction_id)
            return "failed"
        raise self.retry(exc=exc, countdown=2 ** self.request.retries) from exc
    except Exception:
        logging.getLogger(__name__).exception("shadow inference failed on prediction %s", prediction_id)
        return "failed"
    return "stored" if row is not None else "skipped"
