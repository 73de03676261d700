from __future__ import annotations

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    """Health endpoints now; drift, fairness and metrics arrive with the monitoring issue."""

    name = "monitoring"
    default_auto_field = "django.db.models.BigAutoField"
