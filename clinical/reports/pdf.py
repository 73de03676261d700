"""The printed 12-lead: one landscape page, standard ECG paper at true scale, traces as vector paths.

Scale (standard ECG paper; AHA/ACCF/HRS recommendations for the standardization and interpretation of the ECG,
Part I, Kligfield et al., Circulation 2007): 25 mm/s, 10 mm/mV, 1 mm minor and 5 mm major grid lines, a 1 mV
calibration pulse (10 mm tall; here 0.2 s = 5 mm wide) at the start of each row, 3 rows x 4 columns of 2.5 s
(I, aVR, V1, V4 / II, aVL, V2, V5 / III, aVF, V3, V6) and a 10 s lead II rhythm strip.

True scale needs the page printed at 100 %: the PDF asks viewers not to fit it to the paper (PrintScaling None),
and the footer says so.
"""
from __future__ import annotations

import io
from datetime import datetime

import numpy as np
from reportlab.lib.colors import Color
from reportlab.lib.pagesizes import A4, landscape, letter
from reportlab.lib.utils import simpleSplit
from reportlab.pdfbase.pdfdoc import PDFName
from reportlab.pdfgen import canvas

from clinical.reports.data import AMENDED, PRELIMINARY, ReportData

PT_PER_MM = 72 / 25.4
MM_PER_S = 25.0
MM_PER_MV = 10.0
COLUMN_S = 2.5
STRIP_S = 10.0
LAYOUT = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
RHYTHM_LEAD = "II"
PAPERS = {"A4": landscape(A4), "Letter": landscape(letter)}

ROW_MM = 30.0  # each of the 4 rows: baseline 17 mm below its top, so +1.7 / -1.3 mV fit inside it
BASELINE_MM = 17.0
PULSE_AREA_MM = 10.0  # before the traces: 2.5 mm baseline, the 5 mm pulse, 2.5 mm baseline
GRID_W_MM = PULSE_AREA_MM + STRIP_S * MM_PER_S  # 260 mm
GRID_H_MM = ROW_MM * 4  # 120 mm
GRID_BOTTOM_MM = 20.0
MARGIN_MM = 7.0
# 4 ms bins: 0.1 mm of paper at 25 mm/s, under the 0.25 mm line width; records up to 500 Hz are drawn sample by sample.
ENVELOPE_BIN_S = 0.004

MINOR = Color(1.0, 0.80, 0.80)
MAJOR = Color(0.93, 0.50, 0.50)
TRACE = Color(0, 0, 0)
BANNER = Color(0.75, 0.0, 0.0)
SEX = {"M": "male", "F": "female", "U": "sex unknown"}
LINE = (("HR", ("heart_rate_bpm",), "/min"), ("PR", ("pr_ms",), " ms"), ("QRS", ("qrs_ms",), " ms"),
        ("QT/QTc", ("qt_ms", "qtc_bazett_ms"), " ms (Bazett)"), ("P/QRS/T axes", ("p_axis_deg", "qrs_axis_deg",
                                                                                 "t_axis_deg"), "\u00b0"))


def mm(v: float) -> float:
    return v * PT_PER_MM


