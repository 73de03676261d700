"""Compliance promotes an imported model version with two signatures, then rolls it back (monitoring.registry)."""
from __future__ import annotations

from pathlib import Path

import pytest

from clinical.models import AuditEvent
from clinical.roles import roles_ensure
from monitoring import registry
from tests.browser.conftest import CHROMIUM, PASSWORD, log_in, person, shot
from tests.monitoring.test_model_registry import _export

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium")


def test_two_officers_promote_a_candidate_and_one_rolls_it_back(live_server, page, tmp_path, settings):
    settings.ECG_MODELS_DIR, settings.ECG_MODEL_TWO_PERSON = tmp_path / "served", True
    roles_ensure()
    first = person("comp-one", "compliance")
    person("comp-two", "compliance")
    candidate = registry.model_version_import(path=_export(tmp_path / "export", "resnet1d-ens3-next"), actor=first)
    image = registry.serving_version().version
    base = live_server.url

    log_in(page, base, "comp-one")
    page.goto(f"{base}/monitoring/")
    page.click("nav.subnav >> text=Models")
    assert page.inner_text("#serving-version") == image
    row = page.locator(f'#model-versions tr[data-version="{candidate.version}"]')
    row.locator("input[name=reason]").fill("Better AF sensitivity on fold 10 and on our 300 confirmed readings.")
    row.locator("input[name=password]").fill(PASSWORD)
    row.locator("button").click()
    page.wait_for_selector("#model-pending")
    assert "Another compliance user signs it" in page.inner_text("#model-pending")
    assert page.inner_text("#serving-version") == image
    shot(page, "model-registry-pending")

    page.context.clear_cookies()
    log_in(page, base, "comp-two")
    page.goto(f"{base}/monitoring/models/")
    page.fill("#approve-form input[name=password]", PASSWORD)
    page.click("#approve-change")
    page.wait_for_selector(f"#serving-version:has-text('{candidate.version}')")
    assert registry.serving_version().version == candidate.version
    shot(page, "model-registry-serving")

    page.fill("#rollback-form input[name=reason]", "False AF alerts on ward 3 since the promotion.")
    page.fill("#rollback-form input[name=password]", PASSWORD)
    page.click("#rollback-model")
    page.wait_for_selector(f"#serving-version:has-text('{image}')")
    assert [e.action for e in AuditEvent.objects.filter(object_type="ModelVersion").order_by("id")] == [
        registry.IMPORTED, registry.IMPORTED, registry.REQUESTED, registry.PROMOTED, registry.REQUESTED,
        registry.ROLLED_BACK]
    assert "False AF alerts on ward 3" in page.inner_text("#model-history")
    shot(page, "model-registry-rolled-back")
    assert not page.js_errors
