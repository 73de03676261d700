"""Pages: thin views that parse input, call one service or selector, and render."""
from __future__ import annotations

import csv
import json
from datetime import datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_POST

from clinical import access, interpretations, reviews, selectors, services
from clinical import measurements as ecg_measures
from clinical.audit import AuditAction, audit_log
from clinical.comparison import ecg_acquired_at, ecg_compare, latest_interpretation, prior_ecg
from clinical.ecgplot import Overlay, ecg_paper_figure, overview_figure, plotly_js_path
from clinical.errors import ApplicationError
from clinical.filters import AuditEventFilter
from clinical.forms import (
    AcknowledgeForm,
    AuditFilterForm,
    EcgUploadForm,
    ReadingForm,
    ReanalyseForm,
    WorklistFilterForm,
    form_error,
    page_error,
)
from clinical.intake.device import measurement_rows
from clinical.models import EcgRecord, Interpretation, Prediction
from clinical.reports.services import PDF, report_export
from clinical.reviews import notification_opened, result_acknowledge
from mlcore.labels import STATEMENT_KEY, SUPERCLASS_KEY, SUPERCLASS_NAMES
from mlcore.preprocess import WINDOW_S


def _record_or_404(request: HttpRequest, public_id, state_only: bool = False) -> EcgRecord:
    try:
        return selectors.ecg_get_for_user(user=request.user, public_id=public_id, state_only=state_only)
    except EcgRecord.DoesNotExist as exc:
        raise Http404("No such ECG, or it is not yours to see.") from exc


def _can_see_ecgs(user) -> bool:
    return user.has_perm("clinical.upload_ecg") or user.has_perm("clinical.view_all_ecgs")


@login_required
def ecg_list(request: HttpRequest) -> HttpResponse:
    if not _can_see_ecgs(request.user):
        return _forbidden(request, "Your role has no access to ECGs.")
    records = list(selectors.ecg_list_for_user(user=request.user)[:100])
    access.ecg_list_audit(actor=request.user, records=records, via=access.PAGE, view="ecg_list")
    for r in records:  # both prefetched: no query per row
        prediction = getattr(r, "prediction", None)
        r.top_finding = next(iter(prediction.findings.all()), None) if prediction else None
        r.reading = max(r.interpretations.all(), key=lambda i: i.version, default=None)
    return render(request, "clinical/ecg_list.html", {"records": records})


def _forbidden(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "403.html", {"message": message}, status=403)


@login_required
@permission_required("clinical.upload_ecg", raise_exception=True)
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
        except ApplicationError as exc:
            form_error(form, exc, "files")
        else:
            return redirect("clinical:ecg-detail", public_id=record.public_id)
    return render(request, "clinical/ecg_upload.html", {"form": form}, status=400 if form.errors else 200)


def _figure(record: EcgRecord) -> dict:
    overlays = {}
    prediction = getattr(record, "prediction", None)
    if prediction is not None:
        for f in prediction.findings.all():
            ex = prediction.evidence_for(f.overlay_key)
            if ex:
                overlays[f.overlay_key] = Overlay(label=f.code, display=f.display, lead_maps=ex.lead_maps,
                                                  lead_relevance=ex.lead_relevance)
    # The analysed window, as the model read it: the evidence maps cover these 10 s.
    return ecg_paper_figure(record.window_array(), record.fs, overlays=overlays)


def _ack_form(prediction, data=None) -> AcknowledgeForm:
    findings = list(prediction.findings.all())
    missable = reviews.missable_keys(prediction, {f.overlay_key for f in findings})
    names = services.statement_names()
    classes = [(f"{SUPERCLASS_KEY}{c}", SUPERCLASS_NAMES.get(c, c)) for c in prediction.superclass
               if f"{SUPERCLASS_KEY}{c}" in missable]
    statements = sorted((k, names.get(k.split(":", 1)[1], k.split(":", 1)[1]))
                        for k in missable if k.startswith(STATEMENT_KEY))
    return AcknowledgeForm(data, findings=findings, missable=classes, missable_statements=statements)


@login_required
def ecg_detail(request: HttpRequest, public_id) -> HttpResponse:
    return _detail(request, _record_or_404(request, public_id))


