from __future__ import annotations

from django.urls import path

from clinical import views

app_name = "clinical"
urlpatterns = [
    path("", views.ecg_list, name="ecg-list"),
    path("new/", views.ecg_upload, name="ecg-upload"),
    path("<uuid:public_id>/", views.ecg_detail, name="ecg-detail"),
    path("<uuid:public_id>/status/", views.ecg_status, name="ecg-status"),
    path("<uuid:public_id>/retry/", views.ecg_retry, name="ecg-retry"),
    path("<uuid:public_id>/reanalyse/", views.ecg_reanalyse, name="ecg-reanalyse"),
    path("<uuid:public_id>/read/", views.ecg_read, name="ecg-read"),
    path("<uuid:public_id>/report.pdf", views.ecg_report_pdf, name="ecg-report-pdf"),
    path("<uuid:public_id>/acknowledge/", views.ecg_acknowledge, name="ecg-acknowledge"),
    path("<uuid:public_id>/overlay-viewed/", views.ecg_overlay_viewed, name="ecg-overlay-viewed"),
    path("review/", views.review_queue, name="review-queue"),
    path("audit/", views.audit_list, name="audit-list"),
    path("audit/export.csv", views.audit_export, name="audit-export"),
]
