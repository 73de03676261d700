"""Result first, evidence after (issue 17): a clinician reads the findings and actions while the evidence is still
being computed; when it arrives the page shows it, and a finding's overlay can be drawn on the leads."""
from __future__ import annotations

import threading

import pytest

from clinical import demo, services
from clinical.models import Prediction
from clinical.roles import roles_ensure
from tests.browser.conftest import CHROMIUM, log_in, person, shot, upload_ecg

pytestmark = pytest.mark.skipif(not __import__("pathlib").Path(CHROMIUM).exists(), reason="no chromium")


@pytest.fixture
def release(monkeypatch) -> threading.Event:
    """The worker thread computes the evidence only when the test sets this: the page must work without it first."""
    event = threading.Event()
    compute = services.evidence_compute

    def held(*, prediction_id: int):
        assert event.wait(120), "the test never released the evidence"
        return compute(prediction_id=prediction_id)

    monkeypatch.setattr(services, "evidence_compute", held)
    return event


def test_findings_and_actions_show_before_the_evidence_then_its_overlay(live_server, celery_worker_thread, page,
                                                                        tmp_path, release):
    roles_ensure()
    person("dr-first", "clinician")
    signal = demo.synthesize(demo.CASES[2], fs=500, seed=5)  # anterior ST elevation: findings with evidence
    demo.write_wfdb(signal, 500, "ev500", str(tmp_path))
    base = live_server.url
    log_in(page, base, "dr-first")
    upload_ecg(page, base, pseudonym="PT-EVIDENCE", age="58", sex="M",
               files=[str(tmp_path / "ev500.hea"), str(tmp_path / "ev500.dat")], evidence=False)

    # The result is there, its evidence is not.
    prediction = Prediction.objects.get(record__patient__pseudonym="PT-EVIDENCE")
    assert prediction.evidence_state == Prediction.EvidenceState.PENDING
    assert page.locator("#evidence-status").inner_text().startswith("Evidence on the leads: being computed")
    assert page.locator("#actions li.action").count() >= 1
    toggles = page.locator("#findings .overlay-toggle")
    assert toggles.count() >= 1
    assert toggles.evaluate_all("bs => bs.every(b => b.disabled && b.title.includes('being computed'))")
    shot(page, "result-evidence-pending")

    release.set()
    # The page polls the status and loads itself again once the evidence is stored.
    page.wait_for_selector("#job-status[data-evidence=ready]", timeout=60_000)
    page.wait_for_selector("#ecg-plot .main-svg")
    assert page.locator("#evidence-status").count() == 0
    prediction.refresh_from_db()
    assert prediction.evidence_state == Prediction.EvidenceState.READY
    ready = page.locator("#findings .overlay-toggle:not([disabled])")
    assert ready.count() >= 1
    ready.first.click()
    assert ready.first.get_attribute("aria-pressed") == "true"
    assert page.locator("#overlay-caption").inner_text().startswith("Evidence by lead:")
    visible = page.evaluate(
        "() => { const el = document.getElementById('ecg-plot');"
        " const d = JSON.parse(document.getElementById('ecg-plot-data').textContent);"
        " const key = document.querySelector('.overlay-toggle[aria-pressed=true]').dataset.overlay;"
        " return d.overlay_traces[key].length > 0 && d.overlay_traces[key].every(i => el.data[i].visible === true); }")
    assert visible
    shot(page, "result-evidence-ready")
    assert not page.js_errors, page.js_errors


def test_evidence_that_arrives_while_the_reader_measures_waits_for_their_click(live_server, celery_worker_thread,
                                                                              page, tmp_path, release):
    """A reload would lose what the reader is doing (calipers on, a note typed): the page says the evidence is ready
    and loads it only when asked."""
    roles_ensure()
    person("dr-busy", "clinician")
    signal = demo.synthesize(demo.CASES[2], fs=500, seed=6)
    demo.write_wfdb(signal, 500, "busy500", str(tmp_path))
    base = live_server.url
    log_in(page, base, "dr-busy")
    upload_ecg(page, base, pseudonym="PT-BUSY", age="58", sex="M",
               files=[str(tmp_path / "busy500.hea"), str(tmp_path / "busy500.dat")], evidence=False)
    page.locator("#ecg-calipers .caliper-toggle").click()  # the reader starts measuring
    page.evaluate("() => { window.notReloaded = true; }")
    release.set()
    page.wait_for_selector("#evidence-show", timeout=60_000)
    assert page.evaluate("() => window.notReloaded === true")  # the same page: nothing was lost
    assert "Evidence on the leads is ready" in page.locator("#evidence-status").inner_text()
    page.click("#evidence-show")
    page.wait_for_selector("#job-status[data-evidence=ready]", timeout=60_000)
    assert page.locator("#findings .overlay-toggle:not([disabled])").count() >= 1
    assert not page.js_errors, page.js_errors
