"""What running any stored report involves: state and progress in its row (for the page's progress bar)."""
from __future__ import annotations

import logging
from collections.abc import Callable

from django.utils import timezone

from monitoring.models import ReportRun

log = logging.getLogger(__name__)


def report_progress(report: ReportRun, progress: int, stage: str) -> None:
    type(report).objects.filter(pk=report.pk).update(progress=progress, stage=stage)


def report_execute(model: type[ReportRun], report_id: int, compute: Callable[[ReportRun], None],
                   first_stage: str) -> ReportRun:
    """Run `compute` on a queued report once: a finished report is returned as is (a redelivered task); a
    failure is recorded in the row with its reason, then raised."""
    report = model.objects.get(pk=report_id)
    if report.finished:
        return report
    model.objects.filter(pk=report.pk).update(state=model.State.RUNNING, progress=2, stage=first_stage)
    try:
        compute(report)
    except Exception as exc:
        log.exception("%s %s failed", model.__name__, report.pk)
        model.objects.filter(pk=report.pk).update(state=model.State.FAILED, error=str(exc)[:2000], stage="Failed",
                                                  finished_at=timezone.now())
        raise
    return model.objects.get(pk=report.pk)
