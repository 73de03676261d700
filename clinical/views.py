"""Pages: thin views that parse input, call one service or selector, and render."""
from __future__ import annotations

import numpy as np
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_POST

from clinical import selectors, services
from clinical.audit import audit_log
from clinical.ecgplot import Overlay, ecg_paper_figure, plotly_js_path
from clinical.errors import ClinicalError
from clinical.forms import EcgUploadForm
from clinical.models import EcgRecord, InferenceJob


def _record_or_404(request: HttpRequest, public_id) -> EcgRecord:
    try:
        return selectors.ecg_get_for_user(user=request.user, public_id=public_id)
    except EcgRecord.DoesNotExist as exc:
        raise Http404("No such ECG, or it is not yours to see.") from exc


@login_required
def ecg_list(request: HttpRequest) -> HttpResponse:
    records = selectors.ecg_list_for_user(user=request.user)[:100]
    return render(request, "clinical/ecg_list.html", {"records": records})


@login_required
def ecg_upload(request: HttpRequest) -> HttpResponse:
    form = EcgUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        files = {}
        for f in d["files"]:
            ext = f.name.rsplit(".", 1)[-1].lower() if "." in f.name else ""
            files[ext if ext not in files else f"{ext}{len(files)}"] = (f.name, f.read())
        try:
            record = services.ecg_submit(actor=request.user, pseudonym=d["pseudonym"], age=d["age"], sex=d["sex"],
                                         files=files, fs=d["fs"])
        except ClinicalError as exc:
            form.add_error(exc.field if exc.field in form.fields else "files", exc.message)
        else:
            return redirect("clinical:ecg-detail", public_id=record.public_id)
    return render(request, "clinical/ecg_upload.html", {"form": form}, status=400 if form.errors else 200)


def _figure(record: EcgRecord) -> dict:
    overlays = {}
    prediction = getattr(record, "prediction", None)
    if prediction is not None:
        for f in prediction.findings.all():
            ex = prediction.explanations.get(f.overlay_key)
            if ex:
                overlays[f.overlay_key] = Overlay(label=f.code, display=f.display,
                                                  lead_maps=np.asarray(ex["lead_maps"], dtype=np.float32),
                                                  lead_relevance=np.asarray(ex["lead_relevance"], dtype=np.float32))
    return ecg_paper_figure(record.signal_array(), record.fs, overlays=overlays)


@login_required
def ecg_detail(request: HttpRequest, public_id) -> HttpResponse:
    record = _record_or_404(request, public_id)
    audit_log(actor=request.user, action="ecg.view", object_type="EcgRecord", object_id=record.public_id)
    prediction = getattr(record, "prediction", None)
    return render(request, "clinical/ecg_detail.html", {
        "record": record,
        "job": record.job,
        "prediction": prediction,
        "findings": list(prediction.findings.all()) if prediction else [],
        "recommendations": list(prediction.recommendations.all()) if prediction else [],
        "plot": _figure(record),
        "quality_warnings": [i for i in record.quality.get("issues", []) if i.get("severity") == "warn"],
    })


@login_required
def ecg_status(request: HttpRequest, public_id) -> JsonResponse:
    job = _record_or_404(request, public_id).job
    return JsonResponse({"state": job.state, "progress": job.progress, "stage": job.stage, "error": job.error,
                         "attempts": job.attempts})


@login_required
@require_POST
def ecg_retry(request: HttpRequest, public_id) -> HttpResponse:
    record = _record_or_404(request, public_id)
    try:
        services.inference_retry(job=record.job, actor=request.user)
    except ClinicalError as exc:
        messages.error(request, exc.message)
    return redirect(reverse("clinical:ecg-detail", kwargs={"public_id": record.public_id}))


@cache_control(max_age=86400, public=True)
def plotly_js(request: HttpRequest) -> FileResponse:
    """Plotly.js from the installed plotly package: no CDN, so the page works on a closed hospital network."""
    return FileResponse(open(plotly_js_path(), "rb"), content_type="application/javascript")


__all__ = ["InferenceJob"]
