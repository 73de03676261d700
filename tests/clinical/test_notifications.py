"""The review queue's order, and immediate results notified at once: banner, e-mail, webhook, each audited."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from clinical import recommend, services
from clinical.models import AuditEvent, ResultNotification
from clinical.reviews import notification_send, result_acknowledge, result_notify
from clinical.roles import roles_ensure
from tests.clinical.conftest import WebhookReceiver, make_result


@pytest.fixture
def second_reviewer(db) -> User:
    """A reviewer on duty who has not opened the result."""
    roles_ensure()
    user = User.objects.create_user("rev-dee", password="pw-for-tests-1", email="dee@example.org")
    user.groups.add(Group.objects.get(name="reviewer"))
    return user


def _result(clinician, files, pseudonym, urgency, minutes_ago):
    record = services.ecg_submit(actor=clinician, pseudonym=pseudonym, age=60, sex="F", files=files, fs=None)
    return make_result(record, urgency, created_at=timezone.now() - timedelta(minutes=minutes_ago))


def test_the_queue_lists_immediate_first_then_the_longest_waiting(client, clinician, reviewer, wfdb_pair):
    _result(clinician, wfdb_pair, "PT-URG-OLD", "urgent", 90)
    _result(clinician, wfdb_pair, "PT-IMM-NEW", "immediate", 1)
    _result(clinician, wfdb_pair, "PT-URG-NEW", "urgent", 10)
    _result(clinician, wfdb_pair, "PT-IMM-OLD", "immediate", 30)
    client.force_login(reviewer)
    html = client.get(reverse("clinical:review-queue")).content.decode()
    order = sorted(["PT-URG-OLD", "PT-IMM-NEW", "PT-URG-NEW", "PT-IMM-OLD"], key=html.index)
    # Today's order (oldest first) put a 1-minute-old immediate result below a 90-minute-old urgent one.
    assert order == ["PT-IMM-OLD", "PT-IMM-NEW", "PT-URG-OLD", "PT-URG-NEW"]


def _immediate_action(*args, **kwargs):
    return [recommend.RankedAction(action="ST elevation meeting the STEMI criteria: activate the STEMI pathway",
                                   urgency="immediate", reasoning="r", source="s",
                                   triggered_by="measure:STEMI_ANTERIOR", confidence=1.0, table_version="t",
                                   rule_id="measure:STEMI_ANTERIOR")]


def test_an_immediate_result_shows_a_banner_to_every_reviewer_until_they_open_it(
        client, clinician, reviewer, second_reviewer, wfdb_pair, weights_dir, monkeypatch,
        django_capture_on_commit_callbacks):
    monkeypatch.setattr(services, "rank_actions", _immediate_action)
    record = services.ecg_submit(actor=clinician, pseudonym="PT-STEMI", age=55, sex="M", files=wfdb_pair, fs=None)
    with django_capture_on_commit_callbacks() as callbacks:
        services.inference_run(job_id=record.job.id)
    notification = ResultNotification.objects.get(prediction__record=record)
    # The e-mail and webhook task is queued after the commit (besides the metrics callback).
    assert any(c.__qualname__.startswith("result_notify") for c in callbacks)
    banner_audit = AuditEvent.objects.get(action="result.notified", details__channel="banner")
    assert banner_audit.details["reviewers"] == ["rev-cy", "rev-dee"]

    client.force_login(reviewer)
    for page in (reverse("clinical:ecg-list"), reverse("clinical:review-queue")):  # on every page they open
        html = client.get(page).content.decode()
        assert 'id="immediate-banner"' in html and "PT-STEMI" in html and "activate the STEMI pathway" in html
    client.get(reverse("clinical:ecg-detail", args=[record.public_id]))  # opened: gone for this reviewer
    assert 'id="immediate-banner"' not in client.get(reverse("clinical:ecg-list")).content.decode()
    assert list(notification.opened_by.all()) == [reviewer]

    client.force_login(second_reviewer)  # still there for a reviewer who has not opened it
    assert 'id="immediate-banner"' in client.get(reverse("clinical:ecg-list")).content.decode()
    result_acknowledge(prediction=record.prediction, reviewer=reviewer, verdict="agree", note="Cath lab called")
    assert 'id="immediate-banner"' not in client.get(reverse("clinical:ecg-list")).content.decode()

    client.force_login(clinician)  # not a reviewer: no banner
    result = _result(clinician, wfdb_pair, "PT-IMM-2", "immediate", 0)
    result_notify(prediction=result)
    assert 'id="immediate-banner"' not in client.get(reverse("clinical:ecg-list")).content.decode()


def test_email_and_webhook_leave_once_and_each_is_audited(clinician, reviewer, second_reviewer, wfdb_pair,
                                                          settings, webhook_server):
    settings.ECG_NOTIFY_WEBHOOK_URL = webhook_server
    reviewer.email = "cy@example.org"
    reviewer.save()
    prediction = _result(clinician, wfdb_pair, "PT-HOOK", "immediate", 0)
    notification = result_notify(prediction=prediction)
    notification_send(notification_id=notification.pk)
    notification_send(notification_id=notification.pk)  # a redelivered task pages nobody twice
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["cy@example.org", "dee@example.org"]
    assert "IMMEDIATE" in mail.outbox[0].subject and "Act now" in mail.outbox[0].body
    assert len(WebhookReceiver.received) == 1
    hook = WebhookReceiver.received[0]
    assert hook["content_type"] == "application/json"
    assert hook["json"]["ecg_id"] == str(prediction.record.public_id) and hook["json"]["urgency"] == "immediate"
    assert hook["json"]["top_action"] == "Act now"
    assert hook["json"]["link"].endswith(reverse("clinical:ecg-detail", args=[prediction.record.public_id]))
    channels = sorted(e.details["channel"] for e in AuditEvent.objects.filter(action="result.notified"))
    assert channels == ["banner", "email", "webhook"]
    notification.refresh_from_db()
    assert notification.webhook == {"status": "sent", "http_status": 204}


def test_a_failing_webhook_or_mail_server_is_logged_and_audited_and_breaks_nothing(
        clinician, reviewer, wfdb_pair, settings, monkeypatch, caplog, weights_dir, django_capture_on_commit_callbacks):
    settings.ECG_NOTIFY_WEBHOOK_URL = "http://127.0.0.1:9/nothing-listens-here"
    settings.ECG_NOTIFY_WEBHOOK_TIMEOUT_S = 2
    reviewer.email = "cy@example.org"
    reviewer.save()

    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("mail server down")

    monkeypatch.setattr("clinical.reviews.send_mail", refuse)
    prediction = _result(clinician, wfdb_pair, "PT-DOWN", "immediate", 0)
    notification = notification_send(notification_id=result_notify(prediction=prediction).pk)
    assert notification.webhook["status"] == "failed" and notification.emailed_to == []
    failed = {e.details["channel"]: e.details for e in AuditEvent.objects.filter(action="result.notify_failed")}
    assert set(failed) == {"email", "webhook"} and "mail server down" in failed["email"]["error"]
    assert "webhook" in caplog.text and "e-mail failed" in caplog.text

    # The broker refusing the task does not fail the inference either: the banner stands, the refusal is audited.
    monkeypatch.setattr(services, "rank_actions", _immediate_action)
    monkeypatch.setattr("clinical.tasks.notify_result.apply_async",
                        lambda *a, **k: (_ for _ in ()).throw(ConnectionError("broker down")))
    record = services.ecg_submit(actor=clinician, pseudonym="PT-NOQ", age=55, sex="M", files=wfdb_pair, fs=None)
    with django_capture_on_commit_callbacks(execute=True):
        job = services.inference_run(job_id=record.job.id)
    assert job.state == "done" and ResultNotification.objects.filter(prediction__record=record).exists()
    assert AuditEvent.objects.filter(action="result.notify_failed", details__channel="queue",
                                     object_id=str(record.public_id)).exists()


def test_escalation_still_follows_when_an_immediate_result_waits(clinician, reviewer, wfdb_pair,
                                                                 django_capture_on_commit_callbacks):
    from clinical.reviews import alerts_escalate

    prediction = _result(clinician, wfdb_pair, "PT-WAIT", "immediate", 20)
    result_notify(prediction=prediction)
    with django_capture_on_commit_callbacks(execute=False):
        assert [a.prediction for a in alerts_escalate()] == [prediction]
