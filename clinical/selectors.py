"""Clinical reads."""
from __future__ import annotations

from django.db.models import QuerySet

from clinical.models import EcgRecord

VIEW_ALL_GROUPS = ("reviewer", "compliance")


def user_sees_all(user) -> bool:
    return user.is_superuser or user.groups.filter(name__in=VIEW_ALL_GROUPS).exists()


def _visible(user) -> QuerySet[EcgRecord]:
    """A clinician sees the ECGs they uploaded; reviewers and compliance staff see all."""
    qs = EcgRecord.objects.select_related("patient", "job", "uploaded_by")
    return qs if user_sees_all(user) else qs.filter(uploaded_by=user)


def ecg_list_for_user(*, user) -> QuerySet[EcgRecord]:
    return (_visible(user).select_related("prediction").prefetch_related("prediction__recommendations")
            .defer("signal").order_by("-uploaded_at"))


def ecg_get_for_user(*, user, public_id) -> EcgRecord:
    return _visible(user).get(public_id=public_id)