def _split_findings(findings: list) -> dict:
    """The model's findings, and apart from them those whose threshold is not a validated operating point (too few
    examples in the validation data): shown as "not validated", not as findings (they still reach the actions)."""
    unvalidated = [f for f in findings if (f.operating_point or {}).get("validated") is False]
    return {"findings": [f for f in findings if f not in unvalidated], "unvalidated_findings": unvalidated}


def _detail(request: HttpRequest, record: EcgRecord, ack_form: AcknowledgeForm | None = None,
            status: int = 200, reanalyse_form: ReanalyseForm | None = None) -> HttpResponse:
    """The result page; ack_form / reanalyse_form: a refused acknowledgement or window, shown with its errors."""
    access.ecg_view_audit(actor=request.user, record=record, via=access.PAGE, view="ecg_detail")
    prediction = getattr(record, "prediction", None)
    if prediction is not None:
        notification_opened(prediction=prediction, user=request.user)
        if prediction.evidence_state == Prediction.EvidenceState.OFF:  # first view: its evidence is computed now
            prediction = record.prediction = services.evidence_request(prediction=prediction, actor=request.user)
    result = selectors.ecg_result(record=record)  # what the API's result gives, from the same selector
    can_ack = bool(prediction and prediction.awaits_review and request.user.has_perm("clinical.acknowledge_result"))
    return render(request, "clinical/ecg_detail.html", {
        "reading": result.interpretation,
        "can_read": bool(prediction and request.user.has_perm("clinical.acknowledge_result")),
        "acknowledgement": result.acknowledgement,
        "ack_form": (ack_form or _ack_form(prediction)) if can_ack else None,
        "record": record,
        "job": record.job,
        "prediction": prediction,
        **_split_findings(result.model_findings),
        "measured_findings": result.measured_findings,
        "recommendations": result.recommendations,
        "not_assessed": result.not_assessed,
        "plot": _figure(record),
        "measurement_line": ecg_measures.display_line(record.measurements),
        "median_beats": ecg_measures.median_beats_view(record.measurements),
        "measurement_convention": (record.measurements or {}).get("convention"),
        "device_measurements": measurement_rows((record.device or {}).get("measurements") or {}),
        "quality_warnings": result.quality_warnings,
        "overview": (overview_figure(record.signal_array(), record.fs, start_s=record.window_start_s,
                                     end_s=record.window_end_s) if record.duration_s > WINDOW_S else None),
        "latest_start_s": max(0.0, int((record.duration_s - WINDOW_S) * 10) / 10),
        "reanalyse_form": (reanalyse_form or ReanalyseForm(initial={"window_start_s": record.window_start_s}))
        if request.user.has_perm("clinical.upload_ecg") and record.duration_s > WINDOW_S else None,
        "reanalysis_of": _visible_or_none(request, record.reanalysis_of),
        "reanalyses": selectors.ecg_reanalyses_for_user(user=request.user, record=record.reanalysis_of or record),
    }, status=status)


def _visible_or_none(request: HttpRequest, record: EcgRecord | None) -> EcgRecord | None:
    if record is None:
        return None
    try:
        return selectors.ecg_get_for_user(user=request.user, public_id=record.public_id)
    except EcgRecord.DoesNotExist:
        return None


@login_required
@require_POST
@permission_required("clinical.upload_ecg", raise_exception=True)
def ecg_reanalyse(request: HttpRequest, public_id) -> HttpResponse:
    """Analyse another 10 s of this ECG: a new record and result; this one stays as it is."""
    record = _record_or_404(request, public_id)
    form = ReanalyseForm(request.POST)
    if form.is_valid():
        try:
            new = services.ecg_reanalyse(actor=request.user, record=record,
                                         window_start_s=form.cleaned_data["window_start_s"])
        except ApplicationError as exc:
            form_error(form, exc, "window_start_s")
        else:
            return redirect("clinical:ecg-detail", public_id=new.public_id)
    return _detail(request, record, reanalyse_form=form, status=400)


