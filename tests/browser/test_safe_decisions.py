"""What the system cannot assess, on the result page, and an immediate result announced to a reviewer at once."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from clinical import demo
from clinical.models import AuditEvent, EcgRecord
from clinical.roles import roles_ensure
from tests.browser.conftest import CHROMIUM, SHOTS, log_in, person, shot, upload_ecg

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium")


def test_the_result_lists_what_is_not_assessed_and_a_reviewer_sees_the_immediate_banner(
        live_server, celery_worker_thread, page, tmp_path):
    roles_ensure()
    person("dr-stemi", "clinician")
    reviewer = person("rev-duty", "reviewer")
    reviewer.email = "rev-duty@example.org"
    reviewer.save()
    upload = tmp_path / "anterior-ste.json"  # the demo case that meets the STEMI criteria by measurement
    upload.write_bytes(demo.as_json(demo.synthesize(demo.CASES[2], fs=500, seed=3), 500))
    base = live_server.url

    log_in(page, base, "dr-stemi")
    upload_ecg(page, base, pseudonym="PT-STEMI", age="61", sex="M", files=[str(upload)])
    record = EcgRecord.objects.get(patient__pseudonym="PT-STEMI")
    assert record.prediction.top_urgency == "immediate"
    listed = page.locator("#not-assessed")
    text = listed.inner_text()
    assert "Not assessed by this system" in text
    for pattern in ("Pacemaker function", "earlier ECGs", "outside the analysed 10 s", "children",
                    "without a validated operating point"):
        assert pattern in text
    page.locator("#not-assessed details").first.evaluate("d => d.open = true")  # one reason, as a reader opens it
    SHOTS.mkdir(parents=True, exist_ok=True)
    listed.screenshot(path=str(SHOTS / "result-not-assessed-card.png"))
    shot(page, "result-not-assessed")
    assert 'id="immediate-banner"' not in page.content()  # a clinician is not a reviewer

    page.context.clear_cookies()
    log_in(page, base, "rev-duty")
    page.goto(f"{base}/ecgs/")
    banner = page.locator("#immediate-banner")
    assert "PT-STEMI" in banner.inner_text() and "Immediate result" in banner.inner_text()
    shot(page, "immediate-banner-reviewer")
    page.set_viewport_size({"width": 390, "height": 844})  # a reviewer on call reads it on a phone
    page.reload()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390, "the banner scrolls sideways"
    shot(page, "immediate-banner-reviewer-390")
    page.set_viewport_size({"width": 1440, "height": 1000})
    page.click("#immediate-banner a.immediate-notice")
    page.wait_for_url(f"**/ecgs/{record.public_id}/")
    page.goto(f"{base}/ecgs/review/")  # opened: gone from this reviewer's pages; the result waits in the queue
    assert page.locator("#immediate-banner").count() == 0 and "PT-STEMI" in page.inner_text("#review-queue")

    # The e-mail left from the worker's notification task, audited.
    deadline = time.monotonic() + 30
    while not AuditEvent.objects.filter(action="result.notified", details__channel="email").exists():
        assert time.monotonic() < deadline, "no e-mail notification audited"
        time.sleep(0.5)
    assert not page.js_errors, page.js_errors
