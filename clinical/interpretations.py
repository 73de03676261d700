"""The reading workflow (issue 19): over-read, confirm and amend an ECG's interpretation (services and reads).

A reviewer accepts or removes each of the computer's statements, adds statements from the label space (the model's
diagnostic classes and statements, the criteria by measurement) or free text, corrects measurements by caliper, and
signs by re-entering the password (the API signs with the reviewer's token). The signed reading is an
Interpretation, version 1, beside the computer's result (which stays as it was); from then on the record is
locked: a second confirmation, an acknowledgement or a changed version is refused, and only an amendment with a
reason makes a new version. Each version carries the serial comparison with the prior ECG and the same outcome
structure as an acknowledgement (clinical.reviews.review_outcomes), which monitoring reads.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from clinical.audit import AuditAction, audit_log
from clinical.comparison import COMPARED, MEASUREMENT_STATEMENTS, ecg_compare, latest_interpretation, prior_ecg
from clinical.errors import ApplicationError
from clinical.intake import shown
from clinical.models import (
    Acknowledgement,
    ApiToken,
    AuditEvent,
    EcgRecord,
    Finding,
    InferenceJob,
    Interpretation,
    Prediction,
)
from clinical.recommend import AWAITS_REVIEW, dangerous_keys
from clinical.reviews import MISSED, review_outcomes, webhook_post
from mlcore.labels import STATEMENT_KEY, STATEMENT_RULE_KEY, SUPERCLASS_KEY, SUPERCLASS_NAMES

log = logging.getLogger(__name__)
MAX_FREE_TEXT = 5000
MIN_REASON = 3
# Failed signatures by one reviewer within this window before further tries wait: a confirmation form must not
# become a way around the login throttle (clinical.auth) to guess a password.
SIGN_FAILURES_ALLOWED = 5
SIGN_FAILURE_WINDOW = timedelta(minutes=15)

# The scalar measurements a confirmed version keeps (those compared, and the RR its QTc values were derived from).
CONFIRMED_KEYS = ("rr_ms", *(k for k, _, _ in COMPARED))


@dataclass(frozen=True)
class Editable:
    label: str
    unit: str
    low: float
    high: float


# What a reviewer may set by caliper. The bounds refuse typing errors only (no guideline is behind them: they are
# wider than any ECG we know of), so a plausible value outside the usual ranges is kept as the reviewer gave it.
EDITABLE = {
    "heart_rate_bpm": Editable("Heart rate", "/min", 15, 350), "rr_ms": Editable("RR", "ms", 150, 4000),
    "p_ms": Editable("P duration", "ms", 10, 400), "pr_ms": Editable("PR", "ms", 20, 800),
    "qrs_ms": Editable("QRS", "ms", 20, 400), "qt_ms": Editable("QT", "ms", 100, 900),
    "qtc_bazett_ms": Editable("QTc (Bazett)", "ms", 100, 900),
    "qtc_fridericia_ms": Editable("QTc (Fridericia)", "ms", 100, 900),
}


def computer_statements(record: EcgRecord) -> list[dict]:
    """The computer's statements of a result, in the order the result page lists them: the model's findings, then
    those by measurement. [{key, head, code, display, origin}]."""
    prediction = getattr(record, "prediction", None)
    if prediction is None:
        return []
    return [{"key": f.overlay_key, "head": f.head, "code": f.code, "display": f.display,
             "origin": (Interpretation.Origin.MEASUREMENT if f.head == Finding.Head.MEASUREMENT
                        else Interpretation.Origin.MODEL)}
            for f in sorted(prediction.findings.all(), key=lambda f: (f.head == Finding.Head.MEASUREMENT, f.rank))]


def statement_choices(record: EcgRecord) -> dict[str, str]:
    """What a reviewer may add, key -> display: the model's diagnostic classes and statements (its label space)
    and the criteria by measurement; the computer's own statements are accepted or removed, not added."""
    from clinical.services import statement_names

    taken = {s["key"] for s in computer_statements(record)}
    choices = {f"{SUPERCLASS_KEY}{c}": n for c, n in SUPERCLASS_NAMES.items()}
    choices |= {f"{STATEMENT_KEY}{c}": n for c, n in sorted(statement_names().items(), key=lambda i: i[1])}
    choices |= {f"measurement:{c}": n for c, n in MEASUREMENT_STATEMENTS.items()}
    return {k: v for k, v in choices.items() if k not in taken}


