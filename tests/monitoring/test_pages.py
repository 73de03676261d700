"""Compliance pages: who may see them, running a report on demand, status polling, the stored Evidently HTML."""
from __future__ import annotations

import pytest
from django.conf import settings
from django.urls import reverse

from clinical.models import AuditEvent
from mlcore.reference import Reference
from monitoring.drift import drift_report_create, drift_report_run
from monitoring.fairness import fairness_report_create, fairness_report_run
from monitoring.models import DriftReport, FairnessReport
from tests.monitoring.factories import reference_sample, seed_predictions

PAGES = ["monitoring:overview", "monitoring:drift-list", "monitoring:fairness-list"]


@pytest.fixture
def shifted_reports(clinician):
    ref = Reference.load(settings.ECG_WEIGHTS_DIR)
    cols = reference_sample(ref, 300, seed=21)
    cols["age"] = cols["age"] + 15
    seed_predictions(cols, uploader=clinician, urgency=["urgent"] * 100 + ["routine"] * 200)
    return (drift_report_run(report_id=drift_report_create().pk),
            fairness_report_run(report_id=fairness_report_create().pk))


@pytest.mark.parametrize("name", PAGES)
def test_only_monitoring_staff_see_the_pages(client, clinician, reviewer, compliance_officer, name):
    url = reverse(name)
    assert client.get(url).status_code == 302  # anonymous: to the login page
    for person in (clinician, reviewer):
        client.force_login(person)
        assert client.get(url).status_code == 403
    client.force_login(compliance_officer)
    assert client.get(url).status_code == 200


def test_report_pages_show_the_stored_summary_and_html(client, compliance_officer, shifted_reports):
    drift, fairness = shifted_reports
    client.force_login(compliance_officer)
    page = client.get(reverse("monitoring:drift-detail", args=[drift.pk])).content.decode()
    assert "Drift" in page and 'class="drifted"' in page and "age" in page
    html = client.get(reverse("monitoring:drift-html", args=[drift.pk]))
    body = b"".join(html.streaming_content)
    assert html.status_code == 200 and len(body) > 100_000 and body == drift.html.open("rb").read()
    assert html.headers["X-Frame-Options"] == "SAMEORIGIN"
    page = client.get(reverse("monitoring:fairness-detail", args=[fairness.pk])).content.decode()
    assert 'data-figure="chart-urgent_rate"' in page and "Groups too small to judge" in page
    listing = client.get(reverse("monitoring:fairness-list")).content.decode()
    assert f"/monitoring/fairness/{fairness.pk}/" in listing


def test_run_on_demand_queues_a_report_shows_progress_and_is_audited(client, compliance_officer,
                                                                    django_capture_on_commit_callbacks):
    from unittest import mock

    client.force_login(compliance_officer)
    with mock.patch("monitoring.tasks.run_fairness_report.delay") as delay, \
            django_capture_on_commit_callbacks(execute=True):
        resp = client.post(reverse("monitoring:report-run", args=["fairness"]))
    report = FairnessReport.objects.get()
    delay.assert_called_once_with(report.pk)  # handed to a worker after commit
    assert resp.status_code == 302 and resp.url == reverse("monitoring:fairness-detail", args=[report.pk])
    page = client.get(resp.url).content.decode()
    assert 'id="report-progress"' in page and "Waiting for a worker" in page
    status = client.get(reverse("monitoring:fairness-status", args=[report.pk])).json()
    assert status == {"state": "queued", "progress": 0, "stage": "Waiting for a worker", "outcome": ""}
    assert AuditEvent.objects.filter(action="monitoring.fairness_requested", actor=compliance_officer).exists()
    fairness_report_run(report_id=report.pk)  # what the worker does
    assert client.get(reverse("monitoring:fairness-status", args=[report.pk])).json()["state"] == "done"


def test_run_on_demand_is_refused_to_others_and_for_unknown_kinds(client, clinician, compliance_officer):
    client.force_login(clinician)
    assert client.post(reverse("monitoring:report-run", args=["drift"])).status_code == 403
    client.force_login(compliance_officer)
    resp = client.post(reverse("monitoring:report-run", args=["bogus"]), follow=True)
    assert "Unknown report kind" in resp.content.decode()
    assert not DriftReport.objects.exists() and not FairnessReport.objects.exists()


def _alert_table(page: str) -> str:
    start = page.index('id="monitoring-alerts"')
    return page[start:page.index("</table>", start)]


def test_alerts_reach_reviewers_as_a_banner(client, reviewer, compliance_officer, shifted_reports):
    client.force_login(reviewer)
    page = client.get(reverse("clinical:review-queue")).content.decode()
    assert 'id="monitoring-banner"' in page and "Drift in" in page
    client.force_login(compliance_officer)
    page = client.get(reverse("monitoring:overview")).content.decode()
    assert _alert_table(page).count("Drift in") == 1

    # A persisting breach is raised by every report, but listed once, with how often it recurred.
    drift_report_run(report_id=drift_report_create().pk)
    page = client.get(reverse("monitoring:overview")).content.decode()
    table = _alert_table(page)
    assert table.count("Drift in") == 1 and "Also raised by 1 earlier report" in table


def test_the_overview_title_is_plain_text(client, compliance_officer):
    client.force_login(compliance_officer)
    html = client.get(reverse("monitoring:overview")).content.decode()
    title = html.split("<title>", 1)[1].split("</title>", 1)[0]
    assert title == "Monitoring · ECG-DS"


def test_drift_pages_say_the_window_the_report_used(client, compliance_officer, settings):
    """A report over 6 hours says 6 h, also after the setting has moved on to another window."""
    settings.ECG_DRIFT_WINDOW_HOURS = 6
    report = drift_report_run(report_id=drift_report_create().pk)
    settings.ECG_DRIFT_WINDOW_HOURS = 48
    client.force_login(compliance_officer)
    detail = client.get(reverse("monitoring:drift-detail", args=[report.pk])).content.decode()
    assert "Window of 6 h:" in detail and "24 h" not in detail
    listing = client.get(reverse("monitoring:drift-list")).content.decode()
    assert "6 h:" in listing
    overview = client.get(reverse("monitoring:overview")).content.decode()
    assert "over the last 6 h" in overview and "the last 48 hours" in overview


def test_banner_gives_the_headline_and_leaves_the_feature_list_to_the_monitoring_pages():
    from monitoring.models import MonitoringAlert

    drift = MonitoringAlert(message="Drift in 23 of 27 monitored features over 200 predictions: age (p = 1.0e-08), "
                                    "noise (p = 2.7e-169)")
    assert drift.headline == "Drift in 23 of 27 monitored features over 200 predictions."
    parity = MonitoringAlert(message="Demographic parity ratio by sex is 0.63 (95% CI 0.47-0.83; threshold 0.8): "
                                     "Female lowest, Male highest.")
    assert parity.headline == "Demographic parity ratio by sex is 0.63 (95% CI 0.47-0.83; threshold 0.8)."
    plain = MonitoringAlert(message="Something without a list.")
    assert plain.headline == "Something without a list."