@login_required
def ecg_status(request: HttpRequest, public_id) -> JsonResponse:
    # Not audited: the page polls it, and it holds the analysis state only (see clinical.access).
    record = _record_or_404(request, public_id, state_only=True)
    job, prediction = record.job, getattr(record, "prediction", None)
    return JsonResponse({"state": job.state, "progress": job.progress, "stage": job.stage, "error": job.error,
                         "attempts": job.attempts,
                         "evidence_state": prediction.evidence_state if prediction else None})


@login_required
@require_POST
@permission_required("clinical.upload_ecg", raise_exception=True)
def ecg_retry(request: HttpRequest, public_id) -> HttpResponse:
    record = _record_or_404(request, public_id)
    try:
        services.inference_retry(job=record.job, actor=request.user)
    except ApplicationError as exc:
        page_error(request, exc)
    return redirect(reverse("clinical:ecg-detail", kwargs={"public_id": record.public_id}))


@login_required
def ecg_report_pdf(request: HttpRequest, public_id) -> HttpResponse:
    """The report of this ECG as a one-page PDF (?paper=Letter for US Letter), audited as report.downloaded."""
    record = _record_or_404(request, public_id)
    try:
        out = report_export(actor=request.user, record=record, fmt=PDF, via=access.PAGE,
                            paper=request.GET.get("paper", "A4"))
    except ApplicationError as exc:
        page_error(request, exc)
        return redirect(reverse("clinical:ecg-detail", kwargs={"public_id": record.public_id}))
    response = HttpResponse(out.content, content_type=out.content_type)
    response["Content-Disposition"] = f'attachment; filename="{out.filename}"'
    response["Cache-Control"] = "no-store"  # patient data: never kept by a shared cache or the browser's
    return response


@cache_control(max_age=86400, public=True)
def plotly_js(request: HttpRequest) -> FileResponse:
    """Plotly.js from the installed plotly package: no CDN, so the page works on a closed hospital network."""
    return FileResponse(open(plotly_js_path(), "rb"), content_type="application/javascript")


@login_required
@require_POST
def ecg_overlay_viewed(request: HttpRequest, public_id) -> JsonResponse:
    """The page reports which finding's evidence a person looked at (for the audit trail)."""
    record = _record_or_404(request, public_id)
    key = request.POST.get("overlay", "")[:64]
    prediction = getattr(record, "prediction", None)
    if not prediction or key not in prediction.explanations:
        return JsonResponse({"error": "unknown overlay"}, status=400)
    audit_log(actor=request.user, action=AuditAction.OVERLAY_VIEW, object_type="EcgRecord", object_id=record.public_id,
              details={"overlay": key})
    return JsonResponse({"ok": True})


@login_required
@require_POST
@permission_required("clinical.acknowledge_result", raise_exception=True)
def ecg_acknowledge(request: HttpRequest, public_id) -> HttpResponse:
    record = _record_or_404(request, public_id)
    prediction = getattr(record, "prediction", None)
    if prediction is None:
        raise Http404("This ECG has no result yet.")
    form = _ack_form(prediction, request.POST)
    if form.is_valid():
        try:
            result_acknowledge(prediction=prediction, reviewer=request.user, verdict=form.cleaned_data["verdict"],
                               note=form.cleaned_data["note"], finding_verdicts=form.finding_verdicts())
        except ApplicationError as exc:
            page_error(request, exc)
        else:
            messages.success(request, "Result acknowledged.")
            return redirect("clinical:review-queue")
    else:  # the page again, with what was entered and what is wrong (a 400, not a redirect that loses it)
        return _detail(request, record, ack_form=form, status=400)
    return redirect("clinical:ecg-detail", public_id=record.public_id)


WORKLIST_SHOWN = 200