def _signature(*, reviewer, record: EcgRecord, password: str | None, api_token: ApiToken | None) -> str:
    """"password" or "api_token:<prefix>" once the reviewer has signed; refused (and the failure audited) else."""
    if api_token is not None:
        if api_token.user_id != reviewer.pk or not api_token.active:
            raise ApplicationError("The API token is not this reviewer's, or it has expired.", "token",
                                   code="signature")
        return f"api_token:{api_token.prefix}"
    since = timezone.now() - SIGN_FAILURE_WINDOW
    failures = AuditEvent.objects.filter(action=AuditAction.INTERPRETATION_SIGN_FAILED,
                                         actor=reviewer, at__gte=since).count()
    if failures >= SIGN_FAILURES_ALLOWED:
        raise ApplicationError(f"{failures} wrong passwords in the last {SIGN_FAILURE_WINDOW.seconds // 60} minutes: "
                               "wait before signing again.", "password", code="signature")
    if not password or not reviewer.check_password(password):
        # Committed on its own: the refusal stores no reading, but the failed signature is kept.
        audit_log(actor=reviewer, action=AuditAction.INTERPRETATION_SIGN_FAILED,
                  object_type="EcgRecord", object_id=record.public_id,
                  details={"reason": "no password" if not password else "wrong password"})
        raise ApplicationError("Re-enter your password to sign: the one given is not correct. Nothing was stored.",
                               "password", code="signature")
    return "password"


