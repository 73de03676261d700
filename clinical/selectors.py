"""Clinical reads."""
from __future__ import annotations

from django.db.models import Q, QuerySet

from clinical.models import Alert, AuditEvent, EcgRecord, Prediction


def user_sees_all(user) -> bool:
    return user.has_perm("clinical.view_all_ecgs")


def _visible(user) -> QuerySet[EcgRecord]:
    """A clinician sees the ECGs they uploaded; reviewers, compliance staff and admins see all."""
    qs = EcgRecord.objects.select_related("patient", "job", "uploaded_by")
    return qs if user_sees_all(user) else qs.filter(uploaded_by=user)


def ecg_list_for_user(*, user) -> QuerySet[EcgRecord]:
    return (_visible(user).select_related("prediction", "reanalysis_of").prefetch_related("prediction__recommendations")
            .defer("signal", "reanalysis_of__signal").order_by("-uploaded_at"))


def ecg_get_for_user(*, user, public_id) -> EcgRecord:
    return _visible(user).get(public_id=public_id)


def ecg_reanalyses_for_user(*, user, record: EcgRecord) -> list[EcgRecord]:
    """The first upload and every re-analysis of it (other windows of the same signal) that ``user`` may see,
    oldest first."""
    return list(_visible(user).filter(Q(pk=record.pk) | Q(reanalysis_of=record)).defer("signal")
                .order_by("uploaded_at", "pk"))


def review_queue() -> QuerySet[Prediction]:
    """Immediate and urgent results nobody has acknowledged yet, oldest first."""
    return (Prediction.objects.filter(top_urgency__in=("immediate", "urgent"), acknowledgement__isnull=True)
            .select_related("record__patient").prefetch_related("recommendations").order_by("created_at"))


def open_alert_count() -> int:
    return Alert.objects.filter(prediction__acknowledgement__isnull=True).count()


def audit_events(*, actor: str = "", action: str = "", patient: str = "", since=None, until=None,
                 cursor: int | None = None) -> QuerySet[AuditEvent]:
    """Newest first; ``cursor`` is the id of the last event already shown (keyset pagination)."""
    qs = AuditEvent.objects.order_by("-id")
    if actor:
        qs = qs.filter(actor_label=actor)
    if action:
        qs = qs.filter(action__startswith=action)
    if patient:
        ids = [str(u) for u in EcgRecord.objects.filter(patient__pseudonym=patient).values_list("public_id", flat=True)]
        # The patient's ECGs, and the patient itself (changes to its age or sex, reads of its ECG list).
        qs = qs.filter(Q(object_type="EcgRecord", object_id__in=ids) | Q(object_type="Patient", object_id=patient))
    if since:
        qs = qs.filter(at__gte=since)
    if until:
        qs = qs.filter(at__lt=until)
    if cursor:
        qs = qs.filter(id__lt=cursor)
    return qs
