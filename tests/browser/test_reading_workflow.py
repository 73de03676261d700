"""A reviewer reads an ECG from the worklist: edits a statement, compares with the prior ECG, signs with the password;
the reading is locked; an amendment makes version 2 with its reason; compliance finds every step audited."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from clinical import demo, services
from clinical.interpretations import interpretation_confirm
from clinical.models import EcgRecord, Interpretation
from clinical.roles import roles_ensure
from tests.browser.conftest import CHROMIUM, PASSWORD, log_in, person, shot

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium")


def _analysed(uploader, case: int, seed: int) -> EcgRecord:
    signal = demo.synthesize(demo.CASES[case], fs=500, seed=seed)
    record = services.ecg_submit(actor=uploader, pseudonym="PT-SERIAL", age=71, sex="M",
                                 files={"json": (f"case{case}.json", demo.as_json(signal, 500))}, fs=None)
    services.inference_run(job_id=record.job.id)
    return EcgRecord.objects.get(pk=record.pk)


def test_reviewer_reads_compares_confirms_and_amends(live_server, transactional_db, weights_dir, page):
    roles_ensure()
    clinician = person("dr-serial", "clinician")
    reviewer = person("rev-read", "reviewer")
    person("comp-audit", "compliance")
    # Last month's ECG (normal), confirmed then; today's shows a wide QRS (bundle-branch-block pattern).
    prior = _analysed(clinician, 0, 21)
    EcgRecord.objects.filter(pk=prior.pk).update(uploaded_at=timezone.now() - timedelta(days=30))
    interpretation_confirm(record=EcgRecord.objects.get(pk=prior.pk), reviewer=reviewer, password=PASSWORD)
    record = _analysed(clinician, 4, 22)
    base = live_server.url

    log_in(page, base, "rev-read")
    page.click("#nav-review")
    page.click("#tab-worklist")
    page.wait_for_selector("#worklist")
    assert "PT-SERIAL" in page.inner_text("#worklist") and page.locator("#worklist tbody tr").count() == 1
    assert "1" in page.inner_text("#worklist-counts")
    shot(page, "reading-worklist")
    page.click("#worklist a.button")
    page.wait_for_selector("#plot-current .main-svg")
    page.wait_for_selector("#plot-prior .main-svg")
    # Side by side at the same scale: the two sheets are drawn at the same width.
    widths = [page.locator(f"#plot-{p} .main-svg").first.bounding_box()["width"] for p in ("current", "prior")]
    assert abs(widths[0] - widths[1]) < 2
    lines = page.locator("#comparison-lines li").all_inner_texts()
    assert lines and any(line.startswith("QRS +") for line in lines), lines

    # Edit: remove the computer's first statement if it has one, and add complete LBBB.
    kept = page.locator("#computer-statements input[type=checkbox]")
    removed = None
    if kept.count():
        removed = page.locator("#computer-statements label.keep").first.get_attribute("data-key")
        kept.first.uncheck()
    added = "statements:CLBBB"
    options = page.locator("#id_added option").evaluate_all("os => os.map(o => o.value)")
    if added not in options:  # the model flagged it itself: add another statement
        added = next(o for o in options if o.startswith("statements:"))
    page.select_option("#id_added", [added])
    page.fill("#id_free_text", "Wide QRS, LBBB morphology, new since last month.")
    page.fill("#id_m__qrs_ms", "150")
    page.fill("#id_password", "not-my-password")
    shot(page, "reading-confirm-page")
    page.click("#confirm-reading")
    page.wait_for_selector("#reading-errors")
    assert "Nothing was stored" in page.inner_text("#reading-errors")
    assert not Interpretation.objects.filter(record=record).exists()

    # The refused page keeps the edits; sign with the right password.
    page.fill("#id_password", PASSWORD)
    page.click("#confirm-reading")
    page.wait_for_selector(".messages li")
    assert "Reading confirmed: version 1, locked" in page.inner_text(".messages")
    state = page.inner_text("#reading-state")
    assert "Final reading, version 1" in state and "Locked" in state
    v1 = Interpretation.objects.get(record=record)
    assert {s["key"]: s["action"] for s in v1.statements}[added] == "added"
    if removed:
        assert {s["key"]: s["action"] for s in v1.statements}[removed] == "removed"
    assert v1.measurement_overrides["qrs_ms"]["reviewer"] == 150.0
    stored = page.locator("#comparison-lines li").all_inner_texts()
    assert any(line.startswith("New: ") for line in stored), stored  # the added statement is new since the prior
    page.wait_for_selector("#plot-prior .main-svg")
    shot(page, "reading-confirmed")

    # Amend: version 2, with its reason; version 1 stays.
    page.fill("#id_reason", "QRS re-measured in V1: 160 ms.")
    page.fill("#id_m__qrs_ms", "160")
    page.fill("#id_password", PASSWORD)
    page.click("#amend-reading")
    page.wait_for_selector(".messages li")
    assert "Reading amended: version 2" in page.inner_text(".messages")
    assert "Amended reading, version 2" in page.inner_text("#reading-state")
    assert "QRS re-measured in V1" in page.inner_text("#version-2 .amend-reason")
    assert page.locator("#version-1").count() == 1
    shot(page, "reading-amended")
    page.click("#nav-review")
    page.click("#tab-worklist")
    page.wait_for_selector("#worklist-counts, .empty")
    assert "PT-SERIAL" not in page.content()

    page.context.clear_cookies()
    log_in(page, base, "dr-serial")
    page.goto(f"{base}/ecgs/")
    row = page.locator("#ecg-list tbody tr").first.inner_text()
    assert "Amended v2" in row and "rev-read" in row

    page.context.clear_cookies()
    log_in(page, base, "comp-audit")
    page.goto(f"{base}/ecgs/audit/?patient=PT-SERIAL")
    actions = page.locator("#audit-events td code").all_inner_texts()
    assert {"interpretation.sign_failed", "interpretation.confirm", "interpretation.amend"} <= set(actions)
    assert not page.js_errors, page.js_errors
