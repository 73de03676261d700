from __future__ import annotations

from django.urls import path

from monitoring import modelcard, views

app_name = "monitoring"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("run/<str:kind>/", views.report_run, name="report-run"),
    path("drift/", views.drift_list, name="drift-list"),
    path("drift/<int:pk>/", views.drift_detail, name="drift-detail"),
    path("drift/<int:pk>/evidently.html", views.drift_html, name="drift-html"),
    path("drift/<int:pk>/status", views.drift_status, name="drift-status"),
    path("fairness/", views.fairness_list, name="fairness-list"),
    path("fairness/<int:pk>/", views.fairness_detail, name="fairness-detail"),
    path("fairness/<int:pk>/status", views.fairness_status, name="fairness-status"),
    path("model-card/", modelcard.model_card, name="model-card"),
    path("calibration/", views.calibration_list, name="calibration-list"),
    path("calibration/propose/", views.calibration_propose, name="calibration-propose"),
    path("calibration/<int:pk>/", views.calibration_detail, name="calibration-detail"),
    path("calibration/<int:pk>/<str:action>/", views.calibration_change, name="calibration-change"),
    path("models/", views.model_list, name="model-list"),
    path("models/rollback/", views.model_change, {"action": "rollback"}, name="model-rollback"),
    path("models/<int:pk>/shadow/start/", views.model_change, {"action": "shadow_start"}, name="model-shadow-start"),
    path("models/<int:pk>/shadow/stop/", views.model_change, {"action": "shadow_stop"}, name="model-shadow-stop"),
    path("models/<int:pk>/comparison/", views.model_comparison, name="model-comparison"),
    path("models/<int:pk>/promote/", views.model_change, {"action": "promote"}, name="model-promote"),
    path("models/changes/<int:pk>/approve/", views.model_change, {"action": "approve"}, name="model-approve"),
    path("models/changes/<int:pk>/withdraw/", views.model_change, {"action": "withdraw"}, name="model-withdraw"),
]
