"""A clinician opens an analysed ECG and downloads its report from the result page: a one-page PDF of this ECG,
marked preliminary, and the download is in the audit trail."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from clinical import demo
from clinical.models import AuditEvent
from clinical.roles import roles_ensure
from tests.browser.conftest import CHROMIUM, log_in, person, shot, upload_ecg

pytestmark = pytest.mark.skipif(not __import__("pathlib").Path(CHROMIUM).exists(), reason="no chromium")


def test_the_report_link_downloads_the_preliminary_pdf_of_this_ecg(live_server, celery_worker_thread, page,
                                                                  tmp_path):
    base = live_server.url
    roles_ensure()
    person("dr-report", "clinician")
    upload = tmp_path / "nsr.json"
    upload.write_bytes(demo.as_json(demo.synthesize(demo.CASES[0], fs=500, seed=7), 500))
    log_in(page, base, "dr-report")
    upload_ecg(page, base, pseudonym="PT-RPT", age="46", sex="F", files=str(upload))

    link = page.locator("#report-pdf")
    assert link.is_visible() and link.inner_text() == "Report (PDF, A4)"
    shot(page, "result-report-link")
    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename.startswith("ecg-report-PT-RPT-") and download.suggested_filename.endswith(
        ".pdf")
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert saved.read_bytes().startswith(b"%PDF-")
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", "-layout", str(saved), "-"], check=True, capture_output=True,
                              text=True).stdout
        assert "Patient PT-RPT" in text and "46 y, female" in text and "PRELIMINARY" in text
    event = AuditEvent.objects.get(action="report.downloaded")
    assert event.actor_label == "dr-report" and event.details["via"] == "page"
    assert page.js_errors == []
