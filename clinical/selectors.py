"""Clinical reads."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from django.db.models import Case, Count, IntegerField, Prefetch, Q, QuerySet, Value, When
from django.http import QueryDict
from django.utils import timezone

from clinical import measurements as ecg_measures
from clinical import recommend
from clinical.comparison import latest_interpretation
from clinical.errors import ApplicationError
from clinical.intake.device import measurement_rows
from clinical.models import (
    Acknowledgement,
    Alert,
    AuditEvent,
    EcgRecord,
    Finding,
    InferenceJob,
    Interpretation,
    Prediction,
    Recommendation,
    ResultNotification,
)
from mlcore.preprocess import LEADS

HEADS = ("superclass", "statements")
THRESHOLDS_NOT_KEPT = ("This result was stored before thresholds were kept with each result: the probabilities are "
                       "the model's, but which threshold and operating point they were judged against is not "
                       "recorded, so threshold, above_threshold and operating_point are null.")


def user_sees_all(user) -> bool:
    return user.has_perm("clinical.view_all_ecgs")


def _visible(user) -> QuerySet[EcgRecord]:
    """A clinician sees the ECGs they uploaded; reviewers, compliance staff and admins see all."""
    qs = EcgRecord.objects.select_related("patient", "job", "uploaded_by")
    return qs if user_sees_all(user) else qs.filter(uploaded_by=user)


def ecg_list_for_user(*, user) -> QuerySet[EcgRecord]:
    readings = Prefetch("interpretations", queryset=Interpretation.objects.select_related("reviewer").only(
        "record_id", "version", "status", "confirmed_at", "reviewer__username"))
    return (_visible(user).select_related("prediction", "reanalysis_of")
            .prefetch_related("prediction__recommendations", "prediction__findings", readings)
            .defer("signal", "reanalysis_of__signal").order_by("-uploaded_at"))


# What an analysis-state poll needs is a few columns; the signal and the measurements (median beats: tens of
# kilobytes of JSON) were read and decoded on every poll of every integrator.
_HEAVY = ("signal", "quality", "features", "measurements", "device", "intake_notes")


def ecg_get_for_user(*, user, public_id, with_signal: bool = True, state_only: bool = False) -> EcgRecord:
    """The ECG ``user`` may see (EcgRecord.DoesNotExist otherwise), for the pages and the API alike.

    ``with_signal=False`` leaves the samples in the database (read on access); ``state_only``: for its analysis
    state (job, window, re-analysis link) only, without any heavy column; reading one still works, at the cost of
    a query."""
    qs = _visible(user)
    if state_only:
        qs = qs.defer(*_HEAVY)
    elif not with_signal:
        qs = qs.defer("signal")
    return qs.get(public_id=public_id)


def ecg_reanalyses_for_user(*, user, record: EcgRecord) -> list[EcgRecord]:
    """The first upload and every re-analysis of it (other windows of the same signal) that ``user`` may see,
    oldest first."""
    return list(_visible(user).filter(Q(pk=record.pk) | Q(reanalysis_of=record)).defer("signal")
                .order_by("uploaded_at", "pk"))


def prediction_probabilities(*, prediction: Prediction) -> dict:
    """Every calibrated probability of a result (all labels, flagged or not), each with the threshold and operating
    point it was judged against when the result was made; for results stored before those were kept, null with
    the reason."""
    points = prediction.operating_points or {}
    labels = []
    for head in HEADS:
        spread = (prediction.spread or {}).get(head, {})
        for code, p in (getattr(prediction, head) or {}).items():
            point = points.get(head, {}).get(code)
            labels.append({
                "head": head, "code": code, "probability": p, "spread": spread.get(code),
                "threshold": point["threshold"] if point else None,
                "above_threshold": p >= point["threshold"] if point else None,
                "operating_point": {k: v for k, v in point.items() if k != "threshold"} if point else None})
    return {"calibration_method": points.get("method") or None, "calibration_folds": points.get("folds", []),
            "thresholds_missing_reason": None if points else THRESHOLDS_NOT_KEPT, "labels": labels}


@dataclass(frozen=True)
class EcgResult:
    """An ECG's result as the result page and the API (EcgResultApi.Output) show it: the record, its result (None
    until the analysis is done) and what is read from them."""

    record: EcgRecord
    prediction: Prediction | None
    findings: list[Finding]  # every finding by rank: the model's (with .operating_point, .validated), then measured
    recommendations: list[Recommendation]
    acknowledgement: Acknowledgement | None
    not_assessed: list[recommend.NotAssessed]
    interpretation: Interpretation | None  # the latest confirmed version of the reading

    @property
    def job(self) -> InferenceJob:
        return self.record.job

    @property
    def needs_review(self) -> bool:
        return self.prediction.needs_review if self.prediction is not None else False

    @property
    def model_findings(self) -> list[Finding]:
        return [f for f in self.findings if f.head != Finding.Head.MEASUREMENT]

    @property
    def measured_findings(self) -> list[Finding]:
        return [f for f in self.findings if f.head == Finding.Head.MEASUREMENT]

    @property
    def quality_warnings(self) -> list[dict]:
        """The quality gate's warnings (the ECG was accepted with them): {"message", "severity", ...}."""
        return [i for i in self.record.quality.get("issues", []) if i.get("severity") == "warn"]

    @property
    def quality_warning_messages(self) -> list[str]:
        return [i["message"] for i in self.quality_warnings]

    @property
    def device_reading(self) -> dict:
        """What an exported file says besides the waveform, with the unit of each of its measurements."""
        reading = dict(self.record.device or {})
        if reading.get("measurements"):
            reading["units"] = {row["key"]: row["unit"] for row in measurement_rows(reading["measurements"])}
        return reading

    @property
    def measurements(self) -> dict:
        """This system's measurements of the analysed window, as the API gives them (clinical.measurements)."""
        return ecg_measures.api_values(self.record.measurements)

    @property
    def probabilities(self) -> dict | None:
        return prediction_probabilities(prediction=self.prediction) if self.prediction is not None else None

    @property
    def interpretation_status(self) -> str:
        return self.interpretation.status if self.interpretation else "preliminary"


