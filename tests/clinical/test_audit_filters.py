"""The audit trail's filters (clinical.filters.AuditEventFilter) as selectors.audit_events applies them."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.http import QueryDict
from django.utils import timezone

from clinical import selectors
from clinical.audit import audit_log
from clinical.errors import ApplicationError


def test_the_filters_are_the_page_parameters_an_action_prefix_and_whole_days(compliance_officer):
    audit_log(actor=compliance_officer, action="ecg.upload", object_type="EcgRecord", object_id="a")
    audit_log(actor=compliance_officer, action="ecg.view", object_type="EcgRecord", object_id="b")
    audit_log(actor=compliance_officer, action="report.downloaded", object_type="EcgRecord", object_id="c")
    today = timezone.localdate()
    assert {e.object_id for e in selectors.audit_events(action="ecg.")} == {"a", "b"}
    # "until" is inclusive (the whole day); "since" starts at its midnight.
    assert len(selectors.audit_events(filters=QueryDict(f"until={today}&since={today}&action=ecg."))) == 2
    assert not selectors.audit_events(until=str(today - timedelta(days=1)), action="ecg.")
    assert not selectors.audit_events(since=str(today + timedelta(days=1)), action="ecg.")
    newest = selectors.audit_events()[0]
    assert newest.object_id == "c"
    assert [e.object_id for e in selectors.audit_events(cursor=str(newest.id), action="ecg.")] == ["b", "a"]

def test_parameters_that_do_not_validate_are_refused_not_left_out(db):
    with pytest.raises(ApplicationError) as refused:
        selectors.audit_events(cursor="1.5")
    assert refused.value.field == "cursor" and "broken" in refused.value.message
    with pytest.raises(ApplicationError):
        selectors.audit_events(since="2026-12-02", until="2026-12-01")
