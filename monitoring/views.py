"""Compliance pages: alerts, drift and fairness reports (run on demand with progress), Evidently HTML, site
calibration versions (propose, review before/after, activate, roll back)."""
from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_POST

from clinical.errors import ApplicationError
from clinical.forms import page_error
from monitoring import calibration, charts, registry, selectors, shadow
from monitoring.drift import window_label
from monitoring.modelcard import load_manifest
from monitoring.models import (
    CalibrationVersion,
    DriftReport,
    FairnessMetric,
    FairnessReport,
    ModelChange,
    ModelVersion,
    ShadowPrediction,
)
from monitoring.services import report_request

monitoring_staff = permission_required("clinical.view_monitoring", raise_exception=True)


@login_required
@monitoring_staff
def overview(request: HttpRequest) -> HttpResponse:
    drift = selectors.drift_reports(limit=1)
    return render(request, "monitoring/overview.html", {
        "alerts": selectors.alerts_current(),
        "drift": drift,
        "drift_window": window_label(drift[0]) if drift else None,
        # What the next scheduled report will use; each report shows the window it did use.
        "drift_window_hours": settings.ECG_DRIFT_WINDOW_HOURS,
        "drift_reference": settings.ECG_DRIFT_REFERENCE,
        "fairness": selectors.fairness_reports(limit=1),
    })


@login_required
@monitoring_staff
@require_POST
def report_run(request: HttpRequest, kind: str) -> HttpResponse:
    try:
        report = report_request(kind=kind, user=request.user)
    except ApplicationError as exc:
        page_error(request, exc)
        return redirect("monitoring:overview")
    return redirect(f"monitoring:{kind}-detail", pk=report.pk)


def _status(report: DriftReport | FairnessReport) -> JsonResponse:
    return JsonResponse({"state": report.state, "progress": report.progress, "stage": report.stage,
                         "outcome": report.outcome})


@login_required
@monitoring_staff
def drift_list(request: HttpRequest) -> HttpResponse:
    reports = selectors.drift_reports()
    return render(request, "monitoring/drift_list.html", {
        "reports": [(r, window_label(r)) for r in reports], "trend": charts.drift_trend(reports)})


@login_required
@monitoring_staff
def drift_detail(request: HttpRequest, pk: int) -> HttpResponse:
    report = get_object_or_404(DriftReport, pk=pk)
    return render(request, "monitoring/drift_detail.html", {
        "report": report, "window": window_label(report), "features": list(report.features.all()),
        "alerts": list(report.alerts.all())})


@login_required
@monitoring_staff
def drift_status(request: HttpRequest, pk: int) -> JsonResponse:
    return _status(get_object_or_404(DriftReport, pk=pk))


@login_required
@monitoring_staff
@xframe_options_sameorigin
def drift_html(request: HttpRequest, pk: int) -> FileResponse:
    report = get_object_or_404(DriftReport, pk=pk)
    if not report.html:
        raise Http404("This report has no Evidently HTML (too little data, or it has not finished).")
    response = FileResponse(report.html.open("rb"), content_type="text/html; charset=utf-8")
    # Evidently's report is one self-contained page with inline scripts. It runs sandboxed: as an opaque origin
    # it cannot read this site's cookies or pages, and it may load nothing from elsewhere.
    response["Content-Security-Policy"] = (
        "sandbox allow-scripts allow-popups; default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
        "style-src 'unsafe-inline'; img-src data: blob:; font-src data:")
    return response


@login_required
@monitoring_staff
def fairness_list(request: HttpRequest) -> HttpResponse:
    reports = selectors.fairness_reports()
    trends = [(name, charts.comparison_trend(reports, metric), f"trend-{metric}")
              for metric, name in charts.COMPARISON_NAMES.items()]
    return render(request, "monitoring/fairness_list.html", {"reports": reports, "trends": trends})


@login_required
@monitoring_staff
def fairness_detail(request: HttpRequest, pk: int) -> HttpResponse:
    report = get_object_or_404(FairnessReport, pk=pk)
    rows = list(report.metrics.all())
    sections = [(metric, name, charts.metric_forest(rows, metric),
                 [r for r in rows if r.metric == metric])
                for metric, name in charts.METRIC_NAMES.items()]
    return render(request, "monitoring/fairness_detail.html", {
        "report": report, "sections": sections, "comparisons": list(report.comparisons.all()),
        "alerts": list(report.alerts.all()),
        "too_small": [r for r in rows if r.status == FairnessMetric.Status.TOO_SMALL],
        "metric_names": charts.METRIC_NAMES, "comparison_names": charts.COMPARISON_NAMES,
        "dimension_names": charts.DIMENSION_NAMES})


@login_required
@monitoring_staff
def fairness_status(request: HttpRequest, pk: int) -> JsonResponse:
    return _status(get_object_or_404(FairnessReport, pk=pk))


# -- site calibration -----------------------------------------------------------------------------------------------

calibration_staff = permission_required(calibration.PERMISSION, raise_exception=True)


def _model_version() -> str | None:
    """The served model's version, from its manifest (the pages need no loaded ensemble)."""
    manifest = load_manifest(registry.serving_weights_dir())
    return manifest["model_version"] if manifest else None


@login_required
@calibration_staff
def calibration_list(request: HttpRequest) -> HttpResponse:
    model_version = _model_version()
    versions = calibration.calibration_versions(model_version=model_version) if model_version else []
    return render(request, "monitoring/calibration_list.html", {
        "model_version": model_version, "versions": versions,
        "active": next((v for v in versions if v.status == CalibrationVersion.Status.ACTIVE), None),
        "reviewed": calibration.reviewed_count(model_version=model_version) if model_version else 0,
        "min_count": calibration.MIN_SUPPORT})