def ecg_result(*, record: EcgRecord, evidence_points: int | None = None) -> EcgResult:
    """The result of ``record`` for the result page and the API; ``evidence_points``: each finding with evidence
    gets ``.evidence``, {lead: {"share", "map"}} with the map averaged down to that many points per lead."""
    prediction = getattr(record, "prediction", None)
    findings: list[Finding] = []
    recommendations: list[Recommendation] = []
    if prediction is not None:
        points = prediction.operating_points or {}
        findings = list(prediction.findings.all())
        for f in findings:
            if f.head != Finding.Head.MEASUREMENT:
                f.operating_point = points.get(f.head, {}).get(f.code)
            f.validated = (points.get(f.head, {}).get(f.code) or {}).get("validated")
            ex = prediction.evidence_for(f.overlay_key) if evidence_points else None
            if ex:
                maps = ex.lead_maps.reshape(12, evidence_points, -1).mean(axis=2)  # (12, evidence_points)
                f.evidence = {lead: {"share": round(float(ex.lead_relevance[i]), 3),
                                     "map": np.round(maps[i].astype(np.float64), 3).tolist()}
                              for i, lead in enumerate(LEADS)}
        recommendations = list(prediction.recommendations.all())
    return EcgResult(record=record, prediction=prediction, findings=findings, recommendations=recommendations,
                     acknowledgement=getattr(prediction, "acknowledgement", None) if prediction else None,
                     not_assessed=result_not_assessed(prediction=prediction),
                     interpretation=latest_interpretation(record))


def model_info(*, ensemble) -> dict:
    """The served model: version, calibration in force, members, label space, validation metrics and input."""
    m = ensemble.manifest
    return {"model_version": ensemble.version, "calibration_version": ensemble.calibration_version,
            "members": len(ensemble.members), "superclasses": list(ensemble.labels.superclasses),
            "statements": dict(ensemble.labels.descriptions), "metrics_fold9": m.get("metrics_fold9", {}),
            "input": m.get("input", {})}


def model_findings(*, prediction: Prediction | None) -> list[Finding]:
    """The model's findings of a result, each with ``operating_point``: what its threshold was chosen for, its
    support and whether it is validated (None for results stored before operating points were kept)."""
    if prediction is None:
        return []
    points = prediction.operating_points or {}
    findings = list(prediction.findings.exclude(head=Finding.Head.MEASUREMENT))
    for f in findings:
        f.operating_point = points.get(f.head, {}).get(f.code)
    return findings


def result_not_assessed(*, prediction: Prediction | None) -> list[recommend.NotAssessed]:
    """What this system cannot detect, for the result page and the API alike."""
    return recommend.not_assessed(prediction.operating_points if prediction else None)


