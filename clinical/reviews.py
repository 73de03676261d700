"""Reviewer sign-off on urgent results and escalation of those left waiting (services)."""
from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from clinical import metrics
from clinical.audit import AuditAction, audit_log
from clinical.errors import ApplicationError
from clinical.intake import shown
from clinical.models import Acknowledgement, Alert, Prediction, ResultNotification
from clinical.recommend import AWAITS_REVIEW, IMMEDIATE, URGENT, dangerous_keys
from mlcore.labels import STATEMENT_KEY, STATEMENT_RULE_KEY, SUPERCLASS_KEY

log = logging.getLogger(__name__)


def result_acknowledge(*, prediction: Prediction, reviewer, verdict: str, note: str,
                       finding_verdicts: dict[str, str] | None = None) -> Acknowledgement:
    """Record a reviewer's verdict on a result; refused for non-reviewers and for a second acknowledgement."""
    if not reviewer.has_perm("clinical.acknowledge_result"):
        raise ApplicationError("Only reviewers can acknowledge results.")
    if verdict not in Acknowledgement.Verdict.values:
        raise ApplicationError("Say whether you agree or disagree with the findings.", "verdict")
    note = (note or "").strip()
    if len(note) < 3:
        raise ApplicationError("A note is required: what you checked and what you decided.", "note")
    keys = {f.overlay_key for f in prediction.findings.all()}
    missable = missable_keys(prediction, keys)
    wrong = sorted(k.split(":", 1)[1] for k, v in (finding_verdicts or {}).items()
                   if v == MISSED and k not in missable)
    if wrong:
        choices = ", ".join(sorted(k.split(":", 1)[1] for k in missable)) or "none"
        raise ApplicationError(f"Only a diagnostic class or dangerous statement this result did not flag can be marked "
                               f"as missed; not {', '.join(shown(c, 16) for c in wrong)} (not flagged: {choices}).",
                               "missed")
    finding_verdicts = {k: v for k, v in (finding_verdicts or {}).items() if k in keys | missable}
    if any(v not in Acknowledgement.Verdict.values for k, v in finding_verdicts.items() if k in keys):
        raise ApplicationError("Each finding can only be agreed or disagreed with.", "verdict")
    if any(v != MISSED for k, v in finding_verdicts.items() if k in missable):
        raise ApplicationError("A class or statement the model did not flag can only be marked as missed.", "verdict")
    with transaction.atomic():
        prediction = Prediction.objects.select_for_update().select_related("record").get(pk=prediction.pk)
        existing = Acknowledgement.objects.filter(prediction=prediction).select_related("reviewer").first()
        confirmed = prediction.record.interpretations.select_related("reviewer").order_by("-version").first()
        if confirmed and not existing:
            # A confirmed reading locks the record (clinical.interpretations): its outcomes are the reading's.
            raise ApplicationError(f"The reading of this ECG was confirmed by {confirmed.reviewer.username} (version "
                                   f"{confirmed.version}) and is locked: amend the reading to change it.",
                                   code="locked")
        if existing:
            raise ApplicationError(f"Already acknowledged by {existing.reviewer.username} at "
                                   f"{timezone.localtime(existing.at):%Y-%m-%d %H:%M}.", None, code="conflict")
        ack = Acknowledgement.objects.create(
            prediction=prediction, reviewer=reviewer, verdict=verdict, note=note, finding_verdicts=finding_verdicts,
            outcomes=review_outcomes(classes=list(prediction.superclass), flagged=keys, verdict=verdict,
                                     finding_verdicts=finding_verdicts,
                                     statements=[k.split(":", 1)[1] for k in missable
                                                 if k.startswith(STATEMENT_KEY)]))
        audit_log(actor=reviewer, action=AuditAction.RESULT_ACKNOWLEDGE, object_type="EcgRecord",
                  object_id=prediction.record.public_id,
                  details={"verdict": verdict, "findings": finding_verdicts, "urgency": prediction.top_urgency})
    return ack


MISSED = "missed"


def missable_keys(prediction: Prediction, flagged: set[str]) -> set[str]:
    """What a reviewer may mark as present but missed: every diagnostic class and every dangerous statement (the
    action table's, clinical.recommend.dangerous_keys) the result did not flag. Dangerous statements are offered so
    that a miss of, say, atrial fibrillation is recorded: site calibration needs it to measure sensitivity."""
    dangerous = [k.split(":", 1)[1] for k in dangerous_keys() if k.startswith(STATEMENT_RULE_KEY)]
    keys = {f"{SUPERCLASS_KEY}{c}" for c in prediction.superclass}
    keys |= {f"{STATEMENT_KEY}{c}" for c in dangerous if c in (prediction.statements or {})}
    return keys - flagged


