"""The printed report measured as paper: the PDF is rendered at 300 dpi by poppler and the calibration pulse, the
grid and the trace are found in the pixels and measured in millimetres."""
from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clinical.reports.data import ReportDataError, ReportStatement
from clinical.reports.pdf import report_pdf
from tests.clinical.report_fixtures import report, spikes_signal

DPI = 300
PX_PER_MM = DPI / 25.4
pytestmark = pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils (pdftoppm) not installed")


def render(pdf: bytes, tmp_path: Path) -> np.ndarray:
    src = tmp_path / "report.pdf"
    src.write_bytes(pdf)
    subprocess.run(["pdftoppm", "-r", str(DPI), "-png", "-singlefile", str(src), str(tmp_path / "page")],
                   check=True)
    return np.asarray(Image.open(tmp_path / "page.png").convert("RGB")).astype(int)


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    src = tmp_path / "text.pdf"
    src.write_bytes(pdf)
    return subprocess.run(["pdftotext", "-layout", str(src), "-"], check=True, capture_output=True,
                          text=True).stdout


def runs(mask_1d: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    padded = np.concatenate([[False], mask_1d, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(int)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def groups(xs: list[int]) -> list[tuple[int, int]]:
    """Consecutive integers grouped as (first, last)."""
    out: list[tuple[int, int]] = []
    for x in sorted(set(xs)):
        if out and x == out[-1][1] + 1:
            out[-1] = (out[-1][0], x)
        else:
            out.append((x, x))
    return out


class Page:
    """What the rendered page shows: dark (trace, pulse, text) pixels and the grid's pink lines."""

    def __init__(self, img: np.ndarray) -> None:
        self.img = img
        self.dark = (img < 100).all(axis=2)
        r, g, b = img[..., 0], img[..., 1], img[..., 2]
        self.major = (r > 200) & (g > 95) & (g < 165) & (abs(g - b) < 20)
        self.minor = (r > 240) & (g > 185) & (g < 225) & (abs(g - b) < 20)

    def long_vertical(self, min_mm: float = 7.0) -> list[tuple[int, int, int]]:
        """(x, y0, y1) of every vertical dark run longer than min_mm: the pulse edges and the spikes (text and
        flat traces are shorter)."""
        out = []
        for x in range(self.dark.shape[1]):
            for y0, y1 in runs(self.dark[:, x]):
                if y1 - y0 > min_mm * PX_PER_MM:
                    out.append((x, y0, y1))
        return out

    def run_centre(self, x: int, y_lo: int, y_hi: int) -> list[float]:
        return [(a + b - 1) / 2 + y_lo for a, b in runs(self.dark[y_lo:y_hi, x])]


def pulses_and_spikes(page: Page) -> list[dict]:
    """Per row (top to bottom): the pulse's rising and falling edge x, its top and baseline y, and the x of each
    tall spike after it."""
    tall = page.long_vertical()
    assert tall, "no calibration pulse found"
    x_first = min(x for x, _, _ in tall)
    rows: list[tuple[int, int]] = []  # the first edge's runs, merged across its columns
    for _, y0, y1 in sorted((r for r in tall if r[0] <= x_first + 2), key=lambda r: r[1]):
        if rows and y0 <= rows[-1][1]:
            rows[-1] = (rows[-1][0], max(rows[-1][1], y1))
        else:
            rows.append((y0, y1))
    out = []
    for y0, y1 in rows:
        xs = [x for x, a, b in tall if a < y1 and b > y0]
        edges = groups(xs)
        rise, fall = edges[0], edges[1]
        x_rise, x_fall = (rise[0] + rise[1]) / 2, (fall[0] + fall[1]) / 2
        mid = int(round((x_rise + x_fall) / 2))
        lead_in = int(round(x_rise - 1.25 * PX_PER_MM))
        lo, hi = y0 - 10, y1 + 10
        top = min(page.run_centre(mid, lo, hi))
        base = max(page.run_centre(lead_in, lo, hi))
        # A spike's up and down strokes are two column groups less than a millimetre apart: one spike.
        clusters: list[tuple[int, int]] = []
        for a, b in edges[2:]:
            if clusters and a - clusters[-1][1] < PX_PER_MM:
                clusters[-1] = (clusters[-1][0], b)
            else:
                clusters.append((a, b))
        spikes = [(a + b) / 2 for a, b in clusters]
        # The highest dark pixel of each spike, and the line's thickness (the pulse's top stroke, measured).
        spike_tops = [lo + int(np.flatnonzero(page.dark[lo:hi, a - 3:b + 4].any(axis=1))[0]) for a, b in clusters]
        line = max(b - a for a, b in runs(page.dark[lo:hi, mid]))
        out.append({"x_rise": x_rise, "x_fall": x_fall, "top": top, "base": base, "spikes": spikes,
                    "spike_tops": spike_tops, "line": line})
    return out


@pytest.fixture(scope="module")
def a4_page(tmp_path_factory) -> Page:
    return Page(render(report_pdf(report(spikes_signal())), tmp_path_factory.mktemp("a4")))


def test_the_calibration_pulse_is_10_mm_tall_and_5_mm_wide_on_every_row(a4_page):
    rows = pulses_and_spikes(a4_page)
    assert len(rows) == 4  # three 12-lead rows and the rhythm strip
    for row in rows:
        assert (row["base"] - row["top"]) / PX_PER_MM == pytest.approx(10.0, abs=0.2)
        # 0.2 s at 25 mm/s.
        assert (row["x_fall"] - row["x_rise"]) / PX_PER_MM == pytest.approx(5.0, abs=0.3)


def test_one_second_of_trace_is_25_mm(a4_page):
    strip = pulses_and_spikes(a4_page)[-1]
    assert len(strip["spikes"]) == 9  # 1 s ... 9 s of lead II over the whole 10 s strip
    gaps = np.diff(strip["spikes"]) / PX_PER_MM
    assert gaps == pytest.approx(np.full(8, 25.0), abs=0.3)
    # The first spike is 1 s after the trace starts, which is 2.5 mm after the pulse's falling edge.
    assert (strip["spikes"][0] - strip["x_fall"]) / PX_PER_MM == pytest.approx(2.5 + 25.0, abs=0.3)
    # In the first row's first column (lead I, flat) there is no spike; in the second (II, 0-2.5 s) two.
    assert [len(r["spikes"]) for r in pulses_and_spikes(a4_page)[:3]] == [0, 2, 0]


@pytest.mark.parametrize("fs", [250, 1000, 2000])
def test_any_rate_draws_at_the_same_scale_and_keeps_every_peak(fs, tmp_path):
    """Above 500 Hz the trace is drawn as a min/max envelope of 4 ms bins: the spikes keep their 1 mV height."""
    pdf = report_pdf(report(spikes_signal(fs=fs, phase_s=0.0013), fs=fs))
    strip = pulses_and_spikes(Page(render(pdf, tmp_path)))[-1]
    assert len(strip["spikes"]) == 9
    assert np.diff(strip["spikes"]) / PX_PER_MM == pytest.approx(np.full(8, 25.0), abs=0.3)
    for top in strip["spike_tops"]:
        # From the baseline's centre to the apex's centre (the round join reaches half a line above it).
        assert (strip["base"] - top - strip["line"] / 2) / PX_PER_MM == pytest.approx(10.0, abs=0.2)


def test_the_grid_has_1_mm_minor_and_5_mm_major_lines_25_mm_to_the_second(a4_page):
    page = a4_page
    # The horizontal major lines are the rows mostly in the major colour (the banner's antialiased edge is not).
    lines_y = np.flatnonzero(page.major.mean(axis=1) > 0.5)
    top, bottom = lines_y.min(), lines_y.max() + 1
    col_share = page.major[top:bottom].mean(axis=0)
    major_x = [(a + b) / 2 for a, b in groups(np.flatnonzero(col_share > 0.5).tolist())]
    assert len(major_x) == 53  # 260 mm of paper: 52 boxes of 5 mm
    five = np.array(major_x[5:]) - np.array(major_x[:-5])
    assert five / PX_PER_MM == pytest.approx(np.full(len(five), 25.0), abs=0.3)
    assert (bottom - top) / PX_PER_MM == pytest.approx(120.0, abs=0.3)
    row_share = page.minor[:, major_x[0].__int__() + 2:int(major_x[1]) - 2].mean(axis=1)
    minor_y = [(a + b) / 2 for a, b in groups(np.flatnonzero(row_share > 0.5).tolist())]
    steps = np.diff(minor_y) / PX_PER_MM
    # Between two major lines four minor ones, 1 mm apart; the 2 mm step is across a major line.
    assert set(np.round(steps).astype(int)) == {1, 2}
    assert steps[np.round(steps) == 1] == pytest.approx(np.ones(int((np.round(steps) == 1).sum())), abs=0.1)


@pytest.mark.parametrize(("paper", "size_pt", "size_mm"), [
    ("A4", (841.89, 595.28), (297.0, 210.0)), ("Letter", (792.0, 612.0), (279.4, 215.9))])
def test_page_size_is_landscape_a4_or_letter_and_the_scale_holds_on_both(paper, size_pt, size_mm, tmp_path):
    pdf = report_pdf(report(spikes_signal()), paper=paper)
    src = tmp_path / "r.pdf"
    src.write_bytes(pdf)
    info = subprocess.run(["pdfinfo", str(src)], check=True, capture_output=True, text=True).stdout
    w, h = (float(v) for v in info.split("Page size:")[1].split("pts")[0].split(" x "))
    assert (w, h) == pytest.approx(size_pt, abs=0.05)
    assert "Pages:           1" in info
    img = render(pdf, tmp_path)
    # pdftoppm rounds the page up to whole pixels (210 mm is 2480.3 px at 300 dpi): within one pixel.
    assert (img.shape[1] / PX_PER_MM, img.shape[0] / PX_PER_MM) == pytest.approx(size_mm, abs=1 / PX_PER_MM)
    rows = pulses_and_spikes(Page(img))
    assert (rows[0]["base"] - rows[0]["top"]) / PX_PER_MM == pytest.approx(10.0, abs=0.2)


def test_the_page_says_preliminary_and_marks_the_computer_statements(tmp_path):
    text = pdf_text(report_pdf(report(spikes_signal())), tmp_path)
    assert "PRELIMINARY" in text and "UNCONFIRMED" in text
    assert "Computer statements (unconfirmed)" in text
    assert "ST/T change" in text and "First-degree AV block, PR 216 ms (> 200) [by measurement]" in text
    assert "HR 60/min" in text and "QT/QTc 400/400 ms" in text and "P/QRS/T axes 60/\u2014/40" in text
    assert "Decision support only" in text and "ab" * 32 in text and "Not confirmed by a reviewer" in text


def test_a_confirmed_amended_report_shows_the_reviewer_the_reason_and_the_comparison(tmp_path):
    data = report(spikes_signal(), status="amended", version=2, reviewer="rev-cy",
                  confirmed_at=dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC),
                  confirmed_statements=(ReportStatement("", "Sinus rhythm, first-degree AV block", "reviewer"),),
                  free_text="Unchanged from 2024.", comparison=("QTc +60 ms",),
                  amendment_reason="PR re-measured by hand")
    text = pdf_text(report_pdf(data), tmp_path)
    assert "AMENDED (version 2)" in text and "Confirmed by rev-cy" in text
    assert "Sinus rhythm, first-degree AV block" in text and "Amendment: PR re-measured by hand" in text
    assert "Computer statements (as analysed)" in text and "QTc +60 ms" in text
    assert "UNCONFIRMED" not in text and "Reviewer rev-cy, confirmed 2026-12-01 10:00" in text


def test_a_record_shorter_than_10_s_is_drawn_as_far_as_it_goes_and_says_so(tmp_path):
    pdf = report_pdf(report(spikes_signal(seconds=8.0)))
    assert "The record is 8.0 s long: the traces end at 8.0 s" in pdf_text(pdf, tmp_path)
    strip = pulses_and_spikes(Page(render(pdf, tmp_path)))[-1]
    assert len(strip["spikes"]) == 7  # 1 s ... 7 s


def test_many_statements_never_run_into_the_ecg(tmp_path):
    many = tuple(ReportStatement(f"S{i}", f"Statement number {i} with a fairly long description", "model")
                 for i in range(80))
    pdf = report_pdf(report(spikes_signal(), computer_statements=many))
    text = pdf_text(pdf, tmp_path)
    assert "more lines: see the result page or the FHIR/HL7 report" in text
    # The grid is untouched: still four pulses, each 10 mm.
    rows = pulses_and_spikes(Page(render(pdf, tmp_path)))
    assert len(rows) == 4


def test_bad_paper_and_bad_report_data_are_refused():
    with pytest.raises(ValueError, match="paper must be one of A4, Letter"):
        report_pdf(report(spikes_signal()), paper="A3")
    with pytest.raises(ReportDataError, match="status must be one of"):
        report(spikes_signal(), status="signed")
    with pytest.raises(ReportDataError, match="needs confirmed_statements, reviewer and confirmed_at"):
        report(spikes_signal(), status="final")
    with pytest.raises(ReportDataError, match="amendment_reason"):
        report(spikes_signal(), status="amended", reviewer="rev-cy", confirmed_at=dt.datetime(2026, 12, 1),
               confirmed_statements=())
    with pytest.raises(ReportDataError, match=r"\(12, n_samples\)"):
        report(spikes_signal()[:8])
    bad = spikes_signal()
    bad[3, 10] = np.nan
    with pytest.raises(ReportDataError, match="finite"):
        report(bad)
