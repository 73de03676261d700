"""A clinician reads a result on a phone and a tablet; a refused upload keeps its files; the app's own 404 page and
favicon."""
from __future__ import annotations

import pytest

from clinical import demo
from clinical.ecgplot import PAPER_WIDTH_PX, PX_PER_MM
from clinical.models import EcgRecord
from clinical.roles import roles_ensure
from tests.browser.conftest import CHROMIUM, log_in, person, shot

pytestmark = pytest.mark.skipif(not __import__("pathlib").Path(CHROMIUM).exists(), reason="no chromium")

PHONE = {"width": 390, "height": 844}
TABLET = {"width": 768, "height": 1024}
DESKTOP = {"width": 1440, "height": 1000}
# Ten seconds at 25 mm/s, in CSS pixels (96 per inch): what a printed 10 s strip measures.
TEN_SECONDS_PX = 10 * 25 * PX_PER_MM


@pytest.fixture
def admin_on_call(transactional_db):
    """A doctor who uploads and reviews, audits and monitors: every tab of the top navigation."""
    roles_ensure()
    return person("dr-oncall", "admin")


def page_width(page) -> int:
    return page.evaluate("() => document.documentElement.scrollWidth")


def plot_box(page) -> dict:
    """The drawn ECG sheet (Plotly's SVG) and the box that holds it."""
    return page.evaluate("""() => {
        const svg = document.querySelector('#ecg-plot .main-svg');
        const box = document.getElementById('ecg-scroll');
        return {svg: svg.getBoundingClientRect().width, svgHeight: svg.getBoundingClientRect().height,
                box: box.clientWidth, scroll: box.scrollWidth, overflow: getComputedStyle(box).overflowX};
    }""")


def fill_patient(page, pseudonym):
    page.fill("#id_pseudonym", pseudonym)
    page.fill("#id_age", "61")
    page.select_option("#id_sex", "F")


def test_result_page_reads_on_a_phone_and_a_tablet(live_server, celery_worker_thread, admin_on_call, page,
                                                   tmp_path):
    base = live_server.url
    demo.write_wfdb(demo.synthesize(demo.CASES[2], fs=500, seed=5), 500, "st500", str(tmp_path))
    page.set_viewport_size(PHONE)
    log_in(page, base, "dr-oncall")
    page.goto(f"{base}/ecgs/new/")
    assert page_width(page) <= PHONE["width"], "upload page scrolls sideways on a phone"
    fill_patient(page, "PT-PHONE-1")
    page.set_input_files("#id_files", [str(tmp_path / "st500.hea"), str(tmp_path / "st500.dat")])
    page.click("#submit-upload")
    page.wait_for_url("**/ecgs/*/")
    page.wait_for_selector("#job-status.state-done", timeout=60_000)
    # The evidence follows the result and the page loads itself again when it is stored: wait for that first.
    page.wait_for_selector('#job-status.state-done:not([data-evidence="pending"])', timeout=60_000)
    page.wait_for_selector("#ecg-plot .main-svg")

    for viewport, name in ((PHONE, "result-390"), (TABLET, "result-768")):
        page.set_viewport_size(viewport)
        page.reload()
        page.wait_for_selector("#ecg-plot .main-svg")
        assert page_width(page) <= viewport["width"], f"the result page scrolls sideways at {viewport['width']} px"
        box = plot_box(page)
        # At paper scale, not shrunk to the screen: the sheet scrolls inside its own box instead.
        assert box["svg"] >= TEN_SECONDS_PX, box
        assert box["svg"] >= PAPER_WIDTH_PX - 1, box
        assert box["overflow"] == "auto" and box["scroll"] > box["box"], box
        assert box["box"] <= viewport["width"]
        # The findings and actions are still on the page, below the ECG.
        assert page.locator("#actions li").count() >= 1
        shot(page, name)

    # The desktop keeps its two columns, the sheet fitted to its card (no sideways scroll there).
    page.set_viewport_size(DESKTOP)
    page.reload()
    page.wait_for_selector("#ecg-plot .main-svg")
    assert page_width(page) <= DESKTOP["width"]
    box = plot_box(page)
    assert box["scroll"] <= box["box"] + 1 and box["svg"] >= box["box"] - 1, box
    plot = page.locator(".plot-card").bounding_box()
    aside = page.locator(".result-grid > aside").bounding_box()
    assert aside["x"] > plot["x"] + plot["width"] - 1, "actions moved under the ECG on a desktop"
    shot(page, "result-1440")

    page.set_viewport_size(PHONE)
    for path in ("/ecgs/", "/ecgs/reviews/", "/ecgs/new/"):
        page.goto(f"{base}{path}")
        assert page_width(page) <= PHONE["width"], f"{path} scrolls sideways on a phone"
    shot(page, "upload-390")
    page.goto(f"{base}/ecgs/")
    shot(page, "list-390")
    assert not page.js_errors, page.js_errors


def test_a_refused_upload_keeps_the_chosen_file_and_the_typed_values(live_server, admin_on_call, page):
    base = live_server.url
    log_in(page, base, "dr-oncall")
    page.goto(f"{base}/ecgs/new/")
    fill_patient(page, "PT-KEEP")
    # .rtf: a type no reader takes (.txt is now read as a text export)
    page.set_input_files("#id_files", files=[{"name": "ecg.rtf", "mimeType": "application/rtf", "buffer": b"hello"}])
    page.click("#submit-upload")
    error = page.locator("#error-files")
    error.wait_for()
    assert ".csv" in error.inner_text()
    # The page was not reloaded: the browser still holds the file, and what was typed stays.
    assert page.evaluate("() => Array.from(document.getElementById('id_files').files).map(f => f.name)") == [
        "ecg.rtf"]
    assert page.input_value("#id_pseudonym") == "PT-KEEP"
    assert page.input_value("#id_age") == "61"
    assert page.input_value("#id_sex") == "F"
    assert not page.locator("#submit-upload").is_disabled()
    shot(page, "upload-refused-keeps-file")

    # Unknown sex was never chosen for them: clearing the choice is an error of its own, shown beside the field.
    page.select_option("#id_sex", "")
    page.click("#submit-upload")
    page.locator("#error-sex").wait_for()
    assert page.evaluate("() => document.getElementById('id_files').files.length") == 1
    assert not EcgRecord.objects.exists()
    assert not page.js_errors, page.js_errors


def test_not_found_page_and_favicon_look_like_the_app(live_server, admin_on_call, page):
    base = live_server.url
    log_in(page, base, "dr-oncall")
    response = page.goto(f"{base}/ecgs/no-such-page/")
    assert response.status == 404
    assert page.locator("header.topbar").count() == 1
    assert "Page not found" in page.locator("h1").inner_text()
    assert page.evaluate("() => getComputedStyle(document.body).fontFamily").startswith("system-ui")
    shot(page, "not-found")

    icon = page.evaluate("() => document.querySelector('link[rel=icon]').href")
    assert page.request.get(icon).status == 200
    favicon = page.request.get(f"{base}/favicon.ico")
    assert favicon.status == 200 and "svg" in favicon.headers["content-type"]