def review_outcomes(*, classes: list[str], flagged: set[str], verdict: str,
                    finding_verdicts: dict[str, str], statements: list[str] = ()) -> dict[str, str]:
    """What a review says of each diagnostic class (keyed by its code: the ground truth the fairness report's error
    rates use) and of each dangerous statement the review offered as missable (keyed "statements:CODE", for site
    calibration; the fairness report reads the classes only).

    A flagged class the reviewer agrees with is a true positive, one they disagree with a false positive; without
    a per-finding verdict the overall verdict decides when it agrees (and nothing is recorded when it disagrees,
    since it may be about another finding). An unflagged class marked as missed is a false negative, and one left
    unmarked a true negative: the reviewer read the whole ECG and added nothing. The same for a statement offered.
    """
    outcomes = {}
    for code in classes:
        key = f"{SUPERCLASS_KEY}{code}"
        given = finding_verdicts.get(key)
        if key in flagged:
            if given == "agree" or (given is None and verdict == "agree"):
                outcomes[code] = "tp"
            elif given == "disagree":
                outcomes[code] = "fp"
        else:
            outcomes[code] = "fn" if given == MISSED else "tn"
    for code in statements:
        key = f"{STATEMENT_KEY}{code}"
        if key not in flagged:
            outcomes[key] = "fn" if finding_verdicts.get(key) == MISSED else "tn"
    return outcomes


def escalation_limits() -> dict[str, timedelta]:
    return {IMMEDIATE: timedelta(minutes=settings.ECG_ESCALATE_IMMEDIATE_MIN),
            URGENT: timedelta(minutes=settings.ECG_ESCALATE_URGENT_MIN)}


