"""A clinician uploads a 40 s record whose middle is noise, sees which 10 s were analysed on the whole-record
strip, clicks the strip to pick another 10 s, and lands on the re-analysis, which links back to the first."""
from __future__ import annotations

import numpy as np
import pytest

from clinical import demo
from clinical.models import EcgRecord
from clinical.roles import roles_ensure
from tests.browser.conftest import CHROMIUM, log_in, person, shot, upload_ecg

pytestmark = pytest.mark.skipif(not __import__("pathlib").Path(CHROMIUM).exists(), reason="no chromium")


def test_upload_a_long_record_see_its_window_and_analyse_another(live_server, celery_worker_thread, page, tmp_path):
    base = live_server.url
    roles_ensure()
    person("dr-window", "clinician")
    x = demo.synthesize(demo.CASES[0], fs=500, seconds=40, seed=8)
    x[:, 12 * 500:30 * 500] += np.random.default_rng(1).normal(0, 0.5, (12, 18 * 500)).astype(np.float32)
    upload = tmp_path / "holter-strip-40s.json"
    upload.write_bytes(demo.as_json(x, 500))

    log_in(page, base, "dr-window")
    upload_ecg(page, base, pseudonym="PT-STRIP", age="72", sex="F", files=str(upload), ready="#overview-plot .main-svg")

    line = page.locator("#window-line").inner_text()
    assert "Analysed: 2.0–12.0 s of 40.0 s" in line and "cleanest 10 s by signal quality" in line
    assert page.locator("#overview-plot .main-svg").count() >= 1
    assert page.js_errors == []
    first_url = page.url
    shot(page, "analysed-window")

    # Click the strip at about 35 s: the window is centred there (30.0-40.0 s, the last one) and shown dashed.
    box = page.locator("#overview-plot .nsewdrag").first.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 35 / 40, box["y"] + box["height"] / 2)
    assert page.input_value("#id_window_start_s") == "30"
    shot(page, "analysed-window-picked")
    page.click("#reanalyse")
    page.wait_for_url(lambda url: url != first_url and "/ecgs/" in url)
    page.wait_for_selector("#job-status.state-done", timeout=60_000)
    # The evidence follows the result and the page loads itself again when it is stored: wait for that first.
    page.wait_for_selector('#job-status.state-done:not([data-evidence="pending"])', timeout=60_000)
    page.wait_for_selector("#ecg-plot .main-svg")

    new = EcgRecord.objects.get(reanalysis_of__patient__pseudonym="PT-STRIP")
    assert (new.window_start_s, new.window_chosen_by) == (30.0, "user")
    assert "Analysed: 30.0–40.0 s of 40.0 s" in page.locator("#window-line").inner_text()
    assert page.locator("#reanalysis-of a").get_attribute("href").endswith(f"/ecgs/{new.reanalysis_of.public_id}/")
    assert page.js_errors == []
    shot(page, "reanalysed-window")

    page.click("#reanalysis-of a")
    page.wait_for_selector("#windows-analysed")
    assert "30.0–40.0 s" in page.locator("#windows-analysed").inner_text()

    # On a phone the window line, the strip and the form stay readable without sideways scrolling of the card.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(page.url)
    page.wait_for_selector("#overview-plot .main-svg")
    card = page.locator("#analysed-window").bounding_box()
    assert card["width"] <= 390
    shot(page, "analysed-window-phone")
