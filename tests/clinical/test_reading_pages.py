"""The worklist (the review page's second list), the reading page, and the clinician's list of their ECGs."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from clinical import services
from clinical.models import AuditEvent, EcgRecord, Interpretation, Prediction
from tests.clinical.conftest import make_result

PW = "pw-for-tests-1"


def _result(uploader, files, pseudonym: str, urgency: str, minutes_ago: int, device: str = "") -> EcgRecord:
    record = services.ecg_submit(actor=uploader, pseudonym=pseudonym, age=60, sex="F", files=files, fs=None)
    make_result(record, urgency, created_at=timezone.now() - timedelta(minutes=minutes_ago))
    if device:
        EcgRecord.objects.filter(pk=record.pk).update(device={"device": device})
    return EcgRecord.objects.get(pk=record.pk)


@pytest.fixture
def worklist_ecgs(clinician, other_clinician, wfdb_pair):
    return [_result(clinician, wfdb_pair, "PT-W-IMM", "immediate", 5, "MAC5500 ward 3"),
            _result(clinician, wfdb_pair, "PT-W-ROUT-OLD", "routine", 60 * 30),
            _result(other_clinician, wfdb_pair, "PT-W-URG", "urgent", 90, "PageWriter TC70")]


def _worklist(client, **params) -> str:
    return client.get(reverse("clinical:review-queue"), {"list": "worklist", **params}).content.decode()


def test_the_worklist_filters_sorts_and_counts(client, reviewer, worklist_ecgs, wfdb_pair, clinician):
    client.force_login(reviewer)
    html = _worklist(client)
    assert sorted(["PT-W-IMM", "PT-W-URG", "PT-W-ROUT-OLD"], key=html.index) == ["PT-W-IMM", "PT-W-URG",
                                                                               "PT-W-ROUT-OLD"]
    assert "<strong>3</strong> waiting" in html and "Immediate 1" in html and "Routine 1" in html
    assert "PT-W-ROUT-OLD" in _worklist(client, urgency="routine") and "PT-W-IMM" not in _worklist(
        client, urgency="routine")
    oldest = _worklist(client, sort="oldest")
    assert oldest.index("PT-W-ROUT-OLD") < oldest.index("PT-W-URG") < oldest.index("PT-W-IMM")
    assert "PT-W-IMM" not in (over_day := _worklist(client, waiting="24h")) and "PT-W-ROUT-OLD" in over_day
    assert "PT-W-URG" in (by_bo := _worklist(client, uploader="dr-bo")) and "PT-W-IMM" not in by_bo
    assert "PT-W-URG" in (site := _worklist(client, site="pagewriter")) and "PT-W-IMM" not in site
    assert "PT-W-IMM" in _worklist(client, finding="mi") and "PT-W-IMM" not in _worklist(client, finding="AFIB")
    refused = client.get(reverse("clinical:review-queue"), {"list": "worklist", "urgency": "soon"})
    assert refused.status_code == 400 and "PT-W-IMM" not in refused.content.decode()
    listed = AuditEvent.objects.filter(action="ecg.list", details__view="worklist").first()
    assert listed is not None and listed.actor == reviewer


def test_reading_page_confirms_with_the_password_and_shows_the_locked_version(client, reviewer, worklist_ecgs):
    record = worklist_ecgs[0]
    client.force_login(reviewer)
    url = reverse("clinical:ecg-read", args=[record.public_id])
    page = client.get(url).content.decode()
    assert "Preliminary: the computer" in page and 'id="confirm-reading"' in page and 'id="no-prior"' in page
    form = {"intent": "confirm", "keep__superclass__MI": "", "added": ["statements:CLBBB"], "m__qrs_ms": "134",
            "free_text": "LBBB, no acute change", "password": "not-mine-at-all"}
    wrong = client.post(url, form)
    assert wrong.status_code == 400 and "Nothing was stored" in wrong.content.decode()
    assert not Interpretation.objects.exists()
    assert client.post(url, form | {"password": PW}).status_code == 302
    reading = Interpretation.objects.get()
    assert [s["action"] for s in reading.statements] == ["removed", "added"]
    assert reading.measurement_overrides["qrs_ms"]["reviewer"] == 134.0
    page = client.get(url).content.decode()
    assert "Final reading, version 1" in page and "Locked" in page and 'id="amend-reading"' in page
    again = client.post(url, form | {"password": PW})
    assert again.status_code == 400 and "Already confirmed" in again.content.decode()
    # The confirmed ECG leaves the worklist, and its result page says it is confirmed, by whom.
    assert "PT-W-IMM" not in _worklist(client)
    summary = client.get(reverse("clinical:ecg-detail", args=[record.public_id])).content.decode()
    assert 'id="reading-summary"' in summary and "Final reading, version 1</strong> by rev-cy" in summary


def test_a_clinician_cannot_open_the_reading_page(client, clinician, worklist_ecgs):
    client.force_login(clinician)
    assert client.get(reverse("clinical:ecg-read", args=[worklist_ecgs[0].public_id])).status_code == 403


def test_the_clinicians_list_shows_top_finding_urgency_and_confirmation(client, clinician, reviewer, worklist_ecgs):
    from clinical.interpretations import interpretation_confirm

    interpretation_confirm(record=worklist_ecgs[0], reviewer=reviewer, password=PW)
    Prediction.objects.filter(record=worklist_ecgs[1]).update(top_urgency="routine")
    client.force_login(clinician)
    html = client.get(reverse("clinical:ecg-list")).content.decode()
    confirmed, waiting = _row(html, "PT-W-IMM"), _row(html, "PT-W-ROUT-OLD")
    assert "Confirmed v1" in confirmed and "rev-cy" in confirmed and "Myocardial infarction" in confirmed
    assert "Immediate" in confirmed
    assert "Preliminary" in waiting and "Routine" in waiting


def _row(html: str, text: str) -> str:
    at = html.index(text)
    return html[html.rindex("<tr", 0, at):html.index("</tr>", at)]


def test_the_worklist_reads_a_fixed_number_of_queries_whatever_its_length(client, reviewer, clinician, wfdb_pair,
                                                                          django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(reviewer)
    _result(clinician, wfdb_pair, "PT-Q-1", "urgent", 5)
    with CaptureQueriesContext(connection) as one:
        client.get(reverse("clinical:review-queue"), {"list": "worklist"})
    for i in range(5):
        _result(clinician, wfdb_pair, f"PT-Q-{i + 2}", "urgent", 10 + i)  # urgent: each row asks if acknowledged
    with django_assert_max_num_queries(len(one.captured_queries)):
        html = client.get(reverse("clinical:review-queue"), {"list": "worklist"}).content.decode()
    assert "PT-Q-6" in html