def review_queue() -> QuerySet[Prediction]:
    """Immediate and urgent results nobody has acknowledged yet: immediate first, then by waiting time (oldest
    first), so an immediate result never waits below urgent ones."""
    order = Case(*(When(top_urgency=u, then=Value(i)) for i, u in enumerate(recommend.URGENCY_ORDER)),
                 default=Value(len(recommend.URGENCY_ORDER)), output_field=IntegerField())
    return (Prediction.objects.filter(top_urgency__in=recommend.AWAITS_REVIEW, acknowledgement__isnull=True)
            .select_related("record__patient").prefetch_related("recommendations")
            .order_by(order, "created_at", "pk"))


def immediate_notices_for(*, user) -> QuerySet[ResultNotification]:
    """Immediate results this reviewer has not opened yet and nobody has acknowledged, oldest first."""
    return (ResultNotification.objects.filter(prediction__acknowledgement__isnull=True).exclude(opened_by=user)
            .select_related("prediction__record__patient").prefetch_related("prediction__recommendations")
            .order_by("created_at", "pk"))


def open_alert_count() -> int:
    return Alert.objects.filter(prediction__acknowledgement__isnull=True).count()


def audit_events(*, filters: Mapping[str, str] | None = None, **query: str) -> QuerySet[AuditEvent]:
    """Newest first, filtered by the audit page's query parameters (clinical.filters.AuditEventFilter), given as a
    mapping (request.GET) or as keywords: actor, action (a prefix), patient, since / until (dates), cursor (the id
    of the last event already shown: keyset pagination). Parameters that do not validate are an ApplicationError,
    never a filter left out."""
    from clinical.filters import AuditEventFilter  # it imports clinical.forms, which imports models

    data = filters.dict() if isinstance(filters, QueryDict) else dict(filters or {})  # a form reads the last value
    filterset = AuditEventFilter(data | query, queryset=AuditEvent.objects.order_by("-id"))
    if not filterset.is_valid():
        field, errors = next(iter(filterset.errors.items()))
        raise ApplicationError(errors[0], field)
    return filterset.qs


WAITING = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}


def _urgency_rank() -> Case:
    return Case(*(When(prediction__top_urgency=u, then=Value(i)) for i, u in enumerate(recommend.URGENCY_ORDER)),
                default=Value(len(recommend.URGENCY_ORDER)), output_field=IntegerField())


def worklist(*, urgency: str = "", waiting: str = "", uploader: str = "", finding: str = "", site: str = "",
             sort: str = "") -> QuerySet[EcgRecord]:
    """Analysed ECGs no reviewer has confirmed yet (clinical.interpretations), filtered: by the result's urgency,
    how long it has waited, who uploaded it, a finding code the computer flagged, and the recording device's name
    (the nearest thing to a site that a record holds: no upload carries a site or institution). Sorted by
    urgency then waiting time (the default), oldest, newest or patient."""
    qs = (EcgRecord.objects.filter(job__state=InferenceJob.State.DONE, prediction__isnull=False,
                                   interpretations__isnull=True)
          .select_related("patient", "uploaded_by", "prediction__acknowledgement")
          .defer("signal", "prediction__evidence")
          .prefetch_related("prediction__findings"))
    if urgency:
        qs = qs.filter(prediction__top_urgency=urgency)
    if waiting in WAITING:
        qs = qs.filter(prediction__created_at__lt=timezone.now() - WAITING[waiting])
    if uploader:
        qs = qs.filter(uploaded_by__username=uploader)
    if finding:
        qs = qs.filter(prediction__findings__code__iexact=finding).distinct()
    if site:
        qs = qs.filter(device__device__icontains=site)
    order = {"oldest": ("prediction__created_at", "pk"), "newest": ("-prediction__created_at", "-pk"),
             "patient": ("patient__pseudonym", "prediction__created_at")}.get(sort)
    return qs.order_by(*order) if order else qs.order_by(_urgency_rank(), "prediction__created_at", "pk")


def worklist_counts(qs: QuerySet[EcgRecord]) -> dict[str, int]:
    """How many ECGs a worklist holds, in all and per urgency: {"total", "immediate", "urgent", "routine"}."""
    rows = qs.order_by().values("prediction__top_urgency").annotate(n=Count("pk", distinct=True))
    counts = {u: 0 for u in recommend.URGENCY_ORDER}
    for row in rows:
        counts[row["prediction__top_urgency"]] = row["n"]
    return {"total": sum(counts.values()), **counts}
