from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from clinical.api import schema, views

assert schema  # registers the token scheme with drf-spectacular

app_name = "api"
urlpatterns = [
    path("ecgs/", views.EcgSubmitApi.as_view(), name="ecg-submit"),
    path("ecgs/<uuid:public_id>/job/", views.EcgJobApi.as_view(), name="ecg-job"),
    path("ecgs/<uuid:public_id>/result/", views.EcgResultApi.as_view(), name="ecg-result"),
    path("ecgs/<uuid:public_id>/acknowledge/", views.EcgAcknowledgeApi.as_view(), name="ecg-acknowledge"),
    path("patients/<str:pseudonym>/ecgs/", views.PatientEcgListApi.as_view(), name="patient-ecgs"),
    path("model/", views.ModelInfoApi.as_view(), name="model-info"),
    path("schema/", SpectacularAPIView.as_view(api_version="v1"), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
]