def alerts_escalate(*, now=None) -> list[Alert]:
    """Raise one alert (and one email) per unacknowledged result per level once its limit has passed."""
    now = now or timezone.now()
    metrics.UNACKNOWLEDGED_URGENT.set(Prediction.objects.filter(top_urgency__in=AWAITS_REVIEW,
                                                                 acknowledgement__isnull=True).count())
    raised = []
    for level, limit in escalation_limits().items():
        due = Prediction.objects.filter(top_urgency=level, acknowledgement__isnull=True, created_at__lt=now - limit,
                                        ).exclude(alerts__level=level).select_related("record__patient")
        for prediction in due:
            try:
                with transaction.atomic():
                    alert = Alert.objects.create(prediction=prediction, level=level, created_at=now)
                    recipients = _reviewer_emails()
                    alert.emailed_to = recipients
                    alert.save(update_fields=["emailed_to"])
                    waited = int((now - prediction.created_at).total_seconds() // 60)
                    audit_log(actor=None, action=AuditAction.RESULT_ESCALATED, object_type="EcgRecord",
                              object_id=prediction.record.public_id,
                              details={"level": level, "waiting_min": waited, "emailed": len(recipients)})
                    transaction.on_commit(lambda p=prediction, lv=level, r=recipients: _email(p, lv, r))
            except IntegrityError:  # another beat run raised it first
                continue
            raised.append(alert)
    return raised


def _reviewers():
    """The reviewers on duty: every active account in the reviewer role (the app keeps no duty roster)."""
    return get_user_model().objects.filter(groups__name="reviewer", is_active=True)


def _reviewer_emails() -> list[str]:
    return sorted(set(_reviewers().exclude(email="").values_list("email", flat=True)))


def _result_link(prediction: Prediction) -> str:
    return f"{settings.ECG_SITE_URL}{reverse('clinical:ecg-detail', args=[prediction.record.public_id])}"


def _send_result_mail(prediction: Prediction, recipients: list[str], subject: str, first_line: str,
                      extra: str = "") -> None:
    """The one e-mail a reviewer gets about a result (escalation or immediate notice): what, who, when, the link."""
    patient = prediction.record.patient.pseudonym
    send_mail(subject=f"[ECG-DS] {subject}: {patient}",
              message=(f"{first_line}\nPatient {patient}, analysed {prediction.created_at:%Y-%m-%d %H:%M} UTC.\n"
                       f"{extra}Open: {_result_link(prediction)}\n"),
              from_email=None, recipient_list=recipients, fail_silently=False)


def _email(prediction: Prediction, level: str, recipients: list[str]) -> None:
    if recipients:
        _send_result_mail(prediction, recipients, f"{level.upper()} result waiting for review",
                          f"An {level} ECG result has waited past its limit without acknowledgement.")


# -- immediate results: notified at once -----------------------------------------------------------------------------

# Publishing the notification task: brief retries, so a broker outage does not hold up the inference worker.
_PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def result_notify(*, prediction: Prediction) -> ResultNotification:
    """Announce an immediate result at once, in the transaction that stores it: from now on every reviewer sees a
    banner for it on every page until they open it or it is acknowledged (audited here); the e-mail and the webhook
    leave from a task after the commit. Escalation (alerts_escalate) still follows if the result waits. Idempotent."""
    notification, created = ResultNotification.objects.get_or_create(prediction=prediction)
    if created:
        public_id = prediction.record.public_id
        audit_log(actor=None, action=AuditAction.RESULT_NOTIFIED, object_type="EcgRecord", object_id=public_id,
                  details={"channel": "banner", "urgency": prediction.top_urgency,
                           "reviewers": sorted(_reviewers().values_list("username", flat=True))})
        transaction.on_commit(lambda: _enqueue_notification(notification.pk, str(public_id)))
    return notification


def _enqueue_notification(notification_id: int, public_id: str) -> None:
    from clinical.tasks import notify_result  # tasks import this module

    try:
        notify_result.apply_async((notification_id,), retry=True, retry_policy=_PUBLISH_RETRY)
    except Exception as exc:  # kombu / redis connection errors: the banner stands, escalation e-mails later
        log.warning("notification %s not queued (broker unavailable): %s", notification_id, exc)
        audit_log(actor=None, action=AuditAction.RESULT_NOTIFY_FAILED, object_type="EcgRecord", object_id=public_id,
                  details={"channel": "queue", "error": f"{type(exc).__name__}: {exc}"[:300]})


def notification_send(*, notification_id: int) -> ResultNotification:
    """E-mail the reviewers and POST the webhook (when configured) for one immediate result; each outcome audited.

    At most once: ``sent_at`` is set before sending, so a redelivered task never pages twice; a failure is logged
    and audited, never raised, and the escalation job e-mails again if the result still waits past its limit.
    """
    with transaction.atomic():
        n = (ResultNotification.objects.select_for_update()
             .select_related("prediction__record__patient").get(pk=notification_id))
        if n.sent_at:
            return n
        n.sent_at = timezone.now()
        n.save(update_fields=["sent_at"])
    prediction = n.prediction
    record = prediction.record
    top = prediction.recommendations.order_by("rank").first()
    link = _result_link(prediction)
    recipients = _reviewer_emails()
    email_error = ""
    if recipients:
        try:
            _send_result_mail(prediction, recipients, "IMMEDIATE result", "An ECG result needs a clinician now.",
                              extra=f"Top action: {top.action if top else ''}\n")
        except Exception as exc:  # SMTP refused, timed out, bad address: logged and audited, never raised
            log.exception("immediate-result e-mail failed for %s", record.public_id)
            email_error = f"{type(exc).__name__}: {exc}"[:300]
    webhook = webhook_post({"event": "ecg.result.immediate", "ecg_id": str(record.public_id),
                             "urgency": prediction.top_urgency, "top_action": top.action if top else "",
                             "rule_id": top.rule_id if top else "", "link": link,
                             "analysed_at": prediction.created_at.isoformat()})
    with transaction.atomic():
        n.emailed_to = [] if email_error else recipients
        n.webhook = webhook
        n.save(update_fields=["emailed_to", "webhook"])
        if recipients:
            audit_log(actor=None,
                      action=AuditAction.RESULT_NOTIFY_FAILED if email_error else AuditAction.RESULT_NOTIFIED,
                      object_type="EcgRecord", object_id=record.public_id,
                      details={"channel": "email", "recipients": recipients, **({"error": email_error}
                                                                                 if email_error else {})})
        if webhook["status"] != "off":
            sent = webhook["status"] == "sent"
            audit_log(actor=None, action=AuditAction.RESULT_NOTIFIED if sent else AuditAction.RESULT_NOTIFY_FAILED,
                      object_type="EcgRecord", object_id=record.public_id, details={"channel": "webhook", **webhook})
    return n


def webhook_post(payload: dict, url: str | None = None) -> dict:
    """POST ``payload`` as JSON to ``url`` (default ECGAPP_NOTIFY_WEBHOOK_URL): {"status": "sent" | "failed" |
    "off", ...}."""
    url = settings.ECG_NOTIFY_WEBHOOK_URL if url is None else url
    if not url:
        return {"status": "off"}
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "ECG-DS"})
    try:
        with urllib.request.urlopen(request, timeout=settings.ECG_NOTIFY_WEBHOOK_TIMEOUT_S) as response:
            return {"status": "sent", "http_status": response.status}
    except urllib.error.HTTPError as exc:
        log.warning("webhook %s answered %s for %s", url, exc.code, payload["ecg_id"])
        return {"status": "failed", "http_status": exc.code, "error": f"HTTP {exc.code}"}
    except (OSError, ValueError) as exc:  # URLError, refused, timed out, unresolvable
        log.warning("webhook %s failed for %s: %s", url, payload["ecg_id"], exc)
        return {"status": "failed", "error": f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"[:300]}


def notification_opened(*, prediction: Prediction, user) -> None:
    """A reviewer opened the result: their banner for it goes (the others' stay until they open it too)."""
    if user.has_perm("clinical.acknowledge_result"):
        notification = ResultNotification.objects.filter(prediction=prediction).first()
        if notification is not None:
            notification.opened_by.add(user)
