"""A clinician uploads an ECG with 3 mm ST elevation in V2-V4 and reads, near the top of the ECG, this system's
measurement line; the STEMI criterion met by measurement is listed apart from the model's findings and sets an
immediate action."""
from __future__ import annotations

import pytest

from clinical import demo
from clinical.roles import roles_ensure
from tests.browser.conftest import CHROMIUM, log_in, person, shot, upload_ecg
from tests.mlcore.synthetic_beats import BeatSpec, ecg

pytestmark = pytest.mark.skipif(not __import__("pathlib").Path(CHROMIUM).exists(), reason="no chromium")


def test_result_shows_the_measurement_line_and_the_stemi_by_measurement(live_server, celery_worker_thread, page,
                                                                        tmp_path):
    base = live_server.url
    roles_ensure()
    person("dr-measure", "clinician")
    upload = tmp_path / "anterior-ste.json"
    upload.write_bytes(demo.as_json(ecg(500, BeatSpec(st_uv={"V2": 300, "V3": 300, "V4": 300}))[0], 500))

    log_in(page, base, "dr-measure")
    upload_ecg(page, base, pseudonym="PT-STE", age="61", sex="M", files=str(upload))

    line = page.locator("#measurement-line").inner_text()
    assert "This system's measurement" in line and "HR 75/min" in line and "(Bazett)" in line
    assert "P/QRS/T axes" in line and "—" not in line
    measured = page.locator("#findings .by-measurement").inner_text()
    assert "ST elevation meeting STEMI criteria, anterior" in measured
    assert "Immediate" in page.locator("#actions .action").first.inner_text()
    assert page.js_errors == []
    shot(page, "result-measurements")
