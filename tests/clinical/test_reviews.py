"""Reviewer sign-off, the urgent queue and escalation."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from clinical import services
from clinical.errors import ApplicationError
from clinical.models import Acknowledgement, Alert, AuditEvent
from clinical.reviews import alerts_escalate, result_acknowledge
from tests.clinical.conftest import make_result


@pytest.fixture
def urgent_result(clinician, wfdb_pair):
    record = services.ecg_submit(actor=clinician, pseudonym="PT-URG", age=70, sex="M", files=wfdb_pair, fs=None)
    return make_result(record, "immediate")


def test_reviewer_acknowledges_once_and_the_clinician_sees_who_and_when(client, urgent_result, reviewer, clinician):
    client.force_login(reviewer)
    queue = client.get(reverse("clinical:review-queue")).content.decode()
    assert "PT-URG" in queue
    url = reverse("clinical:ecg-acknowledge", args=[urgent_result.record.public_id])
    resp = client.post(url, {"verdict": "disagree", "note": "Old Q waves, no acute change",
                             "finding__superclass:MI": "disagree"})
    assert resp.status_code == 302
    ack = Acknowledgement.objects.get()
    assert ack.reviewer == reviewer and ack.finding_verdicts == {"superclass:MI": "disagree"}
    assert "PT-URG" not in client.get(reverse("clinical:review-queue")).content.decode()
    client.post(url, {"verdict": "agree", "note": "again"}, follow=True)
    assert Acknowledgement.objects.count() == 1
    client.force_login(clinician)
    page = client.get(reverse("clinical:ecg-detail", args=[urgent_result.record.public_id])).content.decode()
    assert "Acknowledged by rev-cy" in page and "Old Q waves" in page
    assert AuditEvent.objects.filter(action="result.acknowledge", actor=reviewer).count() == 1


def test_second_acknowledgement_is_refused_with_who_did_it(urgent_result, reviewer):
    result_acknowledge(prediction=urgent_result, reviewer=reviewer, verdict="agree", note="Seen, agree")
    with pytest.raises(ApplicationError, match="Already acknowledged by rev-cy"):
        result_acknowledge(prediction=urgent_result, reviewer=reviewer, verdict="agree", note="twice")


def test_a_clinician_cannot_acknowledge(urgent_result, clinician, client):
    with pytest.raises(ApplicationError, match="Only reviewers"):
        result_acknowledge(prediction=urgent_result, reviewer=clinician, verdict="agree", note="I agree")
    client.force_login(clinician)
    url = reverse("clinical:ecg-acknowledge", args=[urgent_result.record.public_id])
    assert client.post(url, {"verdict": "agree", "note": "mine"}).status_code == 403
    assert not Acknowledgement.objects.exists()


@pytest.mark.parametrize("note", ["", "  ", "ok"])
def test_a_note_is_required(urgent_result, reviewer, note):
    with pytest.raises(ApplicationError, match="note is required"):
        result_acknowledge(prediction=urgent_result, reviewer=reviewer, verdict="agree", note=note)


def test_escalation_raises_one_alert_and_one_email_per_level(clinician, reviewer, wfdb_pair, client,
                                                             django_capture_on_commit_callbacks):
    reviewer.email = "rev@example.org"
    reviewer.save()
    now = timezone.now()
    rec_i = services.ecg_submit(actor=clinician, pseudonym="PT-I", age=60, sex="F", files=wfdb_pair, fs=None)
    rec_u = services.ecg_submit(actor=clinician, pseudonym="PT-U", age=61, sex="F", files=wfdb_pair, fs=None)
    rec_r = services.ecg_submit(actor=clinician, pseudonym="PT-R", age=62, sex="F", files=wfdb_pair, fs=None)
    immediate = make_result(rec_i, "immediate", created_at=now - timedelta(minutes=20))
    urgent = make_result(rec_u, "urgent", created_at=now - timedelta(minutes=20))
    make_result(rec_r, "routine", created_at=now - timedelta(hours=5))

    def escalate(at):
        with django_capture_on_commit_callbacks(execute=True):  # emails leave after the commit
            return [a.prediction for a in alerts_escalate(now=at)]

    assert escalate(now) == [immediate]  # the urgent result's 60-minute limit is not reached yet
    assert escalate(now + timedelta(minutes=5)) == []  # never a flood
    assert escalate(now + timedelta(minutes=45)) == [urgent]
    assert escalate(now + timedelta(hours=3)) == []
    assert Alert.objects.count() == 2 and len(mail.outbox) == 2
    assert mail.outbox[0].to == ["rev@example.org"] and "IMMEDIATE" in mail.outbox[0].subject
    client.force_login(reviewer)
    banner = client.get(reverse("clinical:review-queue")).content.decode()
    assert "2 urgent results waiting past the time limit" in banner
    result_acknowledge(prediction=immediate, reviewer=reviewer, verdict="agree", note="Called the ward")
    assert "1 urgent result waiting" in client.get(reverse("clinical:review-queue")).content.decode()
    assert AuditEvent.objects.filter(action="result.escalated").count() == 2


def test_review_outcomes_are_the_ground_truth_per_class(client, urgent_result, reviewer):
    """Agreeing or disagreeing with a flagged class, or marking an unflagged one as missed, fixes tp/fp/fn/tn."""
    from clinical.models import Prediction

    Prediction.objects.filter(pk=urgent_result.pk).update(
        superclass={"NORM": 0.05, "MI": 0.9, "STTC": 0.2, "CD": 0.1, "HYP": 0.3})
    client.force_login(reviewer)
    page = client.get(reverse("clinical:ecg-detail", args=[urgent_result.record.public_id])).content.decode()
    assert "Present but not flagged by the model" in page and 'name="missed__HYP"' in page
    assert 'name="missed__MI"' not in page  # MI was flagged: it gets agree / disagree instead
    url = reverse("clinical:ecg-acknowledge", args=[urgent_result.record.public_id])
    client.post(url, {"verdict": "disagree", "note": "LVH, not infarction", "finding__superclass:MI": "disagree",
                      "missed__HYP": "on"})
    ack = Acknowledgement.objects.get()
    assert ack.finding_verdicts == {"superclass:MI": "disagree", "superclass:HYP": "missed"}
    assert ack.outcomes == {"NORM": "tn", "MI": "fp", "STTC": "tn", "CD": "tn", "HYP": "fn"}


def test_missed_can_only_mark_an_unflagged_class(urgent_result, reviewer):
    with pytest.raises(ApplicationError, match="did not flag can be marked as missed; not MI"):
        result_acknowledge(prediction=urgent_result, reviewer=reviewer, verdict="agree", note="checked",
                           finding_verdicts={"superclass:MI": "missed"})
    assert not Acknowledgement.objects.exists()


def test_overall_agreement_confirms_flagged_classes_without_their_own_verdict():
    from clinical.reviews import review_outcomes

    flagged = {"superclass:MI", "superclass:STTC"}
    assert review_outcomes(classes=["MI", "STTC", "NORM"], flagged=flagged, verdict="agree",
                           finding_verdicts={}) == {"MI": "tp", "STTC": "tp", "NORM": "tn"}
    # A disagreement without per-finding verdicts says nothing about which flagged class was wrong.
    assert review_outcomes(classes=["MI", "STTC", "NORM"], flagged=flagged, verdict="disagree",
                           finding_verdicts={"superclass:STTC": "agree"}) == {"STTC": "tp", "NORM": "tn"}


def test_a_dangerous_statement_the_model_missed_can_be_marked_and_becomes_an_outcome(client, urgent_result, reviewer):
    """The form offers the dangerous statements the result did not flag (folded away under "Dangerous statements
    the model missed"): a tick records a false negative, the others read as true negatives, for site calibration;
    the fairness report still counts the diagnostic classes only."""
    from clinical.models import Prediction
    from monitoring.fairness import outcome_counts

    Prediction.objects.filter(pk=urgent_result.pk).update(
        superclass={"NORM": 0.05, "MI": 0.9, "STTC": 0.2, "CD": 0.1, "HYP": 0.3},
        statements={"AFIB": 0.2, "STE_": 0.05, "SR": 0.9})
    client.force_login(reviewer)
    page = client.get(reverse("clinical:ecg-detail", args=[urgent_result.record.public_id])).content.decode()
    assert 'id="missed-statements"' in page and 'name="missed__statement__AFIB"' in page
    assert "Atrial fibrillation" in page and 'name="missed__statement__SR"' not in page  # not dangerous
    url = reverse("clinical:ecg-acknowledge", args=[urgent_result.record.public_id])
    client.post(url, {"verdict": "agree", "note": "AF missed by the model", "missed__statement__AFIB": "on"})
    ack = Acknowledgement.objects.get()
    assert ack.finding_verdicts == {"statements:AFIB": "missed"}
    assert ack.outcomes["statements:AFIB"] == "fn" and ack.outcomes["statements:STE_"] == "tn"
    assert "statements:SR" not in ack.outcomes and ack.outcomes["HYP"] == "tn"
    n, counts = outcome_counts(ack.prediction.created_at.replace(year=2000), ack.at.replace(year=2100), [])
    by_sex = next(v for k, v in counts.items() if k[0] == "sex")
    assert n == 1 and sum(by_sex.values()) == 5  # the 5 classes, no statement
