"""A clinician reads the median beat of each lead with the marks where PR, QRS and QT were measured, and checks an
interval with the calipers: on the rhythm strip with a mouse, on the median beats with a finger on a phone."""
from __future__ import annotations

import re

import pytest

from clinical import demo
from clinical.models import EcgRecord
from clinical.roles import roles_ensure
from tests.browser.conftest import CHROMIUM, log_in, person, shot, upload_ecg

pytestmark = pytest.mark.skipif(not __import__("pathlib").Path(CHROMIUM).exists(), reason="no chromium")

PHONE = {"width": 390, "height": 844}
MARKS = {"p_on", "p_off", "qrs_on", "qrs_off", "j60", "t_off"}


def to_screen(page, plot_id: str, x: float, y: float) -> tuple[int, int]:
    """The whole page pixel nearest to data point (x, y) of a plot, from its axes' ranges and plot area."""
    return tuple(page.evaluate("""([id, x, y]) => {
        const el = document.getElementById(id), r = el.querySelector('.nsewdrag').getBoundingClientRect();
        const xr = el._fullLayout.xaxis.range, yr = el._fullLayout.yaxis.range;
        return [Math.round(r.left + (x - xr[0]) / (xr[1] - xr[0]) * r.width),
                Math.round(r.top + (yr[1] - y) / (yr[1] - yr[0]) * r.height)];
    }""", [plot_id, x, y]))


def to_data_x(page, plot_id: str, px: int) -> float:
    """Where a click at page pixel px lands on the plot's x axis (what the calipers should compute)."""
    return page.evaluate("""([id, px]) => {
        const el = document.getElementById(id), r = el.querySelector('.nsewdrag').getBoundingClientRect();
        const xr = el._fullLayout.xaxis.range;
        return xr[0] + (px - r.left) / r.width * (xr[1] - xr[0]);
    }""", [plot_id, px])


def readout(page, name: str) -> str:
    return page.locator(f"#{name}-calipers .caliper-readout").inner_text()


def delta_ms(text: str) -> int:
    return int(re.search(r"Δt (\d+) ms", text).group(1))


