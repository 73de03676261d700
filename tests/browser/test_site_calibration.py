"""A compliance officer proposes a site calibration, reads its before/after table, activates it and rolls it back."""
from __future__ import annotations

from pathlib import Path

import pytest

from clinical import services
from clinical.audit import AuditAction
from clinical.models import AuditEvent
from clinical.roles import roles_ensure
from monitoring.models import CalibrationVersion
from tests.browser.conftest import CHROMIUM, log_in, person, shot
from tests.monitoring.test_site_calibration import seed_site

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium")


def test_compliance_proposes_reviews_activates_and_rolls_back(live_server, page, weights_dir):
    roles_ensure()
    reviewer = person("rev-site", "reviewer")
    person("comp-site", "compliance")
    seed_site(services.get_ensemble(), reviewer)
    base = live_server.url

    log_in(page, base, "comp-site")
    page.goto(f"{base}/monitoring/")
    page.click("nav.subnav >> text=Site calibration")
    assert page.inner_text("#active-calibration") == "manifest"
    page.click("#propose-calibration")
    page.wait_for_selector("#calibration-table")
    mi = page.locator('#calibration-table tr[data-label="superclass:MI"]')
    assert "cut-off lower" in mi.inner_text()
    assert "a refit needs 30 of each" in page.inner_text("#calibration-table")
    shot(page, "site-calibration")

    page.click("#activate-calibration")  # the box is required: the browser keeps the form until it is ticked
    assert CalibrationVersion.objects.get().status == "proposed"
    page.check("#confirm-activate")
    page.click("#activate-calibration")
    page.wait_for_selector("#rollback-calibration")
    assert page.inner_text("#calibration-status") == "Active"
    assert AuditEvent.objects.filter(action=AuditAction.CALIBRATION_ACTIVATE, actor__username="comp-site").exists()
    page.goto(f"{base}/monitoring/model-card/")
    assert page.inner_text("#calibration-in-force #calibration-version") == "site-1"
    shot(page, "site-calibration-model-card")

    page.goto(f"{base}/monitoring/calibration/")
    page.click("#calibration-versions >> text=site-1")
    page.click("#rollback-calibration")
    page.wait_for_selector("#calibration-status:has-text('Retired')")
    assert AuditEvent.objects.filter(action=AuditAction.CALIBRATION_ROLLBACK).exists()
    page.goto(f"{base}/monitoring/calibration/")
    assert page.inner_text("#active-calibration") == "manifest"
    shot(page, "site-calibration-rolled-back")
    assert not page.js_errors
