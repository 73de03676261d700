"""A clinician logs in, uploads a 500 Hz WFDB pair and a CSV, and reads the result the worker produced."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User

from clinical import demo
from clinical.models import EcgRecord, InferenceJob
from clinical.roles import roles_ensure
from tests.browser.conftest import CHROMIUM, shot

pytestmark = pytest.mark.skipif(not __import__("pathlib").Path(CHROMIUM).exists(), reason="no chromium")
PASSWORD = "browser-test-pw-1"


@pytest.fixture
def demo_clinician(transactional_db):
    roles_ensure()
    user = User.objects.create_user("dr-live", password=PASSWORD)
    user.groups.add(Group.objects.get(name="clinician"))
    return user


def log_in(page, base):
    page.goto(f"{base}/login/")
    page.fill("#id_username", "dr-live")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/ecgs/")


def fill_patient(page, pseudonym):
    page.fill("#id_pseudonym", pseudonym)
    page.fill("#id_age", "61")
    page.select_option("#id_sex", "M")


def wait_for_result(page):
    page.wait_for_selector("#job-status.state-done", timeout=60_000)
    # The evidence follows the result: the page loads itself again when it is stored.
    page.wait_for_selector("#job-status:not([data-evidence=pending])", timeout=60_000)
    page.wait_for_selector("#ecg-plot .main-svg")


def test_upload_wfdb_and_csv_see_plot_overlay_and_actions(live_server, celery_worker_thread, demo_clinician, page,
                                                          tmp_path):
    base = live_server.url
    signal = demo.synthesize(demo.CASES[2], fs=500, seed=5)  # anterior ST elevation pattern
    demo.write_wfdb(signal, 500, "st500", str(tmp_path))
    log_in(page, base)

    page.goto(f"{base}/ecgs/new/")
    fill_patient(page, "PT-LIVE-1")
    page.set_input_files("#id_files", [str(tmp_path / "st500.hea"), str(tmp_path / "st500.dat")])
    shot(page, "upload-form")
    page.click("#submit-upload")
    page.wait_for_url("**/ecgs/*/")
    wait_for_result(page)

    record = EcgRecord.objects.get(patient__pseudonym="PT-LIVE-1")
    assert record.fs == 500 and record.job.state == InferenceJob.State.DONE
    # Processed by the worker thread, not the web request: the job was started after the upload returned.
    assert record.job.started_at > record.uploaded_at
    assert page.locator("#actions li").count() >= 1
    assert page.locator("#ecg-plot .main-svg").count() >= 1
    shot(page, "result")

    toggles = page.locator(".overlay-toggle:not([disabled])")
    if toggles.count():
        toggles.first.click()
        assert toggles.first.get_attribute("aria-pressed") == "true"
        assert page.locator("#overlay-caption").is_visible()
        visible = page.evaluate(
            "() => { const el = document.getElementById('ecg-plot');"
            " const d = JSON.parse(document.getElementById('ecg-plot-data').textContent);"
            " const key = document.querySelector('.overlay-toggle[aria-pressed=true]').dataset.overlay;"
            " return d.overlay_traces[key].every(i => el.data[i].visible === true); }")
        assert visible
        shot(page, "result-overlay")

    csv = tmp_path / "normal250.csv"
    csv.write_bytes(demo.as_csv(demo.synthesize(demo.CASES[0], fs=250, seed=6)))
    page.goto(f"{base}/ecgs/new/")
    fill_patient(page, "PT-LIVE-2")
    page.set_input_files("#id_files", [str(csv)])
    page.fill("#id_fs", "250")
    page.click("#submit-upload")
    page.wait_for_url("**/ecgs/*/")
    wait_for_result(page)
    assert EcgRecord.objects.get(patient__pseudonym="PT-LIVE-2").source_format == "csv"
    assert page.locator("#actions li").count() >= 1
    assert not page.js_errors, page.js_errors


def test_bad_upload_shows_the_reason_next_to_the_file_field(live_server, demo_clinician, page):
    base = live_server.url
    log_in(page, base)
    page.goto(f"{base}/ecgs/new/")
    fill_patient(page, "PT-BAD")
    # .rtf: a type no reader takes (.txt is now read as a text export)
    page.set_input_files("#id_files", files=[{"name": "ecg.rtf", "mimeType": "application/rtf",
                                              "buffer": b"{\\rtf1 hello}"}])
    page.click("#submit-upload")
    error = page.locator("#error-files")
    error.wait_for()
    assert ".csv" in error.inner_text()
    shot(page, "upload-error")
    assert not EcgRecord.objects.exists()