@login_required
@permission_required("clinical.acknowledge_result", raise_exception=True)
def review_queue(request: HttpRequest) -> HttpResponse:
    """The reviewers' page: urgent results waiting for acknowledgement, or (?list=worklist) the worklist of every
    analysed ECG waiting for a confirmed reading, filtered and sorted."""
    if request.GET.get("list") != "worklist":
        items = list(selectors.review_queue()[:200])
        access.ecg_list_audit(actor=request.user, records=[p.record for p in items], via=access.PAGE,
                              view="review_queue")
        return render(request, "clinical/review_queue.html", {"items": items, "tab": "urgent",
                                                              "worklist_total": selectors.worklist().count()})
    form = WorklistFilterForm(request.GET)
    if not form.is_valid():
        return render(request, "clinical/review_queue.html", {"tab": "worklist", "form": form, "records": [],
                                                              "counts": None}, status=400)
    qs = selectors.worklist(**{k: v for k, v in form.cleaned_data.items() if v})
    records = list(qs[:WORKLIST_SHOWN])
    access.ecg_list_audit(actor=request.user, records=records, via=access.PAGE, view="worklist")
    for r in records:
        r.top_finding = next(iter(r.prediction.findings.all()), None)
    return render(request, "clinical/review_queue.html", {
        "tab": "worklist", "form": form, "records": records, "counts": selectors.worklist_counts(qs),
        "shown_limit": WORKLIST_SHOWN, "urgent_total": selectors.review_queue().count()})


def _reading_form(record: EcgRecord, data=None, latest: Interpretation | None = None) -> ReadingForm:
    statements = interpretations.computer_statements(record)
    initial = {"intent": "amend" if latest else "confirm"}
    if latest is not None:  # an amendment starts from the confirmed reading
        removed = {s["key"] for s in latest.statements if s["action"] == Interpretation.Action.REMOVED}
        initial |= {"keep__" + s["key"].replace(":", "__"): s["key"] not in removed for s in statements}
        initial |= {"added": [s["key"] for s in latest.statements if s["action"] == Interpretation.Action.ADDED],
                    "free_text": latest.free_text}
        initial |= {f"m__{k}": v["reviewer"] for k, v in latest.measurement_overrides.items()
                    if "derived_from" not in v}
    return ReadingForm(data, initial=initial, statements=statements,
                       choices=interpretations.statement_choices(record), editable=interpretations.EDITABLE,
                       computer_values=record.measurements or {})


@login_required
@permission_required("clinical.acknowledge_result", raise_exception=True)
def ecg_read(request: HttpRequest, public_id) -> HttpResponse:
    """Over-read and confirm (or amend) an ECG beside the patient's prior one."""
    record = _record_or_404(request, public_id)
    latest = latest_interpretation(record)
    form = _reading_form(record, request.POST if request.method == "POST" else None, latest)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            args = form.service_arguments()
            try:
                if form.cleaned_data["intent"] == "amend":
                    done = interpretations.interpretation_amend(record=record, reviewer=request.user,
                                                                reason=form.cleaned_data["reason"], **args)
                else:
                    done = interpretations.interpretation_confirm(record=record, reviewer=request.user, **args)
            except ApplicationError as exc:
                form_error(form, exc)
            else:
                messages.success(request, f"Reading {'amended' if done.version > 1 else 'confirmed'}: version "
                                          f"{done.version}, locked.")
                return redirect("clinical:ecg-read", public_id=record.public_id)
        status = 400
    return _reading_page(request, record, form, latest, status)


def _reading_page(request: HttpRequest, record: EcgRecord, form: ReadingForm, latest: Interpretation | None,
                  status: int) -> HttpResponse:
    access.ecg_view_audit(actor=request.user, record=record, via=access.PAGE, view="ecg_read")
    prior = latest.prior_record if latest else prior_ecg(record=record)
    prior = _visible_or_none(request, prior)
    if latest is not None:
        comparison = latest.comparison
    else:  # what the computer's reading changes; the confirmed version stores the comparison of the edited one
        comparison = ecg_compare(record=record, prior=prior,
                                 statements={s["key"]: s["display"]
                                             for s in interpretations.computer_statements(record)},
                                 measurements={k: (record.measurements or {}).get(k)
                                               for k in interpretations.CONFIRMED_KEYS})
    versions = interpretations.interpretation_versions(record=record)
    chain = [interpretations.computer_statements(record)] + [v.statements for v in reversed(versions)]
    diffs = list(reversed([interpretations.interpretation_diff(a, b) for a, b in zip(chain, chain[1:])]))
    for v in versions:  # the reviewer's values by name, for the page
        v.override_rows = [{"label": interpretations.EDITABLE[k].label if k in interpretations.EDITABLE else k,
                            "unit": interpretations.EDITABLE[k].unit if k in interpretations.EDITABLE else "", **o}
                           for k, o in v.measurement_overrides.items()]
    return render(request, "clinical/ecg_read.html", {
        "record": record, "prediction": getattr(record, "prediction", None), "prior": prior, "form": form,
        "latest": latest, "versions": list(zip(versions, diffs)), "comparison": comparison,
        "plot": ecg_paper_figure(record.window_array(), record.fs),
        "prior_plot": ecg_paper_figure(prior.window_array(), prior.fs) if prior else None,
        "acquired": ecg_acquired_at(record), "prior_acquired": ecg_acquired_at(prior) if prior else None,
        "measurement_line": ecg_measures.display_line(record.measurements),
        "prior_measurement_line": ecg_measures.display_line(prior.measurements) if prior else [],
    }, status=status)