def _measurements(record: EcgRecord, overrides: dict[str, float]) -> tuple[dict, dict]:
    """(the confirmed values {key: value}, the reviewer's {key: {"reviewer", "computer"}}), refused on bad input.

    A QT or rate the reviewer measured changes the QTc the computer derived from them: where the reviewer set no
    QTc, it is derived again from their values with the same formulas (Bazett QT/RR^1/2, Fridericia QT/RR^1/3)
    and recorded as theirs, with what it was derived from."""
    computer = {k: (record.measurements or {}).get(k) for k in CONFIRMED_KEYS}
    bad = sorted(set(overrides) - set(EDITABLE))
    if bad:
        raise ApplicationError(f"Only {', '.join(EDITABLE)} can be set by caliper; not {shown(bad[0], 24)}.",
                               "measurements")
    given = {}
    for key, value in overrides.items():
        spec = EDITABLE[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ApplicationError(f"{spec.label}: give a number in {spec.unit}.", "measurements")
        if not spec.low <= value <= spec.high:
            raise ApplicationError(f"{spec.label} {value:g} {spec.unit} is outside {spec.low:g}-{spec.high:g} "
                                   f"{spec.unit}: check the value.", "measurements")
        given[key] = round(float(value), 1)
    confirmed = dict(computer)
    kept = {k: {"reviewer": v, "computer": computer.get(k)} for k, v in given.items()}
    confirmed.update(given)
    if "heart_rate_bpm" in given and "rr_ms" not in given:
        confirmed["rr_ms"] = round(60000 / given["heart_rate_bpm"])
    if {"qt_ms", "heart_rate_bpm", "rr_ms"} & set(given) and confirmed.get("qt_ms") and confirmed.get("rr_ms"):
        rr_s = confirmed["rr_ms"] / 1000
        for key, exponent in (("qtc_bazett_ms", 1 / 2), ("qtc_fridericia_ms", 1 / 3)):
            if key not in given:
                confirmed[key] = round(confirmed["qt_ms"] / rr_s ** exponent)
                kept[key] = {"reviewer": confirmed[key], "computer": computer.get(key),
                             "derived_from": "the reviewer's QT and RR"}
    return confirmed, kept


def _statements(record: EcgRecord, removed: list[str], added: list[str]) -> list[dict]:
    computer = computer_statements(record)
    keys = {s["key"] for s in computer}
    unknown = sorted(set(removed) - keys)
    if unknown:
        raise ApplicationError(f"Only the computer's statements can be removed; {shown(unknown[0], 40)} is not one of "
                               "this result's.", "statements")
    choices = statement_choices(record)
    wrong = sorted(set(added) - set(choices))
    if wrong:
        what = "is already the computer's: keep it instead" if wrong[0] in keys else "is not in the label space"
        raise ApplicationError(f"{shown(wrong[0], 40)} {what}.", "statements")
    statements = [{**s, "action": Interpretation.Action.REMOVED if s["key"] in removed
                   else Interpretation.Action.ACCEPTED} for s in computer]
    for key in dict.fromkeys(added):
        head, code = key.split(":", 1)
        statements.append({"key": key, "head": head, "code": code, "display": choices[key],
                           "origin": Interpretation.Origin.REVIEWER, "action": Interpretation.Action.ADDED})
    return statements


def _outcomes(record: EcgRecord, statements: list[dict]) -> tuple[str, dict, dict]:
    """(overall verdict, finding_verdicts, outcomes) in an acknowledgement's terms: a computer statement kept is
    agreed with, one removed disagreed with, and a diagnostic class or model statement added is one the model
    missed. The dangerous statements it did not flag have their outcome fixed, as an acknowledgement fixes them."""
    prediction = record.prediction
    flagged = {s["key"] for s in statements if s["origin"] != Interpretation.Origin.REVIEWER}
    model_labels = ({f"{SUPERCLASS_KEY}{c}" for c in prediction.superclass}
                    | {f"{STATEMENT_KEY}{c}" for c in (prediction.statements or {})})
    verdicts = {s["key"]: "disagree" if s["action"] == Interpretation.Action.REMOVED else "agree"
                for s in statements if s["key"] in flagged}
    verdicts |= {s["key"]: MISSED for s in statements
                 if s["action"] == Interpretation.Action.ADDED and s["key"] in model_labels}
    verdict = "agree" if all(v == "agree" for v in verdicts.values()) else "disagree"
    dangerous = [k.split(":", 1)[1] for k in dangerous_keys() if k.startswith(STATEMENT_RULE_KEY)]
    missable = [c for c in dangerous if c in (prediction.statements or {}) and f"{STATEMENT_KEY}{c}" not in flagged]
    outcomes = review_outcomes(classes=list(prediction.superclass), flagged=flagged, verdict=verdict,
                               finding_verdicts=verdicts, statements=missable)
    return verdict, verdicts, outcomes


def _readable(record: EcgRecord) -> None:
    if record.job.state != InferenceJob.State.DONE or getattr(record, "prediction", None) is None:
        raise ApplicationError("This ECG has no result yet: it can be read and confirmed once the analysis is done.",
                               code="not_ready")


def _new_version(*, record: EcgRecord, reviewer, removed: list[str], added: list[str], free_text: str,
                 overrides: dict[str, float], password: str | None, api_token: ApiToken | None,
                 reason: str | None) -> Interpretation:
    """Confirm (reason None) or amend: everything is checked before the signature, and stored in one transaction."""
    if not reviewer.has_perm("clinical.acknowledge_result"):
        raise ApplicationError("Only reviewers can confirm or amend a reading.", code="forbidden")
    _readable(record)
    free_text = (free_text or "").strip()
    if len(free_text) > MAX_FREE_TEXT:
        raise ApplicationError(f"The free text is limited to {MAX_FREE_TEXT} characters.", "free_text")
    if reason is not None:
        reason = reason.strip()
        if len(reason) < MIN_REASON:
            raise ApplicationError("An amendment needs a reason: say what was wrong with the confirmed reading.",
                                   "reason")
    statements = _statements(record, list(removed), list(added))
    confirmed, kept = _measurements(record, dict(overrides))
    verdict, verdicts, outcomes = _outcomes(record, statements)
    prior = prior_ecg(record=record)
    comparison = ecg_compare(record=record, prior=prior,
                             statements={s["key"]: s["display"] for s in statements
                                         if s["action"] != Interpretation.Action.REMOVED},
                             measurements=confirmed)
    # The state checks below are repeated under the lock; here they spare a reviewer a signature that cannot land.
    _state_check(record, amending=reason is not None)
    signed_with = _signature(reviewer=reviewer, record=record, password=password, api_token=api_token)
    with transaction.atomic():
        record = EcgRecord.objects.select_for_update(of=("self",)).select_related("prediction").get(pk=record.pk)
        latest = _state_check(record, amending=reason is not None)
        if latest is not None and (latest.statements, latest.free_text, latest.measurement_overrides) == (
                statements, free_text, kept):
            raise ApplicationError("The amendment changes nothing: edit a statement, the text or a measurement.",
                                   "statements")
        interpretation = Interpretation.objects.create(
            record=record, version=latest.version + 1 if latest else 1,
            status=Interpretation.Status.AMENDED if latest else Interpretation.Status.FINAL,
            statements=statements, free_text=free_text, measurements=confirmed, measurement_overrides=kept,
            comparison=comparison, prior_record=prior, finding_verdicts=verdicts, outcomes=outcomes,
            reviewer=reviewer, signed_with=signed_with, reason=reason or "", supersedes=latest)
        changes = {"version": interpretation.version, "signed_with": signed_with,
                   "removed": [s["key"] for s in statements if s["action"] == Interpretation.Action.REMOVED],
                   "added": [s["key"] for s in statements if s["action"] == Interpretation.Action.ADDED],
                   "measurements": kept, "free_text": bool(free_text), "outcomes": outcomes,
                   "prior": str(prior.public_id) if prior else None, "comparison": comparison.get("lines", [])}
        audit_log(actor=reviewer,
                  action=AuditAction.INTERPRETATION_AMEND if latest else AuditAction.INTERPRETATION_CONFIRM,
                  object_type="EcgRecord", object_id=record.public_id,
                  details=changes | ({"reason": reason} if latest else {}))
        _acknowledge_with(interpretation, verdict)
        if settings.ECG_REPORT_WEBHOOK_URL:
            transaction.on_commit(lambda: _enqueue_report_webhook(interpretation.pk))
    return interpretation


def _enqueue_report_webhook(interpretation_id: int) -> None:
    from clinical.tasks import send_report_webhook  # tasks import this module

    try:
        send_report_webhook.apply_async((interpretation_id,), retry=True,
                                        retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2})
    except Exception as exc:  # the broker is down: the reading stands; the EHR can still fetch the report
        log.warning("report webhook for reading %s not queued: %s", interpretation_id, exc)


