"""Over-read and confirm (issue 19): signing, the lock, amendments, outcomes and the serial comparison."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import DatabaseError, transaction
from django.utils import timezone

from clinical import services
from clinical.errors import ApplicationError
from clinical.interpretations import interpretation_amend, interpretation_confirm, reading_state
from clinical.models import Acknowledgement, AuditEvent, EcgRecord, Interpretation, Prediction
from clinical.reviews import result_acknowledge
from clinical.tokens import api_token_create
from tests.clinical.conftest import make_result

PW = "pw-for-tests-1"


@pytest.fixture
def prior_and_current(clinician, wfdb_pair):
    """A patient's earlier ECG (QTc 420 ms, QRS 100 ms, routine) and today's (immediate, MI flagged)."""
    prior = services.ecg_submit(actor=clinician, pseudonym="PT-SER", age=70, sex="M", files=wfdb_pair, fs=None)
    make_result(prior, "routine")
    EcgRecord.objects.filter(pk=prior.pk).update(
        uploaded_at=timezone.now() - timedelta(days=30),
        measurements={**prior.measurements, "qtc_bazett_ms": 420, "qrs_ms": 100, "pr_ms": 160, "qt_ms": 380,
                      "heart_rate_bpm": 70})
    current = services.ecg_submit(actor=clinician, pseudonym="PT-SER", age=70, sex="M", files=wfdb_pair, fs=None)
    make_result(current, "immediate")
    # Every diagnostic class scored, as a real result has them (make_result scores MI only).
    Prediction.objects.filter(record=current).update(
        superclass={"NORM": 0.05, "MI": 0.9, "STTC": 0.2, "CD": 0.3, "HYP": 0.1})
    EcgRecord.objects.filter(pk=current.pk).update(
        measurements={**current.measurements, "qtc_bazett_ms": 490, "qrs_ms": 132, "pr_ms": 170, "qt_ms": 420,
                      "heart_rate_bpm": 82})
    return EcgRecord.objects.get(pk=prior.pk), EcgRecord.objects.get(pk=current.pk)


def test_confirm_stores_the_edited_reading_beside_the_computers_and_locks_it(prior_and_current, reviewer):
    prior, record = prior_and_current
    reading = interpretation_confirm(record=record, reviewer=reviewer, removed=["superclass:MI"],
                                     added=["statements:CLBBB", "measurement:WIDE_QRS"], free_text="Old LBBB?",
                                     overrides={"qt_ms": 440}, password=PW)
    assert (reading.version, reading.status, reading.signed_with) == (1, "final", "password")
    actions = {s["key"]: (s["origin"], s["action"]) for s in reading.statements}
    assert actions == {"superclass:MI": ("model", "removed"), "statements:CLBBB": ("reviewer", "added"),
                       "measurement:WIDE_QRS": ("reviewer", "added")}
    # The computer's result is untouched: both versions are kept.
    assert list(record.prediction.findings.values_list("code", flat=True)) == ["MI"]
    # A caliper QT is the reviewer's, and the QTc derived from it says so.
    assert reading.measurement_overrides["qt_ms"] == {"reviewer": 440.0, "computer": 420}
    assert reading.measurements["qt_ms"] == 440.0
    assert reading.measurement_overrides["qtc_bazett_ms"]["derived_from"] == "the reviewer's QT and RR"
    assert reading.prior_record == prior and reading.comparison["prior"]["id"] == str(prior.public_id)
    event = AuditEvent.objects.get(action="interpretation.confirm")
    assert event.actor == reviewer and event.details["removed"] == ["superclass:MI"]
    assert reading_state(record)["status"] == "final"


def test_outcomes_follow_the_acknowledgement_structure_and_acknowledge_the_urgent_result(prior_and_current, reviewer):
    _, record = prior_and_current
    reading = interpretation_confirm(record=record, reviewer=reviewer, removed=["superclass:MI"],
                                     added=["superclass:CD"], password=PW)
    assert reading.finding_verdicts == {"superclass:MI": "disagree", "superclass:CD": "missed"}
    assert reading.outcomes == {"MI": "fp", "CD": "fn", "NORM": "tn", "STTC": "tn", "HYP": "tn"}
    # The immediate result leaves the urgent queue: it is acknowledged by its confirmation, with the same outcomes.
    ack = Acknowledgement.objects.get(prediction=record.prediction)
    assert ack.reviewer == reviewer and ack.outcomes == reading.outcomes and ack.verdict == "disagree"


def test_a_wrong_password_stores_nothing_but_the_failed_signature(prior_and_current, reviewer):
    _, record = prior_and_current
    with pytest.raises(ApplicationError, match="password") as err:
        interpretation_confirm(record=record, reviewer=reviewer, removed=["superclass:MI"], password="wrong-one")
    assert err.value.field == "password"
    assert not Interpretation.objects.exists() and not Acknowledgement.objects.exists()
    assert not AuditEvent.objects.filter(action="interpretation.confirm").exists()
    assert AuditEvent.objects.filter(action="interpretation.sign_failed", actor=reviewer).count() == 1


def test_bad_input_is_refused_before_anything_is_stored(prior_and_current, reviewer):
    _, record = prior_and_current
    cases = [({"removed": ["statements:AFIB"]}, "Only the computer's statements"),
             ({"added": ["superclass:MI"]}, "already the computer's"),
             ({"added": ["statements:NOPE"]}, "not in the label space"),
             ({"overrides": {"qrs_ms": 5000}}, "outside"),
             ({"overrides": {"st_j_uv": 1}}, "can be set by caliper")]
    for kwargs, message in cases:
        with pytest.raises(ApplicationError, match=message):
            interpretation_confirm(record=record, reviewer=reviewer, password=PW, **kwargs)
    assert not Interpretation.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="interpretation.").exists()


def test_confirming_twice_is_refused_and_the_locked_record_refuses_acknowledgement(prior_and_current, reviewer,
                                                                                   wfdb_pair):
    _, record = prior_and_current
    interpretation_confirm(record=record, reviewer=reviewer, password=PW)
    with pytest.raises(ApplicationError, match="Already confirmed by rev-cy .* locked; amend") as err:
        interpretation_confirm(record=record, reviewer=reviewer, removed=["superclass:MI"], password=PW)
    assert err.value.code == "already_confirmed"
    assert Interpretation.objects.count() == 1
    # A routine result confirmed (so not acknowledged by it): an acknowledgement afterwards is refused by the lock.
    routine = _routine(reviewer, wfdb_pair)
    interpretation_confirm(record=routine, reviewer=reviewer, password=PW)
    with pytest.raises(ApplicationError, match="locked: amend the reading") as err:
        result_acknowledge(prediction=routine.prediction, reviewer=reviewer, verdict="agree", note="late ack")
    assert err.value.code == "locked" and not Acknowledgement.objects.filter(prediction=routine.prediction).exists()


def _routine(uploader, files) -> EcgRecord:
    record = services.ecg_submit(actor=uploader, pseudonym="PT-ROUT", age=50, sex="F", files=files, fs=None)
    make_result(record, "routine")
    return EcgRecord.objects.get(pk=record.pk)


def test_the_database_refuses_to_change_a_confirmed_version(prior_and_current, reviewer):
    _, record = prior_and_current
    reading = interpretation_confirm(record=record, reviewer=reviewer, password=PW)
    with pytest.raises(DatabaseError), transaction.atomic():
        Interpretation.objects.filter(pk=reading.pk).update(free_text="rewritten")
    assert Interpretation.objects.get(pk=reading.pk).free_text == ""


def test_an_amendment_is_version_2_with_its_reason_and_keeps_version_1(prior_and_current, reviewer):
    _, record = prior_and_current
    with pytest.raises(ApplicationError, match="no confirmed reading to amend"):
        interpretation_amend(record=record, reviewer=reviewer, reason="typo", password=PW)
    first = interpretation_confirm(record=record, reviewer=reviewer, password=PW)
    for reason in ("", "  ", "no"):
        with pytest.raises(ApplicationError, match="needs a reason"):
            interpretation_amend(record=record, reviewer=reviewer, reason=reason, removed=["superclass:MI"],
                                 password=PW)
    with pytest.raises(ApplicationError, match="changes nothing"):
        interpretation_amend(record=record, reviewer=reviewer, reason="Second look", password=PW)
    second = interpretation_amend(record=record, reviewer=reviewer, reason="Q waves are old: not acute MI",
                                  removed=["superclass:MI"], password=PW)
    assert (second.version, second.status, second.supersedes) == (2, "amended", first)
    assert second.outcomes["MI"] == "fp" and Interpretation.objects.get(pk=first.pk).outcomes["MI"] == "tp"
    assert reading_state(record) | {"confirmed_at": None} == {"status": "amended", "version": 2,
                                                               "reviewer": "rev-cy", "confirmed_at": None}
    event = AuditEvent.objects.get(action="interpretation.amend")
    assert event.details["reason"] == "Q waves are old: not acute MI" and event.details["version"] == 2


def test_only_reviewers_confirm_and_a_token_signs_for_its_own_user_only(prior_and_current, reviewer, clinician):
    _, record = prior_and_current
    with pytest.raises(ApplicationError, match="Only reviewers"):
        interpretation_confirm(record=record, reviewer=clinician, password=PW)
    token, _ = api_token_create(user=clinician, name="ward")
    with pytest.raises(ApplicationError, match="not this reviewer's"):
        interpretation_confirm(record=record, reviewer=reviewer, api_token=token)
    own, _ = api_token_create(user=reviewer, name="reader")
    reading = interpretation_confirm(record=record, reviewer=reviewer, api_token=own)
    assert reading.signed_with == f"api_token:{own.prefix}"


def test_the_serial_comparison_lists_significant_changes_with_their_source(prior_and_current, reviewer):
    _, record = prior_and_current
    reading = interpretation_confirm(record=record, reviewer=reviewer, added=["statements:CLBBB"], password=PW)
    rows = {r["key"]: r for r in reading.comparison["measurements"]}
    assert rows["qtc_bazett_ms"]["significant"] and rows["qtc_bazett_ms"]["text"].startswith("QTc (Bazett) +70 ms")
    assert "Drew" in rows["qtc_bazett_ms"]["source"]
    assert rows["qrs_ms"]["significant"] and "new QRS widening" in rows["qrs_ms"]["rule"]
    assert not rows["heart_rate_bpm"]["significant"] and rows["heart_rate_bpm"]["text"].startswith("HR +12/min")
    lines = reading.comparison["lines"]
    # The prior ECG's computer reading flagged MI too; the reviewer's CLBBB is new.
    assert "New: Complete left bundle branch block" in lines
    # Significant changes lead the lines a report prints.
    assert lines[0].startswith("QRS +32 ms") and lines[1].startswith("QTc (Bazett) +70 ms")


def test_no_prior_ecg_means_no_comparison(clinician, reviewer, wfdb_pair):
    record = _routine(clinician, wfdb_pair)
    reading = interpretation_confirm(record=record, reviewer=reviewer, password=PW)
    assert reading.comparison == {} and reading.prior_record is None
    assert not Acknowledgement.objects.exists()  # a routine result needs no acknowledgement


def test_monitoring_reads_the_latest_confirmed_version_in_place_of_the_acknowledgement(prior_and_current, reviewer):
    """Fairness counts and site calibration read a confirmed reading as they read an acknowledgement; the latest
    version stands for the ECG (an amendment replaces version 1, and the acknowledgement its confirmation made)."""
    from monitoring.calibration import reviewed_results
    from monitoring.fairness import outcome_counts

    prior, record = prior_and_current
    result_acknowledge(prediction=prior.prediction, reviewer=reviewer, verdict="agree", note="Old ECG, agree")
    interpretation_confirm(record=record, reviewer=reviewer, password=PW)  # MI kept: a true positive
    interpretation_amend(record=record, reviewer=reviewer, reason="Old Q waves, not an infarct now",
                         removed=["superclass:MI"], password=PW)
    start, end = timezone.now() - timedelta(days=365), timezone.now() + timedelta(days=1)
    n, counts = outcome_counts(start, end, [])
    by_sex = next(v for k, v in counts.items() if k[0] == "sex")
    # Two ECGs: the prior's acknowledgement (MI tp) and the amended reading (MI fp, four classes tn); the
    # acknowledgement that version 1 made for the immediate result is not counted beside it.
    assert n == 2 and by_sex == {"tp": 1, "fp": 1, "fn": 0, "tn": 4}
    rows = reviewed_results(model_version="test")
    assert [(r.prediction_id, r.outcomes.get("MI")) for r in rows] == [(prior.prediction.pk, "tp"),
                                                                       (record.prediction.pk, "fp")]


def test_repeated_wrong_passwords_make_the_reviewer_wait(prior_and_current, reviewer):
    """The confirmation form is no way around the login throttle: after 5 wrong passwords in 15 minutes even the
    right one is refused for a while."""
    _, record = prior_and_current
    for _ in range(5):
        with pytest.raises(ApplicationError, match="not correct"):
            interpretation_confirm(record=record, reviewer=reviewer, password="guess-again")
    with pytest.raises(ApplicationError, match="5 wrong passwords in the last 15 minutes"):
        interpretation_confirm(record=record, reviewer=reviewer, password=PW)
    assert not Interpretation.objects.exists()


def test_a_record_without_a_result_cannot_be_confirmed(clinician, reviewer, wfdb_pair):
    record = services.ecg_submit(actor=clinician, pseudonym="PT-WAIT", age=40, sex="F", files=wfdb_pair, fs=None)
    with pytest.raises(ApplicationError, match="no result yet") as err:
        interpretation_confirm(record=record, reviewer=reviewer, password=PW)
    assert err.value.code == "not_ready" and not AuditEvent.objects.filter(action="interpretation.sign_failed")


def test_what_a_report_prints_is_the_latest_version(prior_and_current, reviewer):
    from clinical.interpretations import reading_for_report

    prior, record = prior_and_current
    assert reading_for_report(record) is None  # preliminary
    interpretation_confirm(record=record, reviewer=reviewer, added=["statements:CLBBB"], password=PW)
    interpretation_amend(record=record, reviewer=reviewer, reason="MI removed: old Q waves",
                         removed=["superclass:MI"], added=["statements:CLBBB"], password=PW)
    report = reading_for_report(record)
    assert report["status"] == "amended" and report["version"] == 2 and report["reviewer"] == "rev-cy"
    assert report["confirmed_statements"] == [{"key": "statements:CLBBB", "code": "CLBBB", "origin": "reviewer",
                                               "display": "Complete left bundle branch block"}]
    assert report["amendment_reason"] == "MI removed: old Q waves" and report["prior_ecg"] == str(prior.public_id)
    assert report["comparison"] and report["comparison"][0].startswith("QRS +32 ms")
    # The report outputs print that version: the PDF's data, the FHIR status and conclusion, the HL7 result status.
    from clinical.reports.fhir import report_fhir
    from clinical.reports.hl7 import report_oru
    from clinical.reports.selectors import report_data

    data = report_data(record=EcgRecord.objects.get(pk=record.pk))
    assert (data.status, data.version, data.reviewer, data.amendment_reason) == ("amended", 2, "rev-cy",
                                                                                  "MI removed: old Q waves")
    assert [st.display for st in data.confirmed_statements] == ["Complete left bundle branch block"]
    diagnostic = next(e["resource"] for e in report_fhir(data, b"%PDF-1.4")["entry"]
                      if e["resource"]["resourceType"] == "DiagnosticReport")
    assert diagnostic["status"] == "amended" and "Complete left bundle branch block" in diagnostic["conclusion"]
    assert "|C|" in report_oru(data, b"%PDF-1.4").split("OBR|", 1)[1].split("\r", 1)[0]


def test_a_reanalysis_after_confirmation_leaves_the_confirmed_version_as_it_was(clinician, reviewer):
    """Another window of a confirmed ECG is a new record with its own (preliminary) reading; the confirmed one, its
    statements and measurements, stay as signed."""
    from clinical import demo

    signal = demo.synthesize(demo.CASES[0], fs=500, seconds=20, seed=3)
    record = services.ecg_submit(actor=clinician, pseudonym="PT-LONG", age=50, sex="M",
                                 files={"json": ("long.json", demo.as_json(signal, 500))}, fs=None)
    make_result(record, "routine")
    record = EcgRecord.objects.get(pk=record.pk)
    signed = interpretation_confirm(record=record, reviewer=reviewer, removed=["superclass:MI"], password=PW)
    again = services.ecg_reanalyse(actor=clinician, record=record, window_start_s=8.0)
    make_result(again, "urgent")
    kept = Interpretation.objects.get(record=record)
    assert (kept.pk, kept.version, kept.statements, kept.measurements) == (signed.pk, 1, signed.statements,
                                                                           signed.measurements)
    assert reading_state(EcgRecord.objects.get(pk=again.pk))["status"] == "preliminary"
    # Another window of the same recording is not a prior ECG: there is nothing to compare it with.
    from clinical.comparison import prior_ecg

    assert prior_ecg(record=EcgRecord.objects.get(pk=again.pk)) is None


def test_the_reports_hook_builds_a_valid_amended_report_from_the_reading(prior_and_current, reviewer):
    """clinical.reports' _confirmed is to return confirmation_from_reading(reading_for_report(record)): applied as
    report_data applies it, ReportData's own checks accept the amended report (reviewer's measurement included)."""
    import dataclasses

    from clinical.interpretations import reading_for_report
    from clinical.reports.selectors import confirmation_from_reading, report_data

    _, record = prior_and_current
    interpretation_confirm(record=record, reviewer=reviewer, overrides={"qrs_ms": 150}, password=PW)
    interpretation_amend(record=record, reviewer=reviewer, reason="MI removed: old Q waves",
                         removed=["superclass:MI"], overrides={"qrs_ms": 150}, password=PW)
    confirmation = confirmation_from_reading(reading_for_report(record))
    assert confirmation.status == "amended" and confirmation.version == 2 and confirmation.statements == ()
    assert confirmation.reviewer_measured == ("qrs_ms",) and confirmation.measurements["qrs_ms"] == 150.0
    preliminary = report_data(record=record)
    amended = dataclasses.replace(
        preliminary, confirmed_statements=confirmation.statements, free_text=confirmation.free_text,
        comparison=confirmation.comparison, status=confirmation.status, version=confirmation.version,
        reviewer=confirmation.reviewer, confirmed_at=confirmation.confirmed_at,
        amendment_reason=confirmation.amendment_reason,
        measurements={**preliminary.measurements, "qrs_ms": confirmation.measurements["qrs_ms"]},
        reviewer_measured=confirmation.reviewer_measured)
    assert amended.comparison[0].startswith("QRS +50 ms") and amended.amendment_reason.startswith("MI removed")


def test_a_signed_reading_is_announced_once_per_version_to_the_report_webhook(
        prior_and_current, reviewer, settings, webhook_server, django_capture_on_commit_callbacks):
    from unittest import mock

    from clinical import tasks
    from clinical.audit import AuditAction
    from clinical.interpretations import report_webhook_send
    from tests.clinical.conftest import WebhookReceiver

    settings.ECG_REPORT_WEBHOOK_URL = webhook_server
    _, record = prior_and_current
    with mock.patch.object(tasks.send_report_webhook, "apply_async") as send, \
            django_capture_on_commit_callbacks(execute=True):
        first = interpretation_confirm(record=record, reviewer=reviewer, password=PW)
        amended = interpretation_amend(record=record, reviewer=reviewer, reason="QRS re-measured",
                                       removed=["superclass:MI"], password=PW)
    assert [c.args[0] for c in send.call_args_list] == [(first.pk,), (amended.pk,)]
    for interpretation in (first, amended):
        assert tasks.send_report_webhook(interpretation.pk) == "sent"
    assert report_webhook_send(interpretation_id=first.pk) == {"status": "already sent"}  # a redelivery
    hooks = [h["json"] for h in WebhookReceiver.received]
    assert [(h["event"], h["version"]) for h in hooks] == [("ecg.report.final", 1), ("ecg.report.amended", 2)]
    assert hooks[0]["ecg_id"] == str(record.public_id) and "patient" not in hooks[0]
    assert hooks[1]["links"]["fhir"].endswith(f"/api/v1/ecgs/{record.public_id}/report/fhir/")
    events = AuditEvent.objects.filter(action=AuditAction.REPORT_WEBHOOK).order_by("id")
    assert [(e.details["version"], e.details["status"]) for e in events] == [(1, "sent"), (2, "sent")]


def test_the_report_webhook_is_posted_after_its_claim_commits_outside_any_transaction(
        prior_and_current, reviewer, settings, webhook_server, django_capture_on_commit_callbacks):
    """The POST may wait its whole timeout: it must not hold the reading's row lock or an open transaction, and the
    claim that makes it at-most-once is stored before it (the outbox order)."""
    from unittest import mock

    from django.db import connection

    from clinical import interpretations, tasks
    from clinical.audit import AuditAction
    from clinical.interpretations import report_webhook_send

    settings.ECG_REPORT_WEBHOOK_URL = webhook_server
    _, record = prior_and_current
    with mock.patch.object(tasks.send_report_webhook, "apply_async"), \
            django_capture_on_commit_callbacks(execute=True):
        first = interpretation_confirm(record=record, reviewer=reviewer, password=PW)
    outside = len(connection.atomic_blocks)  # the test's own transaction
    seen = {}
    real_post = interpretations.webhook_post

    def post(payload, url=None):
        seen["atomic_depth"] = len(connection.atomic_blocks)
        seen["claimed"] = AuditEvent.objects.filter(action=AuditAction.REPORT_WEBHOOK_ATTEMPT,
                                                    details__version=first.version).count()
        return real_post(payload, url=url)

    with mock.patch.object(interpretations, "webhook_post", side_effect=post):
        assert report_webhook_send(interpretation_id=first.pk)["status"] == "sent"
        assert report_webhook_send(interpretation_id=first.pk) == {"status": "already sent"}
    assert seen == {"atomic_depth": outside, "claimed": 1}
    assert AuditEvent.objects.filter(action=AuditAction.REPORT_WEBHOOK_ATTEMPT).count() == 1
    assert [e.details["status"] for e in AuditEvent.objects.filter(action=AuditAction.REPORT_WEBHOOK)] == ["sent"]


def test_without_a_report_webhook_nothing_is_sent(prior_and_current, reviewer, settings,
                                                  django_capture_on_commit_callbacks):
    from unittest import mock

    from clinical import tasks

    settings.ECG_REPORT_WEBHOOK_URL = ""
    _, record = prior_and_current
    with mock.patch.object(tasks.send_report_webhook, "apply_async") as send, \
            django_capture_on_commit_callbacks(execute=True):
        interpretation_confirm(record=record, reviewer=reviewer, password=PW)
    assert send.call_args_list == []