def test_median_beats_with_fiducial_marks_and_calipers(live_server, celery_worker_thread, page, tmp_path):
    base = live_server.url
    roles_ensure()
    person("dr-calipers", "clinician")
    upload = tmp_path / "sinus.json"
    upload.write_bytes(demo.as_json(demo.synthesize(demo.CASES[0], fs=500, seed=1), 500))
    log_in(page, base, "dr-calipers")
    upload_ecg(page, base, pseudonym="PT-CAL", age="46", sex="F", files=str(upload), ready="#median-plot .main-svg")
    m = EcgRecord.objects.get().measurements
    fid, fs = m["fiducials"], m["fs"]
    # The median beats are drawn from shortly before P onset: x is seconds from the first drawn sample.
    start = page.evaluate("() => JSON.parse(document.getElementById('median-plot-data').textContent).start_s")
    at = {k: v / fs - start for k, v in fid.items() if k != "per_lead"}

    # Twelve median beats, each global fiducial marked, the bars named with the measured intervals.
    drawn = page.evaluate("""() => {
        const gd = document.getElementById('median-plot');
        return {metas: gd.data.map(t => t.meta), notes: gd.layout.annotations.map(a => a.text)};
    }""")
    assert {"I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"} <= set(drawn["metas"])
    assert MARKS <= set(drawn["metas"])
    assert f"<b>QRS {m['qrs_ms']} ms</b>" in drawn["notes"] and f"<b>PR {m['pr_ms']} ms</b>" in drawn["notes"]
    assert f"<b>QT {m['qt_ms']} ms</b>" in drawn["notes"]
    legend = page.locator("#fiducial-legend").inner_text()
    for label in ("P onset", "QRS onset", "QRS offset (J)", "J+60 ms", "T end"):
        assert label in legend
    assert page.locator("#median-beats-absent").count() == 0

    # Calipers on the lead II rhythm strip (baseline -9 mV): 2.0 s and 2.8 s apart by 800 ms, 75/min.
    toggle = page.locator("#ecg-calipers .caliper-toggle")
    toggle.focus()
    page.keyboard.press("Enter")  # the toggle works from the keyboard
    assert toggle.get_attribute("aria-pressed") == "true"
    assert "first point" in readout(page, "ecg")
    page.locator("#ecg-plot").scroll_into_view_if_needed()
    (ax, ay), (bx, by) = to_screen(page, "ecg-plot", 2.0, -9.0), to_screen(page, "ecg-plot", 2.8, -8.0)
    page.mouse.click(ax, ay)
    assert "second point" in readout(page, "ecg")
    page.mouse.click(bx, by)
    expected = round(abs(to_data_x(page, "ecg-plot", bx) - to_data_x(page, "ecg-plot", ax)) * 1000)
    text = readout(page, "ecg")
    assert abs(delta_ms(text) - expected) <= 1 and abs(expected - 800) <= 12, text
    assert f"rate {round(60000 / delta_ms(text))}/min" in text
    assert re.search(r"Δ \+(0\.9\d|1\.0\d) mV \(\+(9\.\d|10\.\d) mm\) in II", text), text  # 1 mV up: 10 mm
    assert page.evaluate("() => document.getElementById('ecg-plot').layout.shapes.length") > 9  # marks drawn
    page.keyboard.press("Escape")
    assert "Δt" not in readout(page, "ecg")
    assert page.evaluate("() => document.getElementById('ecg-plot').layout.shapes.length") == 9  # the separators

    # On the median beats: lead II's column (the first, second row), QRS onset to offset reads the QRS duration.
    page.locator("#median-calipers .caliper-toggle").click()
    page.locator("#median-plot").scroll_into_view_if_needed()
    (ax, ay), (bx, by) = (to_screen(page, "median-plot", at["qrs_on"], -2.8),
                          to_screen(page, "median-plot", at["qrs_off"], -2.8))
    page.mouse.click(ax, ay)
    page.mouse.click(bx, by)
    text = readout(page, "median")
    expected = round(abs(to_data_x(page, "median-plot", bx) - to_data_x(page, "median-plot", ax)) * 1000)
    assert abs(delta_ms(text) - expected) <= 1 and abs(expected - m["qrs_ms"]) <= 6, (text, m["qrs_ms"])
    assert "in II" in text and "/min" not in text  # a QRS duration is not a rate (no "rate 531/min")
    # R to R on the rhythm strip (the R peaks the measurement found): the rate of that one cycle, near the heart
    # rate of the measurement line (the median RR; the demo's rhythm varies a little from beat to beat).
    page.locator("#ecg-plot").scroll_into_view_if_needed()
    r1, r2 = (q / fs for q in m["beats"]["qrs"][3:5])
    for x in (r1, r2):
        page.mouse.click(*to_screen(page, "ecg-plot", x, -8.6))
    text = readout(page, "ecg")
    assert abs(delta_ms(text) - (r2 - r1) * 1000) <= 12, text
    rate = int(re.search(r"rate (\d+)/min", text).group(1))
    assert abs(rate - 60 / (r2 - r1)) <= 1.5 and abs(rate - m["heart_rate_bpm"]) <= 5, text
    page.locator("#median-beats").scroll_into_view_if_needed()
    assert page.js_errors == []
    shot(page, "result-median-beats-calipers")
    page.locator("#median-calipers .caliper-clear").click()
    assert "Δt" not in readout(page, "median")

    # A phone: a tap is a click, and the median beats scroll sideways at paper scale like the sheet.
    phone = page.context.browser.new_context(viewport=PHONE, has_touch=True, is_mobile=True)
    phone.add_cookies(page.context.cookies())
    small = phone.new_page()
    small.goto(page.url)
    small.wait_for_selector("#median-plot .main-svg")
    assert small.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    small.locator("#median-calipers .caliper-toggle").tap()
    small.locator("#median-scroll").scroll_into_view_if_needed()
    (ax, ay), (bx, by) = (to_screen(small, "median-plot", at["qrs_on"], -2.8),
                          to_screen(small, "median-plot", at["t_off"], -2.8))
    small.touchscreen.tap(ax, ay)
    small.touchscreen.tap(bx, by)
    text = readout(small, "median")
    expected = round(abs(to_data_x(small, "median-plot", bx) - to_data_x(small, "median-plot", ax)) * 1000)
    assert abs(delta_ms(text) - expected) <= 1 and abs(expected - m["qt_ms"]) <= 6, (text, m["qt_ms"])
    shot(small, "result-median-beats-calipers-390")
    phone.close()
