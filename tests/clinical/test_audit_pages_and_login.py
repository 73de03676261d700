"""Compliance reads the audit trail; logins are audited and throttled."""
from __future__ import annotations

import csv
import io

from django.urls import reverse

from clinical import services
from clinical.audit import audit_log
from clinical.models import AuditEvent


def test_login_logout_and_failures_are_audited_and_repeated_failures_make_that_address_wait(client, clinician):
    for _ in range(5):
        resp = client.post(reverse("login"), {"username": "dr-ada", "password": "wrong-password"})
        assert resp.status_code == 200
    assert AuditEvent.objects.filter(action="auth.login_failed", details__username="dr-ada").count() == 5
    locked = client.post(reverse("login"), {"username": "dr-ada", "password": "pw-for-tests-1"})
    assert b"Too many failed attempts" in locked.content and "_auth_user_id" not in client.session
    other = client.post(reverse("login"), {"username": "nobody-else", "password": "x"})
    assert b"Too many failed attempts" not in other.content
    # A wait, not a lock: the same person from another address logs in (tests/ecgapp/test_security_login.py).
    elsewhere = client.post(reverse("login"), {"username": "dr-ada", "password": "pw-for-tests-1"},
                            REMOTE_ADDR="10.9.8.7")
    assert elsewhere.status_code == 302


def test_a_good_login_and_logout_are_audited_with_ip(client, clinician):
    resp = client.post(reverse("login"), {"username": "dr-ada", "password": "pw-for-tests-1"}, REMOTE_ADDR="10.1.2.3")
    assert resp.status_code == 302
    login = AuditEvent.objects.get(action="auth.login")
    assert login.actor == clinician and login.ip == "10.1.2.3" and login.request_id
    client.post(reverse("logout"))
    assert AuditEvent.objects.filter(action="auth.logout", actor=clinician).exists()


def test_audit_page_filters_by_patient_and_paginates_and_export_is_audited(client, clinician, compliance_officer,
                                                                          wfdb_pair):
    a = services.ecg_submit(actor=clinician, pseudonym="PT-A", age=50, sex="M", files=wfdb_pair, fs=None)
    services.ecg_submit(actor=clinician, pseudonym="PT-B", age=51, sex="M", files=wfdb_pair, fs=None)
    client.force_login(compliance_officer)
    page = client.get(reverse("clinical:audit-list"), {"patient": "PT-A"}).content.decode()
    assert str(a.public_id)[:13] in page and "ecg.upload" in page
    assert page.count("<code>ecg.upload</code>") == 1  # PT-B's upload is filtered out
    for i in range(60):


        audit_log(actor=None, action="test.fill", object_type="T", object_id=i)
    first = client.get(reverse("clinical:audit-list"), {"action": "test.fill"})
    cursor = first.context["next_cursor"]
    assert len(first.context["events"]) == 50 and cursor
    second = client.get(reverse("clinical:audit-list"), {"action": "test.fill", "cursor": cursor})
    assert len(second.context["events"]) == 10
    assert {e.id for e in first.context["events"]}.isdisjoint({e.id for e in second.context["events"]})
    export = client.get(reverse("clinical:audit-export"), {"action": "test.fill"})
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode("utf-8-sig"))))  # a BOM for Excel
    assert rows[0][:4] == ["id", "at", "actor", "action"] and len(rows) == 61
    assert AuditEvent.objects.filter(action="audit.export", actor=compliance_officer).count() == 1


def test_role_changes_are_audited(db):
    from django.contrib.auth.models import Group, User

    from clinical.roles import roles_ensure

    roles_ensure()
    user = User.objects.create_user("new-rev", password="pw-for-tests-1")
    user.groups.add(Group.objects.get(name="reviewer"))
    Group.objects.get(name="compliance").user_set.add(user)
    user.groups.remove(Group.objects.get(name="reviewer"))
    changes = [e.details for e in AuditEvent.objects.filter(action="role.change").order_by("id")]
    assert changes == [{"user": "new-rev", "change": "add", "groups": ["reviewer"]},
                       {"user": "new-rev", "change": "add", "groups": ["compliance"]},
                       {"user": "new-rev", "change": "remove", "groups": ["reviewer"]}]
