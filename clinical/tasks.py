"""Thin Celery tasks: take ids, call one service, own the retry policy."""
from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_process_init
from django.db import InterfaceError, OperationalError

from clinical import audit, services
from clinical.models import InferenceJob, Prediction

log = logging.getLogger(__name__)
TRANSIENT = (OperationalError, InterfaceError, ConnectionError, TimeoutError)


@shared_task(bind=True, acks_late=True, max_retries=3, name="clinical.tasks.run_inference")
def run_inference(self, job_id: int) -> str:
    try:
        job = services.inference_run(job_id=job_id)
    except InferenceJob.DoesNotExist:  # the record was deleted (or the message outlived its database)
        log.warning("inference job %s no longer exists; message dropped", job_id)
        return "missing"
    except TRANSIENT as exc:
        if self.request.retries >= self.max_retries:
            services.inference_fail(job_id=job_id, error=f"Gave up after {self.max_retries + 1} attempts: {exc}")
            return "failed"
        raise self.retry(exc=exc, countdown=2 ** self.request.retries) from exc
    except Exception as exc:  # a bug or a bad model file: retrying will not help, say why in the page
        log.exception("inference failed for job %s", job_id)
        services.inference_fail(job_id=job_id, error=f"{type(exc).__name__}: {exc}")
        return "failed"
    return job.state


@shared_task(bind=True, acks_late=True, max_retries=3, name="clinical.tasks.compute_evidence")
def compute_evidence(self, prediction_id: int) -> str:
    """The evidence of a stored result, on the low-priority "evidence" queue. A failure marks the evidence failed
    and leaves the result as it was."""
    try:
        prediction = services.evidence_compute(prediction_id=prediction_id)
    except Prediction.DoesNotExist:  # the ECG was deleted, or re-analysed (a new result replaced this one)
        log.warning("prediction %s no longer exists; evidence message dropped", prediction_id)
        return "missing"
    except TRANSIENT as exc:
        if self.request.retries >= self.max_retries:
            services.evidence_fail(prediction_id=prediction_id, error=f"gave up after {self.max_retries + 1} "
                                                                      f"attempts: {exc}")
            return "failed"
        raise self.retry(exc=exc, countdown=2 ** self.request.retries) from exc
    except Exception as exc:
        log.exception("evidence failed for prediction %s", prediction_id)
        services.evidence_fail(prediction_id=prediction_id, error=f"{type(exc).__name__}: {exc}")
        return "failed"
    return prediction.evidence_state


@shared_task(name="clinical.tasks.escalate_results")
def escalate_results() -> int:
    from clinical.reviews import alerts_escalate

    return len(alerts_escalate())


@shared_task(name="clinical.tasks.notify_result", max_retries=0)
def notify_result(notification_id: int) -> str:
    """E-mail and webhook for an immediate result. Not retried: the service sends at most once (a retry could page
    twice), and the escalation job e-mails again if the result still waits."""
    from clinical.models import ResultNotification
    from clinical.reviews import notification_send

    try:
        notification_send(notification_id=notification_id)
    except ResultNotification.DoesNotExist:
        log.warning("notification %s no longer exists; message dropped", notification_id)
        return "missing"
    return "sent"


@shared_task(name="clinical.tasks.send_report_webhook", max_retries=0)
def send_report_webhook(interpretation_id: int) -> str:
    """The webhook for a signed reading (clinical.interpretations.report_webhook_send): at most once per version;
    a failure is audited, and the report stays available through the API."""
    from clinical.interpretations import report_webhook_send

    return report_webhook_send(interpretation_id=interpretation_id)["status"]


@shared_task(name="clinical.tasks.audit_checkpoint")
def audit_checkpoint() -> int | None:
    return audit.audit_checkpoint().event_id


@shared_task(name="clinical.tasks.requeue_stale_jobs")
def requeue_stale_jobs() -> int:
    return services.jobs_requeue_stale()


@worker_process_init.connect
def _load_model_once(**kwargs) -> None:
    """Each worker process sets its torch threads and loads the ensemble before taking work."""
    try:
        services.get_model()
    except Exception:  # a missing model must not kill the worker; jobs will fail with the reason
        log.exception("could not preload the ensemble")
