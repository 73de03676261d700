"""Reports asked for from the compliance pages (or by the demo's seed): create the queued row, then hand it to a
worker after commit."""
from __future__ import annotations

from django.db import transaction

from clinical.errors import ApplicationError
from clinical.models import InferenceJob
from monitoring.drift import drift_report_create
from monitoring.fairness import fairness_report_create
from monitoring.models import DriftReport, FairnessReport


def report_request(*, kind: str, user) -> DriftReport | FairnessReport:
    """Queue a drift or fairness report on demand; only monitoring staff may ask."""
    from monitoring import tasks

    if not user.has_perm("clinical.view_monitoring"):
        raise ApplicationError("Only compliance staff can run monitoring reports.")
    with transaction.atomic():
        if kind == "drift":
            report = drift_report_create(requested_by=user)
            transaction.on_commit(lambda: tasks.run_drift_report.delay(report.pk))
        elif kind == "fairness":
            report = fairness_report_create(requested_by=user)
            transaction.on_commit(lambda: tasks.run_fairness_report.delay(report.pk))
        else:
            raise ApplicationError(f"Unknown report kind {kind!r}.")
    return report


def reports_after_jobs(*, job_ids: list[int], force: bool = False) -> bool:
    """Queue a drift and a fairness report once none of these inference jobs is still waiting or running (or at
    once with ``force``), so that the reports count their predictions. False, queueing nothing, while some are."""
    from monitoring import tasks

    pending = InferenceJob.objects.filter(pk__in=job_ids,
                                          state__in=(InferenceJob.State.QUEUED, InferenceJob.State.RUNNING))
    if pending.exists() and not force:
        return False
    with transaction.atomic():
        drift = drift_report_create()
        fairness = fairness_report_create()
        transaction.on_commit(lambda: tasks.run_drift_report.delay(drift.pk))
        transaction.on_commit(lambda: tasks.run_fairness_report.delay(fairness.pk))
    return True
