"""The overview page's <title> is the page's name, whatever the page shows (an alert table once put its rows there)."""
from __future__ import annotations

from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.urls import reverse
from django.utils import timezone

from monitoring.models import DriftReport, MonitoringAlert


class _Head(HTMLParser):
    """Collects the text of each <title> and any tag opened inside one."""

    def __init__(self) -> None:
        super().__init__()
        self.titles: list[str] = []
        self.tags_in_title: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self._in_title = True
            self.titles.append("")
        elif self._in_title:
            self.tags_in_title.append(tag)

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.titles[-1] += data


def parsed(html: str) -> _Head:
    head = _Head()
    head.feed(html)
    head.close()
    return head


@pytest.mark.parametrize("with_alert", [False, True])
def test_the_overview_title_is_its_name_and_the_alerts_are_in_the_body(client, compliance_officer, with_alert):
    if with_alert:
        now = timezone.now()
        report = DriftReport.objects.create(reference="fold9", window_start=now - timedelta(hours=6), window_end=now)
        MonitoringAlert.objects.create(kind=MonitoringAlert.Kind.DRIFT, drift_report=report, metric="drift_share",
                                       value=0.8, threshold=0.5, message="Drift in 4 of 5 monitored features.")
    client.force_login(compliance_officer)
    html = client.get(reverse("monitoring:overview")).content.decode()
    head = parsed(html)
    assert head.titles == ["Monitoring · ECG-DS"] and head.tags_in_title == []
    body = html.split("</head>", 1)[1]
    if with_alert:
        assert 'id="monitoring-alerts"' in body and "Drift in 4 of 5 monitored features." in body
    else:
        assert "No monitoring alerts in the last 7 days." in body
