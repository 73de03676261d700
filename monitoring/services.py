"""Reports asked for from the compliance pages: create the queued row, then hand it to a worker after commit."""
from __future__ import annotations

from django.db import transaction

from clinical.errors import ClinicalError
from monitoring.drift import drift_report_create
from monitoring.fairness import fairness_report_create
from monitoring.models import DriftReport, FairnessReport


def report_request(*, kind: str, user) -> DriftReport | FairnessReport:
    """Queue a drift or fairness report on demand; only monitoring staff may ask."""
    from monitoring import tasks

    if not user.has_perm("clinical.view_monitoring"):
        raise ClinicalError("Only compliance staff can run monitoring reports.")
    with transaction.atomic():
        if kind == "drift":
            report = drift_report_create(requested_by=user)
            transaction.on_commit(lambda: tasks.run_drift_report.delay(report.pk))
        elif kind == "fairness":
            report = fairness_report_create(requested_by=user)
            transaction.on_commit(lambda: tasks.run_fairness_report.delay(report.pk))
        else:
            raise ClinicalError(f"Unknown report kind {kind!r}.")
    return report