def report_webhook_send(*, interpretation_id: int) -> dict:
    """Announce a signed reading to ECGAPP_REPORT_WEBHOOK_URL (issue 19: "an optional outbound webhook when a report
    is confirmed"): the ECG, version, status and where its PDF, FHIR bundle and HL7 message are (the receiver fetches
    them with its API token; the webhook itself carries no patient data). Audited either way; at most once per
    version.

    Outbox order, as ``notification_send`` does for the immediate-result webhook: the attempt is claimed and audited
    (``report.webhook_attempt``) in a short transaction under the row lock and committed; the POST (up to its
    timeout) runs outside any transaction and lock; the outcome is audited (``report.webhook``) afterwards. A
    redelivered task finds the claim and sends nothing; a worker lost between claim and outcome leaves the claim
    without an outcome, which the audit trail shows (the receiver can still fetch the report)."""
    interpretation = Interpretation.objects.select_related("record", "reviewer").get(pk=interpretation_id)
    record = interpretation.record
    with transaction.atomic():
        # Serialises two deliveries of the same message; the row itself is never changed (append-only).
        Interpretation.objects.select_for_update().get(pk=interpretation_id)
        if AuditEvent.objects.filter(action=AuditAction.REPORT_WEBHOOK_ATTEMPT, object_id=str(record.public_id),
                                     details__version=interpretation.version).exists():
            return {"status": "already sent"}
        audit_log(actor=None, action=AuditAction.REPORT_WEBHOOK_ATTEMPT,
                  object_type="EcgRecord", object_id=record.public_id,
                  details={"version": interpretation.version})
    site = settings.ECG_SITE_URL
    links = {kind: f"{site}{reverse(f'api:ecg-report-{kind}', args=[record.public_id])}"
             for kind in ("pdf", "fhir", "hl7")}
    outcome = webhook_post({"event": f"ecg.report.{interpretation.status}", "ecg_id": str(record.public_id),
                            "version": interpretation.version, "status": interpretation.status,
                            "reviewer": interpretation.reviewer.username,
                            "confirmed_at": interpretation.confirmed_at.isoformat(), "links": links},
                           url=settings.ECG_REPORT_WEBHOOK_URL)
    with transaction.atomic():
        audit_log(actor=None, action=AuditAction.REPORT_WEBHOOK, object_type="EcgRecord", object_id=record.public_id,
                  details={"version": interpretation.version, **outcome})
    return outcome


def _state_check(record: EcgRecord, *, amending: bool) -> Interpretation | None:
    latest = latest_interpretation(record)
    if not amending and latest is not None:
        raise ApplicationError(f"Already confirmed by {latest.reviewer.username} at "
                               f"{timezone.localtime(latest.confirmed_at):%Y-%m-%d %H:%M} (version {latest.version}): "
                               "the reading is locked; amend it with a reason instead.", code="already_confirmed")
    if amending and latest is None:
        raise ApplicationError("This ECG has no confirmed reading to amend: confirm it first.", code="not_confirmed")
    return latest