@login_required
@calibration_staff
def calibration_detail(request: HttpRequest, pk: int) -> HttpResponse:
    version = get_object_or_404(CalibrationVersion.objects.select_related(
        "parent", "replaced", "created_by", "activated_by", "retired_by"), pk=pk)
    manifest = load_manifest(registry.serving_weights_dir()) or {}
    return render(request, "monitoring/calibration_detail.html", {
        "version": version, **calibration.version_table(version=version, manifest=manifest),
        "in_force": calibration.calibration_active(model_version=version.model_version)})


@login_required
@calibration_staff
@require_POST
def calibration_propose(request: HttpRequest) -> HttpResponse:
    from clinical.services import get_ensemble

    try:
        version = calibration.calibration_propose(ens=get_ensemble(), user=request.user)
    except ApplicationError as exc:
        page_error(request, exc)
        return redirect("monitoring:calibration-list")
    messages.success(request, f"Calibration {version.version} proposed: review the before/after table, then "
                              "activate it or leave it.")
    return redirect("monitoring:calibration-detail", pk=version.pk)


@login_required
@calibration_staff
@require_POST
def calibration_change(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """Activate (after ticking the confirmation) or roll back one version."""
    version = get_object_or_404(CalibrationVersion, pk=pk)
    try:
        if action == "activate":
            if request.POST.get("confirm") != "yes":
                raise ApplicationError("Tick the box to confirm that you have read the before/after table.", "confirm")
            calibration.calibration_activate(version=version, user=request.user)
            messages.success(request, f"Calibration {version.version} is in force for every new ECG of "
                                      f"{version.model_version}.")
        elif action == "rollback":
            restored = calibration.calibration_rollback(version=version, user=request.user)
            messages.success(request, f"Calibration {version.version} rolled back: "
                                      f"{restored.version if restored else 'the manifest calibration'} is in force.")
        else:
            raise Http404("No such action.")
    except ApplicationError as exc:
        page_error(request, exc)
    return redirect("monitoring:calibration-detail", pk=version.pk)


# -- model versions (monitoring.registry) ---------------------------------------------------------------------------

models_staff = permission_required(registry.PERMISSION, raise_exception=True)


@login_required
@models_staff
def model_list(request: HttpRequest) -> HttpResponse:
    versions = registry.model_versions()
    history = registry.model_history()
    image = load_manifest(settings.ECG_WEIGHTS_DIR) or {}
    return render(request, "monitoring/model_list.html", {
        "versions": versions, "history": history,
        "serving": next((v for v in versions if v.state == ModelVersion.State.SERVING), None),
        "image_version": image.get("model_version"),
        "pending": next((c for c in history if c.status == ModelChange.Status.PENDING), None),
        "rollback_target": registry.rollback_target(), "two_person": registry.two_person_rule(),
        "min_reason": registry.MIN_REASON,
        "shadow": next((v for v in versions if v.state == ModelVersion.State.SHADOW), None),
        "shadowable": [v for v in versions if v.state in (ModelVersion.State.CANDIDATE, ModelVersion.State.RETIRED)],
        "compared": set(ShadowPrediction.objects.values_list("version_id", flat=True).distinct())})


@login_required
@models_staff
def model_comparison(request: HttpRequest, pk: int) -> HttpResponse:
    """A shadow version against the serving results it ran beside (monitoring.shadow), for compliance."""
    version = get_object_or_404(ModelVersion, pk=pk)
    return render(request, "monitoring/model_comparison.html", {
        "version": version, "c": shadow.comparison(version)})


@login_required
@models_staff
@require_POST
def model_change(request: HttpRequest, action: str, pk: int = 0) -> HttpResponse:
    """Promote a version, approve or withdraw a pending change, roll back: each signed with the password."""
    password, reason = request.POST.get("password"), request.POST.get("reason", "")
    try:
        if action == "promote":
            version = get_object_or_404(ModelVersion, pk=pk)
            change = registry.model_promote(version=version, user=request.user, password=password, reason=reason)
            if change.status == ModelChange.Status.PENDING:
                messages.success(request, f"Promotion of {version.version} requested: it serves once another "
                                          "compliance user signs it.")
            else:
                messages.success(request, f"{version.version} serves every new ECG from now on.")
        elif action == "approve":
            change = registry.model_change_approve(change=get_object_or_404(ModelChange, pk=pk), user=request.user,
                                                   password=password)
            messages.success(request, f"Signed: {change.version.version} serves every new ECG from now on.")
        elif action == "withdraw":
            change = registry.model_change_withdraw(change=get_object_or_404(ModelChange, pk=pk), user=request.user)
            messages.success(request, f"The {change.get_kind_display().lower()} to {change.version.version} was "
                                      "withdrawn.")
        elif action == "shadow_start":
            version = registry.model_shadow_start(version=get_object_or_404(ModelVersion, pk=pk), user=request.user)
            messages.success(request, f"{version.version} runs in shadow on every new ECG from now on; clinicians "
                                      "see only the serving model's results.")
        elif action == "shadow_stop":
            version = registry.model_shadow_stop(version=get_object_or_404(ModelVersion, pk=pk), user=request.user)
            messages.success(request, f"{version.version} no longer runs in shadow; its comparison stays.")
        elif action == "rollback":
            change = registry.model_rollback(user=request.user, password=password, reason=reason)
            messages.success(request, f"Rolled back: {change.version.version} serves again "
                                      f"({change.replaced.version} retired).")
        else:
            raise Http404("No such action.")
    except ApplicationError as exc:
        page_error(request, exc)
    return redirect("monitoring:model-list")
