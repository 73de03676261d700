from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from clinical.api import schema, views
from monitoring.access import SchemaReaders

assert schema  # registers the token scheme with drf-spectacular

app_name = "api"
urlpatterns = [
    path("ecgs/", views.EcgSubmitApi.as_view(), name="ecg-submit"),
    path("ecgs/<uuid:public_id>/job/", views.EcgJobApi.as_view(), name="ecg-job"),
    path("ecgs/<uuid:public_id>/result/", views.EcgResultApi.as_view(), name="ecg-result"),
    path("ecgs/<uuid:public_id>/reanalyse/", views.EcgReanalyseApi.as_view(), name="ecg-reanalyse"),
    path("ecgs/<uuid:public_id>/acknowledge/", views.EcgAcknowledgeApi.as_view(), name="ecg-acknowledge"),
    path("ecgs/<uuid:public_id>/interpretations/", views.EcgInterpretationListApi.as_view(),
         name="ecg-interpretations"),
    path("ecgs/<uuid:public_id>/confirm/", views.EcgConfirmApi.as_view(), name="ecg-confirm"),
    path("ecgs/<uuid:public_id>/amend/", views.EcgAmendApi.as_view(), name="ecg-amend"),
    path("ecgs/<uuid:public_id>/report.pdf", views.EcgReportPdfApi.as_view(), name="ecg-report-pdf"),
    path("ecgs/<uuid:public_id>/report/fhir/", views.EcgReportFhirApi.as_view(), name="ecg-report-fhir"),
    path("ecgs/<uuid:public_id>/report/hl7/", views.EcgReportHl7Api.as_view(), name="ecg-report-hl7"),
    path("patients/<str:pseudonym>/ecgs/", views.PatientEcgListApi.as_view(), name="patient-ecgs"),
    path("model/", views.ModelInfoApi.as_view(), name="model-info"),
    path("models/<str:version>/comparison/", views.ModelComparisonApi.as_view(), name="model-comparison"),
    # Authenticated users (session or token) and allowed addresses; the docs page is a shell that loads it.
    path("schema/", SpectacularAPIView.as_view(api_version="v1", permission_classes=[SchemaReaders]), name="schema"),
    # The split view serves Swagger UI's init script as its own response (?script), so the page needs no inline
    # script under our Content-Security-Policy.
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
]