def _acknowledge_with(interpretation: Interpretation, verdict: str) -> None:
    """An urgent result waiting for acknowledgement is acknowledged by its confirmation (the same reviewer, verdicts
    and outcomes), so that it leaves the urgent queue and escalation stops, as after an acknowledgement."""
    if interpretation.version != 1:
        return
    # Locked as result_acknowledge locks it, so that one of the two acknowledges and the other sees it.
    prediction = Prediction.objects.select_for_update().get(record=interpretation.record)
    if prediction.top_urgency not in AWAITS_REVIEW or Acknowledgement.objects.filter(prediction=prediction).exists():
        return
    Acknowledgement.objects.create(
        prediction=prediction, reviewer=interpretation.reviewer, at=interpretation.confirmed_at, verdict=verdict,
        finding_verdicts=interpretation.finding_verdicts, outcomes=interpretation.outcomes,
        note=f"Confirmed reading, version {interpretation.version}." + (
            f" {interpretation.free_text}" if interpretation.free_text else ""))
    audit_log(actor=interpretation.reviewer, action=AuditAction.RESULT_ACKNOWLEDGE, object_type="EcgRecord",
              object_id=interpretation.record.public_id,
              details={"verdict": verdict, "findings": interpretation.finding_verdicts,
                       "urgency": prediction.top_urgency, "via": AuditAction.INTERPRETATION_CONFIRM})


def interpretation_confirm(*, record: EcgRecord, reviewer, removed: list[str] = (), added: list[str] = (),
                           free_text: str = "", overrides: dict[str, float] | None = None,
                           password: str | None = None, api_token: ApiToken | None = None) -> Interpretation:
    """Sign the reviewer's reading of ``record`` as version 1 and lock the record; refused when already confirmed."""
    return _new_version(record=record, reviewer=reviewer, removed=list(removed), added=list(added),
                        free_text=free_text, overrides=overrides or {}, password=password, api_token=api_token,
                        reason=None)


def interpretation_amend(*, record: EcgRecord, reviewer, reason: str, removed: list[str] = (),
                         added: list[str] = (), free_text: str = "", overrides: dict[str, float] | None = None,
                         password: str | None = None, api_token: ApiToken | None = None) -> Interpretation:
    """A new version of a confirmed reading (the whole reading as amended, with the reason); the earlier versions
    stay as they were."""
    return _new_version(record=record, reviewer=reviewer, removed=list(removed), added=list(added),
                        free_text=free_text, overrides=overrides or {}, password=password, api_token=api_token,
                        reason=reason or "")


def interpretation_versions(*, record: EcgRecord) -> list[Interpretation]:
    """Every confirmed version of a reading, newest first."""
    return list(record.interpretations.select_related("reviewer", "prior_record").order_by("-version"))


def interpretation_diff(older: list[dict], newer: list[dict]) -> dict[str, list[str]]:
    """What changed between two readings' statements: {"added": [display], "removed": [display]} (the computer's
    result is a reading too: pass computer_statements(record) as ``older``)."""
    before = {s["key"]: s["display"] for s in older if s.get("action") != Interpretation.Action.REMOVED}
    after = {s["key"]: s["display"] for s in newer if s.get("action") != Interpretation.Action.REMOVED}
    return {"added": [d for k, d in after.items() if k not in before],
            "removed": [d for k, d in before.items() if k not in after]}


def reading_state(record: EcgRecord) -> dict:
    """{"status": "preliminary" | "final" | "amended", "version", "reviewer", "confirmed_at"} for lists and the
    API: preliminary until a reviewer confirms."""
    latest = latest_interpretation(record)
    if latest is None:
        return {"status": "preliminary", "version": None, "reviewer": None, "confirmed_at": None}
    return {"status": latest.status, "version": latest.version, "reviewer": latest.reviewer.username,
            "confirmed_at": latest.confirmed_at}


def reading_for_report(record: EcgRecord) -> dict | None:
    """What a report prints of the confirmed reading (clinical.reports wires it as ``_confirmed``): the latest
    version, or None while the reading is preliminary (the report then prints the computer's statements)."""
    latest = latest_interpretation(record)
    if latest is None:
        return None
    # Each kept statement with its code and origin, so that a report says which are the computer's and which the
    # reviewer's (clinical.reports.selectors.confirmation_from_reading reads these keys).
    statements = [{"key": s["key"], "code": s["code"], "display": s["display"], "origin": s["origin"]}
                  for s in latest.kept_statements]
    return {"confirmed_statements": statements, "free_text": latest.free_text,
            "status": latest.status, "version": latest.version, "reviewer": latest.reviewer.username,
            "confirmed_at": latest.confirmed_at, "amendment_reason": latest.reason or None,
            "comparison": list(latest.comparison.get("lines", [])),
            "measurements": dict(latest.measurements), "measurement_overrides": dict(latest.measurement_overrides),
            "prior_ecg": str(latest.prior_record.public_id) if latest.prior_record_id else None,
            "signed_with": latest.signed_with}
