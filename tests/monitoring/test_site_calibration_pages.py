"""The site-calibration pages: who may use them, the before/after table, and the audited one-click actions."""
from __future__ import annotations

import pytest

from clinical.audit import AuditAction
from clinical.models import AuditEvent
from monitoring import calibration
from monitoring.models import CalibrationVersion
from tests.clinical.conftest import admin_user_role  # noqa: F401
from tests.monitoring.test_site_calibration import ens, seed_site  # noqa: F401

LIST = "/monitoring/calibration/"


@pytest.mark.parametrize("persona", ["clinician", "reviewer"])
def test_only_compliance_staff_see_or_change_calibrations(client, request, persona, ens, compliance_officer):  # noqa: F811
    seed_site(ens, request.getfixturevalue("reviewer"))
    version = calibration.calibration_propose(ens=ens, user=compliance_officer)
    client.force_login(request.getfixturevalue(persona))
    assert client.get(LIST).status_code == 403
    assert client.get(f"{LIST}{version.pk}/").status_code == 403
    assert client.post(f"{LIST}propose/").status_code == 403
    assert client.post(f"{LIST}{version.pk}/activate/", {"confirm": "yes"}).status_code == 403
    version.refresh_from_db()
    assert version.status == "proposed"


def test_the_admin_role_may_manage_calibrations(client, admin_user_role):  # noqa: F811
    client.force_login(admin_user_role)
    assert client.get(LIST).status_code == 200


def test_propose_review_activate_and_roll_back_from_the_pages(client, ens, reviewer, compliance_officer):  # noqa: F811
    seed_site(ens, reviewer)
    client.force_login(compliance_officer)
    page = client.get(LIST).content.decode()
    assert 'id="active-calibration">manifest<' in page and "240 reviewed results" in page
    response = client.post(f"{LIST}propose/")
    version = CalibrationVersion.objects.get()
    assert response.status_code == 302 and response["Location"] == f"{LIST}{version.pk}/"
    page = client.get(f"{LIST}{version.pk}/").content.decode()
    assert 'data-label="superclass:MI"' in page and "cut-off lower" in page
    assert "a refit needs 30 of each" in page  # the classes kept, with the reason
    assert "statements kept unchanged" in page and 'id="activate-calibration"' in page
    # Activation needs the confirmation box; without it nothing changes.
    client.post(f"{LIST}{version.pk}/activate/")
    version.refresh_from_db()
    activated = AuditEvent.objects.filter(action=AuditAction.CALIBRATION_ACTIVATE)
    assert version.status == "proposed" and not activated.exists()
    assert client.get(f"{LIST}{version.pk}/activate/").status_code == 405  # a change is a POST, never a link
    client.post(f"{LIST}{version.pk}/activate/", {"confirm": "yes"})
    version.refresh_from_db()
    assert version.status == "active"
    assert AuditEvent.objects.get(action=AuditAction.CALIBRATION_ACTIVATE).actor == compliance_officer
    card = client.get("/monitoring/model-card/").content.decode()
    assert 'id="calibration-version">site-1<' in card
    page = client.get(f"{LIST}{version.pk}/").content.decode()
    assert 'id="rollback-calibration"' in page and "Roll back to manifest" in page
    client.post(f"{LIST}{version.pk}/rollback/")
    version.refresh_from_db()
    assert version.status == "retired"
    assert AuditEvent.objects.get(action=AuditAction.CALIBRATION_ROLLBACK).details["restored"] == "manifest"
    assert 'id="active-calibration">manifest<' in client.get(LIST).content.decode()