@login_required
@permission_required("clinical.view_audit", raise_exception=True)
def audit_list(request: HttpRequest) -> HttpResponse:
    form = AuditEventFilter(request.GET or None).form
    if form.is_bound and not form.is_valid():
        return _audit_filters_refused(request, form)
    filters = form.filters() if form.is_bound else {}
    after = form.cleaned_data["cursor"] if form.is_bound else None
    events = list(selectors.audit_events(filters=request.GET)[:51])
    next_cursor = events[49].id if len(events) > 50 else None
    # Audit rows name patients and who saw them: reading them is audited like the CSV export.
    audit_log(actor=request.user, action=AuditAction.AUDIT_VIEW, object_type="AuditEvent", object_id="list",
              details={**{k: str(v) for k, v in filters.items() if v}, "after": after, "count": len(events[:50])})
    query = request.GET.copy()
    query.pop("cursor", None)
    return render(request, "clinical/audit_list.html", {"form": form, "events": events[:50], "next_cursor": next_cursor,
                                                        "query": query.urlencode()})


def _audit_filters_refused(request: HttpRequest, form: AuditFilterForm) -> HttpResponse:
    """The audit page with the form's errors and no events: never a query with filters that did not validate."""
    return render(request, "clinical/audit_list.html", {"form": form, "events": [], "next_cursor": None,
                                                        "query": ""}, status=400)


class _Echo:
    def write(self, value: str) -> str:
        return value


# A spreadsheet runs a cell that starts with one of these as a formula, and audit rows carry text that users chose
# (file names, user names, request ids). OWASP's advice for CSV injection: prefix such a cell with a single quote,
# which spreadsheets show as text. https://owasp.org/www-community/attacks/CSV_Injection
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _spreadsheet_safe(value: object) -> object:
    """A CSV cell that no spreadsheet evaluates; numbers stay numbers and other text is unchanged."""
    if value is None or isinstance(value, int | float):
        return value
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


@login_required
@permission_required("clinical.view_audit", raise_exception=True)
def audit_export(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    form = AuditEventFilter(request.GET or None).form
    if form.is_bound and not form.is_valid():
        return _audit_filters_refused(request, form)
    filters = form.filters() if form.is_bound else {}
    query = request.GET.copy()
    query.pop("cursor", None)  # the export is the whole filtered trail, not the page a link was on
    audit_log(actor=request.user, action=AuditAction.AUDIT_EXPORT, object_type="AuditEvent", object_id="csv",
              details={k: str(v) for k, v in filters.items() if v})
    writer = csv.writer(_Echo())
    header = ["id", "at", "actor", "action", "object_type", "object_id", "request_id", "ip", "details", "prev_hash",
              "hash"]

    def rows():
        # A byte order mark: without it Excel reads a UTF-8 CSV as the local code page (names come out garbled).
        yield "\ufeff" + writer.writerow(header)
        for e in selectors.audit_events(filters=query).iterator(chunk_size=2000):
            yield writer.writerow([_spreadsheet_safe(cell) for cell in (
                e.id, e.at.isoformat(), e.actor_label, e.action, e.object_type, e.object_id, e.request_id,
                e.ip or "", json.dumps(e.details, ensure_ascii=False, default=str), e.prev_hash, e.hash)])

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.csv"'
    return response

