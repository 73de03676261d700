"""The audit trail's filters (django-filter): the audit page, its CSV export and selectors.audit_events share them."""
from __future__ import annotations

import datetime as dt

import django_filters
from django import forms
from django.db.models import Q, QuerySet

from clinical.forms import AUDIT_DATE_ERRORS, AUDIT_DATE_RANGE, AuditFilterForm, audit_day_start
from clinical.models import AuditEvent, EcgRecord


class _IntegerFilter(django_filters.Filter):
    field_class = forms.IntegerField  # django-filter's NumberFilter is a DecimalField: it would accept "1.5"


class AuditEventFilter(django_filters.FilterSet):
    """The audit page's query parameters; the form (AuditFilterForm) checks that From is not after Until."""

    actor = django_filters.CharFilter(field_name="actor_label", label="Actor", max_length=150)
    action = django_filters.CharFilter(field_name="action", lookup_expr="startswith", label="Action", max_length=64)
    patient = django_filters.CharFilter(method="filter_patient", label="Patient pseudonym", max_length=64)
    since = django_filters.DateFilter(method="filter_since", label="From",
                                      widget=forms.DateInput(attrs={"type": "date"}), validators=AUDIT_DATE_RANGE,
                                      error_messages=AUDIT_DATE_ERRORS)
    until = django_filters.DateFilter(method="filter_until", label="Until (inclusive)",
                                      widget=forms.DateInput(attrs={"type": "date"}), validators=AUDIT_DATE_RANGE,
                                      error_messages=AUDIT_DATE_ERRORS)
    # The id of the last event already shown (keyset pagination); the page's "Older events" link sets it.
    cursor = _IntegerFilter(field_name="id", lookup_expr="lt", label="Cursor", min_value=1, max_value=2**63 - 1,
                            widget=forms.HiddenInput,
                            error_messages={key: "This page link is broken: open the audit trail again."
                                            for key in ("invalid", "min_value", "max_value")})

    class Meta:
        model = AuditEvent
        fields: list[str] = []
        form = AuditFilterForm

    def filter_patient(self, queryset: QuerySet[AuditEvent], name: str, value: str) -> QuerySet[AuditEvent]:
        ids = [str(u) for u in EcgRecord.objects.filter(patient__pseudonym=value).values_list("public_id", flat=True)]
        # The patient's ECGs, and the patient itself (changes to its age or sex, reads of its ECG list).
        return queryset.filter(Q(object_type="EcgRecord", object_id__in=ids)
                               | Q(object_type="Patient", object_id=value))

    def filter_since(self, queryset: QuerySet[AuditEvent], name: str, value: dt.date) -> QuerySet[AuditEvent]:
        return queryset.filter(at__gte=audit_day_start(value))

    def filter_until(self, queryset: QuerySet[AuditEvent], name: str, value: dt.date) -> QuerySet[AuditEvent]:
        return queryset.filter(at__lt=audit_day_start(value + dt.timedelta(days=1)))  # inclusive: the whole day
