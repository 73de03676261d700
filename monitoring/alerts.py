"""Monitoring alerts: one row per report and metric, audited, emailed to compliance staff and reviewers."""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from clinical.audit import AuditAction, audit_log
from monitoring import metrics
from monitoring.models import DriftReport, FairnessReport, MonitoringAlert

RECIPIENT_GROUPS = ("compliance", "reviewer")


def alert_raise(*, report: DriftReport | FairnessReport, metric: str, value: float | None,
                threshold: float | None, message: str, now=None) -> MonitoringAlert | None:
    """Create the alert for (report, metric) unless it exists; returns None for a duplicate.

    A breach that persists is raised by every report that sees it (so each report shows it), but emailed again
    only once ECG_ALERT_REPEAT_HOURS have passed since the last email about the same metric.
    """
    now = now or timezone.now()
    kind = MonitoringAlert.Kind.DRIFT if isinstance(report, DriftReport) else MonitoringAlert.Kind.FAIRNESS
    link = {"drift_report": report} if kind == MonitoringAlert.Kind.DRIFT else {"fairness_report": report}
    since = now - timedelta(hours=settings.ECG_ALERT_REPEAT_HOURS)
    recently_emailed = any(a.emailed_to for a in MonitoringAlert.objects.filter(
        kind=kind, metric=metric, created_at__gte=since).only("emailed_to"))
    recipients = [] if recently_emailed else _recipients()
    try:
        with transaction.atomic():
            alert = MonitoringAlert.objects.create(kind=kind, metric=metric, value=value, threshold=threshold,
                                                   message=message, created_at=now, emailed_to=recipients, **link)
            audit_log(actor=None, action=AuditAction.MONITORING_ALERT, object_type=type(report).__name__,
                      object_id=report.pk, details={"metric": metric, "value": value, "threshold": threshold,
                                                    "emailed": len(recipients)})
            transaction.on_commit(lambda: metrics.ALERTS.labels(kind=kind).inc())
            if recipients:
                transaction.on_commit(lambda: _email(alert, recipients))
    except IntegrityError:  # this report already raised it (a retried task)
        return None
    return alert


def _recipients() -> list[str]:
    users = get_user_model().objects.filter(groups__name__in=RECIPIENT_GROUPS, is_active=True).exclude(email="")
    return sorted(set(users.values_list("email", flat=True)))


def _email(alert: MonitoringAlert, recipients: list[str]) -> None:
    name = "monitoring:drift-detail" if alert.drift_report_id else "monitoring:fairness-detail"
    url = settings.ECG_SITE_URL + reverse(name, args=[alert.report.pk])
    send_mail(subject=f"[ECG-DS] {alert.get_kind_display()} alert: {alert.metric}",
              message=f"{alert.message}\n\nReport: {url}\n", from_email=None, recipient_list=recipients,
              fail_silently=False)
