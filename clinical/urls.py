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
]
