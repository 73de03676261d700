"""Read-only admin views of the stored reports and alerts (the staff pages under /monitoring/ are the main UI)."""
from __future__ import annotations

from django.contrib import admin

from monitoring.models import DriftReport, FairnessReport, MonitoringAlert


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(DriftReport)
class DriftReportAdmin(ReadOnly):
    list_display = ("id", "created_at", "state", "outcome", "n_current", "n_drifted", "n_features", "requested_by")
    list_filter = ("outcome", "state")


@admin.register(FairnessReport)
class FairnessReportAdmin(ReadOnly):
    list_display = ("id", "created_at", "state", "outcome", "n_predictions", "n_reviewed", "requested_by")
    list_filter = ("outcome", "state")


@admin.register(MonitoringAlert)
class MonitoringAlertAdmin(ReadOnly):
    list_display = ("created_at", "kind", "metric", "value", "threshold", "message")
    list_filter = ("kind",)
