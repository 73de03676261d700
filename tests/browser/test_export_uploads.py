"""A clinician uploads real exported files (a Philips Sierra XML and a GE MUSE XML from ../shared/ecg_samples) through
the page and reads our findings beside the recording device's own statements."""
from __future__ import annotations

from pathlib import Path

import pytest

from clinical.models import EcgRecord, InferenceJob
from tests.browser.conftest import CHROMIUM, log_in, person, shot, upload_ecg

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "ecg_samples"
pytestmark = [pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium"),
              pytest.mark.skipif(not SAMPLES.is_dir(), reason="../shared/ecg_samples is not beside the checkout")]


@pytest.mark.parametrize(("sample", "pseudonym", "statement", "shot_name"), [
    ("philips-xml/129DYPRG.XML", "PT-PHILIPS", "Acute MI", "result-philips-xml"),
    ("ge-muse-xml/braveheart_example1.xml", "PT-MUSE", "Ventricular rate", "result-ge-muse-xml"),
])
def test_an_exported_file_gives_our_findings_beside_the_devices_own_reading(
        live_server, celery_worker_thread, page, sample, pseudonym, statement, shot_name):
    from clinical.roles import roles_ensure

    roles_ensure()
    person("dr-export", "clinician")
    base = live_server.url
    log_in(page, base, "dr-export")
    upload_ecg(page, base, pseudonym=pseudonym, age="50", sex="M", files=[str(SAMPLES / sample)])
    record = EcgRecord.objects.get(patient__pseudonym=pseudonym)
    assert record.job.state == InferenceJob.State.DONE and record.fs == 500
    reading = page.inner_text("#device-reading")
    assert statement in reading and "not this system's analysis" in reading
    assert page.locator("#findings").count() == 1 and page.locator("#actions li").count() >= 1
    assert not page.js_errors, page.js_errors
    shot(page, shot_name)