def _number(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def measurement_line(measurements: dict, reviewer_measured: tuple[str, ...] = ()) -> str:
    """ "HR 72/min  PR 160 ms  QRS 92 ms  QT/QTc 380/416 ms (Bazett)  P/QRS/T axes 60/45/40°", "—" where a value
    was not measured, "*" after a value the reviewer measured."""
    parts = []
    for label, keys, unit in LINE:
        values = "/".join("\u2014" if measurements.get(k) is None
                          else _number(measurements[k]) + ("*" if k in reviewer_measured else "") for k in keys)
        parts.append(f"{label} {values}{unit}")
    return "   ".join(parts)


def _when(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M %Z").strip() if t else ""


def _grid(c: canvas.Canvas, x0: float, y0: float) -> None:
    """Minor lines every 1 mm, then major every 5 mm over them, from (x0, y0) (points) over GRID_W x GRID_H."""
    w, h = mm(GRID_W_MM), mm(GRID_H_MM)
    for color, step, width in ((MINOR, 1, 0.1), (MAJOR, 5, 0.2)):
        c.setStrokeColor(color)
        c.setLineWidth(mm(width))
        p = c.beginPath()
        for i in range(0, int(GRID_W_MM) + 1, step):
            p.moveTo(x0 + mm(i), y0)
            p.lineTo(x0 + mm(i), y0 + h)
        for j in range(0, int(GRID_H_MM) + 1, step):
            p.moveTo(x0, y0 + mm(j))
            p.lineTo(x0 + w, y0 + mm(j))
        c.drawPath(p, stroke=1, fill=0)


def _pulse(c: canvas.Canvas, x: float, base: float) -> None:
    """The 1 mV calibration pulse: 10 mm up for 0.2 s (5 mm), between two 2.5 mm stretches of baseline."""
    p = c.beginPath()
    p.moveTo(x, base)
    p.lineTo(x + mm(2.5), base)
    p.lineTo(x + mm(2.5), base + mm(1.0 * MM_PER_MV))
    p.lineTo(x + mm(2.5 + 0.2 * MM_PER_S), base + mm(1.0 * MM_PER_MV))
    p.lineTo(x + mm(2.5 + 0.2 * MM_PER_S), base)
    p.lineTo(x + mm(PULSE_AREA_MM), base)
    c.drawPath(p, stroke=1, fill=0)


def envelope(samples: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """(t in s, value) to draw: every sample up to ENVELOPE_BIN_S resolution; above it, the minimum and the maximum
    of each bin in their order, so no peak is lost (a pacing spike keeps its height) while a 2000 Hz record does
    not put 20,000 points per lead into the page."""
    t = np.arange(samples.size) / fs
    k = int(round(fs * ENVELOPE_BIN_S))
    if k < 3:
        return t, samples
    n = samples.size // k * k
    bins = samples[:n].reshape(-1, k)
    lo, hi = bins.argmin(axis=1), bins.argmax(axis=1)
    first, second = np.minimum(lo, hi), np.maximum(lo, hi)
    idx = (np.arange(bins.shape[0]) * k)[:, None] + np.stack([first, second], axis=1)
    idx = np.concatenate([idx.ravel(), np.arange(n, samples.size)])
    return t[idx], samples[idx]


def _trace(c: canvas.Canvas, samples: np.ndarray, fs: float, x: float, base: float, offset_mv: float) -> None:
    if samples.size < 2:
        return
    t, v = envelope(samples, fs)
    xs = x + mm(t * MM_PER_S)
    ys = base + mm((v - offset_mv) * MM_PER_MV)
    p = c.beginPath()
    p.moveTo(float(xs[0]), float(ys[0]))
    for xi, yi in zip(xs[1:].tolist(), ys[1:].tolist()):
        p.lineTo(xi, yi)
    c.drawPath(p, stroke=1, fill=0)


def _traces(c: canvas.Canvas, data: ReportData, x0: float, y0: float) -> None:
    sig, fs, leads = data.signal_mv, data.fs, list(data.leads)
    # Each lead is drawn about its median over the window, so a DC offset in the file does not push it off its row;
    # the waveform's shape and amplitude are untouched.
    offsets = np.median(sig, axis=1)
    top = y0 + mm(GRID_H_MM)
    per_col = int(round(COLUMN_S * fs))
    c.saveState()
    clip = c.beginPath()
    clip.rect(x0, y0, mm(GRID_W_MM), mm(GRID_H_MM))
    c.clipPath(clip, stroke=0, fill=0)
    c.setStrokeColor(TRACE)
    c.setLineWidth(mm(0.25))
    c.setLineJoin(1)
    c.setFont("Helvetica-Bold", 8)
    c.setFillColor(TRACE)
    for r, row in enumerate(LAYOUT + ((RHYTHM_LEAD,),)):
        base = top - mm(r * ROW_MM + BASELINE_MM)
        _pulse(c, x0, base)
        for col, lead in enumerate(row):
            i = leads.index(lead)
            xs = x0 + mm(PULSE_AREA_MM + col * COLUMN_S * MM_PER_S)
            if len(row) == 1:  # the rhythm strip: the whole window
                seg = sig[i]
            else:
                seg = sig[i, col * per_col:(col + 1) * per_col + 1]  # +1: each column meets the next
            _trace(c, seg, fs, xs, base, float(offsets[i]))
            c.drawString(xs + mm(1), base + mm(ROW_MM - BASELINE_MM - 4.5), lead)
            if col:  # the column boundary, as printed 12-leads mark it
                c.line(xs, base - mm(2), xs, base + mm(2))
    c.restoreState()


def _header_lines(data: ReportData) -> list[tuple[str, str]]:
    """The statement block as (style, text): "h" a heading, "b" a bullet, "t" plain text."""
    out: list[tuple[str, str]] = []
    if data.confirmed_statements is not None:
        out.append(("h", f"Confirmed by {data.reviewer}" + (f" (amended, version {data.version})"
                                                             if data.status == AMENDED else "")))
        out += [("b", s.display) for s in data.confirmed_statements] or [("t", "No statements.")]
        if data.free_text.strip():
            out.append(("t", data.free_text.strip()))
        if data.status == AMENDED:
            out.append(("t", f"Amendment: {data.amendment_reason.strip()}"))
    title = "Computer statements (unconfirmed)" if data.status == PRELIMINARY else "Computer statements (as analysed)"
    out.append(("h", title))
    out += ([("b", s.display + (" [by measurement]" if s.origin == "measurement" else ""))
             for s in data.computer_statements] or [("t", "Nothing flagged.")])
    if data.comparison:
        out.append(("h", "Compared with the prior ECG"))
        out += [("b", line) for line in data.comparison]
    return out


def _statements(c: canvas.Canvas, lines: list[tuple[str, str]], x: float, y_top: float, width: float,
                height: float) -> None:
    """Flow the statement block into two columns; smaller type if it does not fit, and if it still does not, the
    last line says how many are left out rather than running into the ECG."""
    col_w = (width - mm(6)) / 2
    for size in (8.0, 7.0, 6.0):
        lead = size * 1.2
        wrapped: list[tuple[str, str]] = []
        for style, text in lines:
            font = "Helvetica-Bold" if style == "h" else "Helvetica"
            prefix = "\u2022 " if style == "b" else ""
            for k, part in enumerate(simpleSplit(prefix + text, font, size, col_w - mm(3))):
                wrapped.append((style, ("   " if k and style == "b" else "") + part))
        per_col = int(height // lead)
        if len(wrapped) <= 2 * per_col:
            break
    if len(wrapped) > 2 * per_col:
        left_out = len(wrapped) - (2 * per_col - 1)
        wrapped = wrapped[:2 * per_col - 1] + [("h", f"... {left_out} more lines: see the result page or the "
                                                     "FHIR/HL7 report")]
    c.setFillColor(TRACE)
    for n, (style, text) in enumerate(wrapped):
        col, row = divmod(n, per_col)
        c.setFont("Helvetica-Bold" if style == "h" else "Helvetica", size)
        c.drawString(x + col * (col_w + mm(6)), y_top - (row + 1) * lead, text)


def report_pdf(data: ReportData, *, paper: str = "A4") -> bytes:
    """The report as a one-page landscape PDF on A4 or Letter paper."""
    if paper not in PAPERS:
        raise ValueError(f"paper must be one of {', '.join(PAPERS)}; got {paper!r}")
    page_w, page_h = PAPERS[paper]
    buf = io.BytesIO()
    # invariant: no creation time or random id in the file, so the same report is the same bytes.
    c = canvas.Canvas(buf, pagesize=(page_w, page_h), invariant=1, pageCompression=1)
    c.setViewerPreference("PrintScaling", PDFName("None"))
    c.setTitle(f"ECG report {data.patient_pseudonym} ({data.status})")
    c.setAuthor("ECG-DS")
    c.setSubject("12-lead ECG report: decision support only")

    x0 = (page_w - mm(GRID_W_MM)) / 2
    y0 = mm(GRID_BOTTOM_MM)
    right = x0 + mm(GRID_W_MM)
    top = page_h - mm(MARGIN_MM)

    # Title and status banner.
    c.setFillColor(TRACE)
    c.setFont("Helvetica-Bold", 12)
    c.drawString(x0, top - 12, "12-lead ECG report")
    banner = {"preliminary": "PRELIMINARY \u2014 UNCONFIRMED: not yet read by a clinician",
              "final": f"FINAL \u2014 confirmed by {data.reviewer}",
              "amended": f"AMENDED (version {data.version}) \u2014 confirmed by {data.reviewer}"}[data.status]
    c.setFont("Helvetica-Bold", 10)
    bw = c.stringWidth(banner, "Helvetica-Bold", 10) + 12
    if data.status == PRELIMINARY:
        c.setFillColor(BANNER)
        c.rect(right - bw, top - 15, bw, 15, stroke=0, fill=1)
        c.setFillColor(Color(1, 1, 1))
    c.drawString(right - bw + 6, top - 11, banner)

    # Patient line and measurement line.
    c.setFillColor(TRACE)
    c.setFont("Helvetica", 9)
    age = "age unknown" if data.age is None else f"{data.age} y"
    acquired = _when(data.acquired_at) or "not stated by the file"
    c.drawString(x0, top - 27, f"Patient {data.patient_pseudonym}   {age}, {SEX.get(data.sex, data.sex)}   "
                               f"Acquired {acquired}   Uploaded {_when(data.uploaded_at)}   ECG {data.record_id}")
    c.setFont("Helvetica-Bold", 10)
    c.drawString(x0, top - 40, measurement_line(data.measurements, data.reviewer_measured))
    notes = []
    if any(k in data.reviewer_measured for _, keys, _ in LINE for k in keys):
        notes.append(f"* measured by the reviewer ({data.reviewer})")
    if data.window_note:
        notes.append(data.window_note)
    if data.duration_s < STRIP_S - 1e-9:
        notes.append(f"The record is {data.duration_s:.1f} s long: the traces end at {data.duration_s:.1f} s and "
                     "the rest of the page is left blank.")
    c.setFont("Helvetica-Oblique", 8)
    c.drawString(x0, top - 51, "   ".join(notes) or f"{data.fs:g} Hz, {data.duration_s:.1f} s")

    # Statements between the header and the grid.
    grid_top = y0 + mm(GRID_H_MM)
    _statements(c, _header_lines(data), x0, top - 55, mm(GRID_W_MM), (top - 55) - (grid_top + mm(2)))

    _grid(c, x0, y0)
    _traces(c, data, x0, y0)

    # Footer.
    c.setFillColor(TRACE)
    c.setFont("Helvetica", 7.5)
    who = (f"Reviewer {data.reviewer}, confirmed {_when(data.confirmed_at)}" if data.reviewer
           else "Not confirmed by a reviewer")
    c.drawString(x0, y0 - mm(4), f"{who}   Report version {data.version}   Model {data.model_version}   "
                                 f"Calibration {data.calibration_version}   {data.fs:g} Hz")
    c.drawString(x0, y0 - mm(7.5), f"Audit reference (sha256 of the result's audit event): "
                                   f"{data.audit_reference or 'none recorded'}")
    c.setFont("Helvetica-Bold", 7.5)
    c.drawString(x0, y0 - mm(11), "Decision support only: every result needs a clinician's interpretation.")
    c.setFont("Helvetica", 7.5)
    c.drawRightString(right, y0 - mm(11), "25 mm/s   10 mm/mV   grid 1 mm / 5 mm   print at 100 % (no fit to page)")
    c.showPage()
    c.save()
    return buf.getvalue()
