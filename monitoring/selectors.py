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


def drift_reports(limit: int = 100) -> list[DriftReport]:
    return list(DriftReport.objects.select_related("requested_by")[:limit])


def fairness_reports(limit: int = 100) -> list[FairnessReport]:
    return list(FairnessReport.objects.select_related("requested_by").prefetch_related("comparisons")[:limit])
