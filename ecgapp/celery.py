"""The Celery app; queues and the periodic schedule are declared here, in one place."""
from __future__ import annotations

import os

from celery import Celery
from celery.schedules import crontab
from celery.signals import task_prerun, worker_init, worker_ready, worker_shutdown
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ecgapp.settings.base")

app = Celery("ecgapp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("inference"), Queue("evidence"), Queue("monitoring"), Queue("celery"), Queue("shadow"))
# Inference has its own workers; the periodic housekeeping (re-sending stale jobs, escalations) and the reports
# go to "monitoring", so a busy inference queue never delays them. Evidence (Grad-CAM after the result) has a
# queue of its own that the inference workers take last (-Q inference,evidence; the broker's priority order).
# A shadow version's analyses (monitoring.shadow) go to "shadow", taken by the monitoring worker after its own
# queues: a shadow never takes an inference worker's time from the serving path.
app.conf.task_routes = {"clinical.tasks.run_inference": {"queue": "inference"},
                       "clinical.tasks.compute_evidence": {"queue": "evidence"},
                       "clinical.tasks.requeue_stale_jobs": {"queue": "monitoring"},
                       "clinical.tasks.escalate_results": {"queue": "monitoring"},
                       "clinical.tasks.notify_result": {"queue": "monitoring"},
                       "clinical.tasks.send_report_webhook": {"queue": "monitoring"},
                       "clinical.tasks.audit_checkpoint": {"queue": "monitoring"},
                       "monitoring.tasks.shadow_inference": {"queue": "shadow"},
                       "monitoring.tasks.*": {"queue": "monitoring"}}
app.conf.task_acks_late = True
app.conf.task_reject_on_worker_lost = True
app.conf.worker_prefetch_multiplier = 1
app.conf.beat_schedule = {
    # A job whose message was lost (broker restart, crashed worker) is sent again instead of waiting forever.
    # Also sends the jobs that could not be sent at upload because the broker was down (the outbox).
    "requeue-stale-inference-jobs": {"task": "clinical.tasks.requeue_stale_jobs", "schedule": 30.0},
    # Urgent results left unacknowledged past their limit: one alert and one email per result per level.
    "escalate-unacknowledged-results": {"task": "clinical.tasks.escalate_results", "schedule": 60.0},
    # A signed note of the audit chain's head, outside the database: audit_verify then sees the newest events
    # deleted, or a rewritten row with the chain re-hashed after it.
    "audit-checkpoint": {"task": "clinical.tasks.audit_checkpoint", "schedule": 300.0},
    # Drift of the last window against the reference, every hour; fairness over the last days, every night.
    "drift-report-hourly": {"task": "monitoring.tasks.drift_hourly", "schedule": crontab(minute=5)},
    "fairness-report-daily": {"task": "monitoring.tasks.fairness_daily", "schedule": crontab(hour=2, minute=15)},
}
app.autodiscover_tasks()


@worker_init.connect
def _serve_worker_metrics(**kwargs) -> None:
    """With ECGAPP_WORKER_METRICS_PORT, the worker's main process serves /metrics for all its pool processes
    (they write to PROMETHEUS_MULTIPROC_DIR; this merges them), so Prometheus can scrape a worker container. Only
    to the addresses and the token web's /metrics accepts (monitoring.access)."""
    from django.conf import settings

    if settings.ECG_WORKER_METRICS_PORT:
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        from monitoring.access import worker_metrics_serve

        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        worker_metrics_serve(settings.ECG_WORKER_METRICS_PORT, registry)


@worker_ready.connect
def _heartbeat_start(sender=None, **kwargs) -> None:
    """Readiness sees workers through the database (monitoring.workers), for either broker. The embedded default's
    only worker (ECGAPP_SOLE_WORKER, set by `serve`) also re-sends the jobs a dead predecessor left behind."""
    from monitoring import workers

    queues = sorted(sender.app.amqp.queues.consume_from or {}) if sender is not None else []
    workers.heartbeat_start(getattr(sender, "hostname", None) or f"worker@{os.getpid()}", queues)
    if os.environ.get("ECGAPP_SOLE_WORKER") == "1":
        workers.orphaned_jobs_requeue()


@task_prerun.connect
def _task_taken(**kwargs) -> None:
    from monitoring import workers

    workers.task_taken()


@worker_shutdown.connect
def _heartbeat_stop(**kwargs) -> None:
    from monitoring import workers

    try:
        workers.heartbeat_stop()
    except Exception:  # shutting down with the database gone: the row goes stale instead
        pass
