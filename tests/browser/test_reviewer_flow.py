"""A reviewer acknowledges an urgent result in the browser; the clinician sees it; compliance finds it audited."""
from __future__ import annotations

from pathlib import Path

import pytest

from clinical import demo, services
from clinical.models import Prediction
from clinical.roles import roles_ensure
from tests.browser.conftest import CHROMIUM, log_in, person, shot

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium")
def test_reviewer_acknowledges_and_everyone_sees_it(live_server, transactional_db, weights_dir, page):
    roles_ensure()
    clinician = person("dr-up", "clinician")
    person("rev-ack", "reviewer")
    person("comp-read", "compliance")
    signal = demo.synthesize(demo.CASES[2], fs=500, seed=11)
    record = services.ecg_submit(actor=clinician, pseudonym="PT-ACK", age=63, sex="M",
                                 files={"json": ("st.json", demo.as_json(signal, 500))}, fs=None)
    services.inference_run(job_id=record.job.id)
    # Whatever the model made of the synthetic tracing, this test needs the result in the urgent queue.
    Prediction.objects.filter(record=record, top_urgency="routine").update(top_urgency="urgent")
    base = live_server.url

    log_in(page, base, "rev-ack")
    page.click("#nav-review")
    page.wait_for_selector("#review-queue")
    shot(page, "review-queue")
    page.click("#review-queue a.button")
    page.wait_for_selector("#ack-form")
    page.check("#ack-form input[name=verdict][value=agree]")
    page.fill("#ack-form textarea[name=note]", "Reviewed at the bedside; agree, cardiology informed.")
    shot(page, "review-acknowledge-form")
    page.click("#acknowledge")
    page.wait_for_selector(".messages li")
    assert "Result acknowledged" in page.inner_text(".messages")
    assert "PT-ACK" not in page.content()

    page.context.clear_cookies()
    log_in(page, base, "dr-up")
    page.goto(f"{base}/ecgs/{record.public_id}/")
    state = page.inner_text("#review-state")
    assert "Acknowledged by rev-ack" in state and "cardiology informed" in state
    shot(page, "result-acknowledged")

    page.context.clear_cookies()
    log_in(page, base, "comp-read")
    page.goto(f"{base}/ecgs/audit/?patient=PT-ACK")
    actions = page.locator("#audit-events td code").all_inner_texts()
    assert {"ecg.upload", "inference.complete", "ecg.view", "result.acknowledge"} <= set(actions)
    shot(page, "audit-trail")
    assert not page.js_errors, page.js_errors
