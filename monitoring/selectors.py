"""Reads for the monitoring pages."""
from __future__ import annotations

from datetime import timedelta

from django.db.models import QuerySet
from django.utils import timezone

from monitoring.models import DriftReport, FairnessReport, MonitoringAlert

RECENT_ALERT_DAYS = 7


def alerts_recent(*, days: int = RECENT_ALERT_DAYS, limit: int = 50) -> QuerySet[MonitoringAlert]:
    since = timezone.now() - timedelta(days=days)
    return (MonitoringAlert.objects.filter(created_at__gte=since)
            .select_related("drift_report", "fairness_report")[:limit])


def alerts_current(*, days: int = RECENT_ALERT_DAYS) -> list[MonitoringAlert]:
    """The newest alert per (kind, metric) in the last days; `.repeats` counts the earlier reports that raised it.

    A breach that persists is raised by every report; people need it once, with how long it has lasted.
    """
    newest: dict[tuple[str, str], MonitoringAlert] = {}
    for alert in alerts_recent(days=days, limit=1000):  # newest first
        key = (alert.kind, alert.metric)
        if key in newest:
            newest[key].repeats += 1
            newest[key].first_seen = alert.created_at
        else:
            alert.repeats, alert.first_seen = 0, alert.created_at
            newest[key] = alert
    return list(newest.values())


def drift_reports(limit: int = 100) -> list[DriftReport]:
    return list(DriftReport.objects.select_related("requested_by")[:limit])


def fairness_reports(limit: int = 100) -> list[FairnessReport]:
    return list(FairnessReport.objects.select_related("requested_by").prefetch_related("comparisons")[:limit])
