"""A 12-lead ECG drawn on standard ECG paper (25 mm/s, 10 mm/mV) as a Plotly figure for the result page.

Everything sits on one x/y axis pair in "paper" units: x in seconds, y in mV, each printed row shifted down by
3 mV. The page renders the returned figure with the plotly.js that ships inside the plotly package
(:func:`plotly_js_path`), so the page works without internet access.

No Django here: the web layer calls :func:`ecg_paper_figure` and puts the result into the page as JSON.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import plotly
import plotly.graph_objects as go

from mlcore.preprocess import LEADS, N_SAMPLES, TARGET_FS, WINDOW_S, resample

# Paper speed and gain of a standard printout. One small box is 1 mm: 0.04 s wide and 0.1 mV tall.
MM_PER_S = 25.0
MM_PER_MV = 10.0
MINOR_S, MAJOR_S = 1 / MM_PER_S, 5 / MM_PER_S  # 0.04 s, 0.2 s
MINOR_MV, MAJOR_MV = 1 / MM_PER_MV, 5 / MM_PER_MV  # 0.1 mV, 0.5 mV
# Plotly's scaleratio is (pixels per y unit) / (pixels per x unit); 1 mV must span 10 mm where 1 s spans 25 mm.
SCALE_RATIO = MM_PER_MV / MM_PER_S  # 0.4

# The standard 3x4 format: column k shows seconds [2.5k, 2.5k + 2.5) of its three leads, then a lead II strip.
SEGMENT_S = 2.5
GRID_3X4: tuple[tuple[str, ...], ...] = (
    ("I", "aVR", "V1", "V4"),
    ("II", "aVL", "V2", "V5"),
    ("III", "aVF", "V3", "V6"),
)
RHYTHM_LEAD = "II"
ROW_BASELINES_MV: tuple[float, ...] = (0.0, -3.0, -6.0, -9.0)  # 30 mm per row, as on a printed page

# The visible sheet: a 0.6 s left margin holds the calibration pulse; edges fall on major lines.
X_RANGE = (-0.6, 10.2)
Y_RANGE = (-10.5, 1.5)
CAL_STEPS_S = (-0.5, -0.4, -0.2, -0.1)  # baseline from, step up at, step down at, baseline to (0.2 s wide)
CAL_MV = 1.0

EVIDENCE_MIN = 0.2  # weaker evidence is left out: it would tint the whole sheet and bloat the JSON
EVIDENCE_BAND_MV = 2.8  # height of the shaded band behind a lead; rows are 3 mV apart, so bands never touch

INK = "#111111"
GRID_MINOR = "#f6c9c9"
GRID_MAJOR = "#e7898b"
EVIDENCE_COLORSCALE = [
    [0.0, "rgba(255, 176, 0, 0.22)"],
    [0.5, "rgba(255, 110, 0, 0.38)"],
    [1.0, "rgba(214, 25, 25, 0.55)"],
]
MARGIN_PX = {"l": 10, "r": 10, "b": 10}
# A CSS pixel is 1/96 inch, so at this width the sheet measures what a printout does (25 mm per second) on a
# screen at its nominal density. The page never draws it narrower: a phone scrolls the sheet instead.
PX_PER_MM = 96 / 25.4
PAPER_WIDTH_PX = round((X_RANGE[1] - X_RANGE[0]) * MM_PER_S * PX_PER_MM + MARGIN_PX["l"] + MARGIN_PX["r"])  # 1040


@dataclass(frozen=True)
class Overlay:
    """One finding's evidence, as produced by the explanation step on the model's 10 s, 100 Hz window."""

    label: str  # e.g. "MI" or "AFIB"
    display: str  # e.g. "Myocardial infarction"
    lead_maps: np.ndarray  # (12, 1000) in [0, 1], evidence per lead over 10 s at 100 Hz, LEADS order
    lead_relevance: np.ndarray  # (12,), sums to 1


def plotly_js_path() -> Path:
    """The plotly.min.js bundled with the installed plotly package (the version the figure JSON was built for)."""
    return Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"


def ecg_paper_figure(
    signal: np.ndarray,
    fs: float,
    *,
    overlays: dict[str, Overlay] | None = None,
    title: str | None = None,
    width: int = 1100,
) -> dict:
    """Draw a 12-lead ECG on ECG paper: 3x4 leads of 2.5 s each plus a 10 s lead II rhythm strip.

    signal: (12, n) in mV, LEADS order, sampled at ``fs`` Hz (plotted at that rate, not resampled): the window the
    model read (EcgRecord.window_array(), mlcore.window.crop), so that the overlays line up with it. Anything
    longer than 10 s is cropped as mlcore.preprocess.fit_window crops it (the central 10 s); shorter is drawn as is.
    overlays: finding label -> :class:`Overlay`; each adds hidden traces that shade the evidence behind the leads.

    Returns a JSON-serialisable dict::

        {
          "figure": {"data": [...], "layout": {...}},      # plotly figure JSON, as fig.to_plotly_json() gives it
          "overlay_traces": {"MI": [14, 15, ...], ...},     # indices into figure["data"] to toggle visible
          "overlay_lead_relevance": {"MI": [{"lead": "V2", "share": 0.31}, ...], ...},  # sorted, largest first
          "paper_width": 1040,                              # CSS px at 25 mm/s: the narrowest it may be drawn
          "calipers": {"panels": [{lead, x0, x1, y0, y1}, ...], "shared_time": True, "mm_per_s", "mm_per_mv"},
        }

    Trace order in figure["data"]: 0-11 the twelve lead segments in LEADS order (I, II, III, aVR, ..., V6),
    12 the lead II rhythm strip, 13 the calibration pulses, then 13 heatmap traces per overlay (the twelve
    leads in LEADS order, then the rhythm strip), overlays in the order of the ``overlays`` dict. Overlay traces
    start with ``visible=False`` and carry ``meta`` and ``legendgroup`` equal to the overlay's key.
    """
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != len(LEADS) or x.shape[1] < 1:
        raise ValueError(f"Expected a (12, n) signal, got shape {x.shape}.")
    if not fs or not np.isfinite(fs) or fs <= 0:
        raise ValueError(f"Invalid sampling rate: {fs!r}.")
    overlays = overlays or {}

    first, map_t0 = _display_window(x.shape[1], float(fs))
    x = x[:, first:first + round(WINDOW_S * fs)]  # (12, n_display) mV
    t = np.arange(x.shape[1]) / fs  # display seconds; 0 is the first drawn sample

    segments = _segments(t)
    traces: list[dict] = []
    for seg in segments:
        sl = slice(seg.start, seg.stop)
        traces.append(_lead_trace(seg.lead, t[sl], x[LEADS.index(seg.lead), sl], ROW_BASELINES_MV[seg.row]))
    traces.append(_calibration_trace())

    overlay_traces: dict[str, list[int]] = {}
    overlay_relevance: dict[str, list[dict[str, float | str]]] = {}
    for key, ov in overlays.items():
        maps = np.asarray(ov.lead_maps, dtype=np.float64)
        if maps.shape != (len(LEADS), N_SAMPLES):
            raise ValueError(f"Overlay {key!r}: lead_maps must be (12, {N_SAMPLES}), got {maps.shape}.")
        rel = np.asarray(ov.lead_relevance, dtype=np.float64).reshape(-1)
        if rel.shape != (len(LEADS),):
            raise ValueError(f"Overlay {key!r}: lead_relevance must have 12 values, got {rel.shape}.")
        indices = []
        for seg in segments:
            lead_i = LEADS.index(seg.lead)
            # An empty segment (a record shorter than 7.5 s) gets an empty band, so trace indices stay fixed.
            span = (t[seg.start], t[seg.stop - 1] + 1 / fs) if seg.stop > seg.start else (0.0, 0.0)
            indices.append(len(traces))
            traces.append(_evidence_trace(key, ov.display, seg.lead, f"{rel[lead_i]:.0%}", maps[lead_i], map_t0,
                                          span, ROW_BASELINES_MV[seg.row]))
        overlay_traces[key] = indices
        order = np.argsort(-rel, kind="stable")
        overlay_relevance[key] = [{"lead": LEADS[i], "share": round(float(rel[i]), 4)} for i in order]

    return {
        "figure": {"data": traces, "layout": _paper_layout(title, width).to_plotly_json()},
        "overlay_traces": overlay_traces,
        "overlay_lead_relevance": overlay_relevance,
        "paper_width": PAPER_WIDTH_PX,
        # The sheet is one time axis: a caliper may span two leads for a time, not for a voltage.
        "calipers": {"panels": sheet_caliper_panels(), "shared_time": True, "mm_per_s": MM_PER_S,
                     "mm_per_mv": MM_PER_MV},
    }


def _display_window(n: int, fs: float) -> tuple[int, float]:
    """First sample to draw, and the display time (s) of lead_maps[:, 0].

    The overlays come from the model's window (mlcore.preprocess.fit_window: central 10 s at 100 Hz, or the
    record padded equally on both sides), so the drawn crop follows that window and the maps line up with it.
    """
    m = resample(np.zeros((1, n)), fs).shape[-1]  # the record's length at 100 Hz, exactly as the model saw it
    if m > N_SAMPLES:
        model_start_s = ((m - N_SAMPLES) // 2) / TARGET_FS
    else:
        model_start_s = -((N_SAMPLES - m) // 2) / TARGET_FS  # negative: the model's window starts in padding
    n_display = round(WINDOW_S * fs)
    first = min(max(round(model_start_s * fs), 0), n - n_display) if n > n_display else 0
    return first, model_start_s - first / fs


class _Segment(NamedTuple):
    lead: str
    row: int
    start: int  # first sample index (display window)
    stop: int  # one past the last


def _segments(t: np.ndarray) -> list[_Segment]:
    """The twelve 3x4 segments in LEADS order, then the rhythm strip."""
    placed: dict[str, _Segment] = {}
    for row, leads in enumerate(GRID_3X4):
        for col, lead in enumerate(leads):
            # Half-open [2.5k, 2.5k + 2.5): the sample at exactly 2.5 s belongs to the next column.
            start, stop = np.searchsorted(t, [col * SEGMENT_S - 1e-9, (col + 1) * SEGMENT_S - 1e-9])
            placed[lead] = _Segment(lead, row, int(start), int(stop))
    return [placed[lead] for lead in LEADS] + [_Segment(RHYTHM_LEAD, len(GRID_3X4), 0, len(t))]


def _trace(kind: str, **props) -> dict:
    """A trace as plotly.js reads it, built as a plain dict. plotly.graph_objects checks every element of a data
    array one by one (to_scalar_or_list) and deep-copies the figure: that was ~0.55 s of a result page's 0.7 s for
    13 traces of 1,250 points. The layout (a few objects) still goes through go.Layout; the test
    tests/clinical/test_ecgplot.py holds these figures equal to plotly's own validated output."""
    return {"type": kind, **props}


def _lead_trace(lead: str, t: np.ndarray, mv: np.ndarray, baseline: float) -> dict:
    # SVG Scatter rather than Scattergl: 13 paths of a few thousand points draw fast and print crisply.
    return _trace("scatter",
        x=np.round(t, 4).tolist(),
        y=_json_values(mv + baseline, 3),
        customdata=_json_values(mv, 3),  # the unshifted voltage, for the hover text
        mode="lines",
        line={"color": INK, "width": 1.1},
        name=lead,
        meta=lead,
        hovertemplate=f"{lead} · %{{x:.2f}} s · %{{customdata:.2f}} mV<extra></extra>",
        showlegend=False,
    )


def _json_values(a: np.ndarray, decimals: int) -> list[float | None]:
    # NaN would be written as the bare token NaN, which browsers' JSON.parse rejects; None draws a gap instead.
    values = np.round(a, decimals).astype(object)
    values[~np.isfinite(a)] = None
    return values.tolist()


def _calibration_trace() -> dict:
    # One trace, the four pulses separated by None gaps: a 1 mV, 0.2 s step at the start of every row.
    a, up, down, b = CAL_STEPS_S
    xs: list[float | None] = []
    ys: list[float | None] = []
    for base in ROW_BASELINES_MV:
        xs += [a, up, up, down, down, b, None]
        ys += [base, base, base + CAL_MV, base + CAL_MV, base, base, None]
    return _trace("scatter",
        x=xs[:-1], y=ys[:-1], mode="lines", line={"color": INK, "width": 1.4},
        name="1 mV calibration", meta="calibration", hoverinfo="skip", showlegend=False,
    )


def _evidence_trace(
    key: str, display: str, lead: str, share: str, lead_map: np.ndarray, map_t0: float,
    span: tuple[float, float], baseline: float,
) -> dict:
    """A one-row heatmap behind one segment: one cell per 100 Hz map sample, blank where evidence is weak.

    span is the segment's [start, stop) in display seconds; a map sample belongs to it when its centre does.
    """
    map_t = map_t0 + np.arange(N_SAMPLES) / TARGET_FS  # display seconds of each map sample
    eps = 1e-9  # map_t is built by float arithmetic; 5.0 may come out as 4.999999999
    keep = (map_t >= span[0] - eps) & (map_t < span[1] - eps)
    z = np.clip(lead_map[keep], 0.0, 1.0)
    cells = [round(float(v), 3) if v >= EVIDENCE_MIN else None for v in z]
    return _trace("heatmap",
        z=[cells],
        x0=round(float(map_t[keep][0]), 4) if keep.any() else 0.0,
        dx=1 / TARGET_FS,
        y0=baseline,
        dy=EVIDENCE_BAND_MV,
        zmin=EVIDENCE_MIN,
        zmax=1.0,
        zsmooth=False,
        colorscale=EVIDENCE_COLORSCALE,
        showscale=False,
        hoverinfo="skip",  # the ECG trace above keeps the hover
        visible=False,
        name=f"{display} · {lead} ({share})",
        meta=key,
        legendgroup=key,
        showlegend=False,
    )


def _paper_layout(title: str | None, width: int) -> go.Layout:
    top = 40 if title else 10
    px_per_s = (width - MARGIN_PX["l"] - MARGIN_PX["r"]) / (X_RANGE[1] - X_RANGE[0])
    plot_height = px_per_s * SCALE_RATIO * (Y_RANGE[1] - Y_RANGE[0])  # keeps 1 mm == 1 mm on screen
    axis_common = {"showticklabels": False, "ticks": "", "zeroline": False, "showline": False, "tick0": 0}
    annotations = [
        _label(lead, col * SEGMENT_S, ROW_BASELINES_MV[row])
        for row, leads in enumerate(GRID_3X4)
        for col, lead in enumerate(leads)
    ]
    annotations.append(_label(RHYTHM_LEAD, 0.0, ROW_BASELINES_MV[-1]))
    # Short ticks where one column of leads hands over to the next, as printed by ECG carts.
    separators = [
        {"type": "line", "x0": col * SEGMENT_S, "x1": col * SEGMENT_S, "y0": base - 0.4, "y1": base + 0.4,
         "line": {"color": INK, "width": 1.2}, "layer": "above"}
        for base in ROW_BASELINES_MV[:len(GRID_3X4)]
        for col in range(1, len(GRID_3X4[0]))
    ]
    return go.Layout(
        template="none",  # no theme: every colour here is set on purpose, and the JSON stays small
        title={"text": title, "x": 0.01, "xanchor": "left"} if title else None,
        width=width,
        height=round(plot_height) + top + MARGIN_PX["b"],
        margin={**MARGIN_PX, "t": top},
        paper_bgcolor="#fff",
        plot_bgcolor="#fff",
        showlegend=False,
        dragmode="pan",
        hovermode="closest",
        modebar={"remove": ["select2d", "lasso2d", "autoScale2d", "toggleSpikelines",
                            "hoverClosestCartesian", "hoverCompareCartesian"]},
        xaxis={
            **axis_common, "range": list(X_RANGE), "dtick": MAJOR_S, "showgrid": True,
            "gridcolor": GRID_MAJOR, "gridwidth": 1,
            "minor": {"dtick": MINOR_S, "tick0": 0, "showgrid": True, "gridcolor": GRID_MINOR, "gridwidth": 0.5},
        },
        yaxis={
            **axis_common, "range": list(Y_RANGE), "dtick": MAJOR_MV, "showgrid": True,
            "gridcolor": GRID_MAJOR, "gridwidth": 1,
            "minor": {"dtick": MINOR_MV, "tick0": 0, "showgrid": True, "gridcolor": GRID_MINOR, "gridwidth": 0.5},
            "scaleanchor": "x", "scaleratio": SCALE_RATIO,
        },
        annotations=annotations,
        shapes=separators,
    )


def _label(text: str, x: float, baseline: float) -> dict:
    return {
        "text": text, "x": x + 0.05, "y": baseline + 1.05, "xanchor": "left", "yanchor": "bottom",
        "showarrow": False, "font": {"size": 13, "color": INK, "family": "Arial, sans-serif"},
    }


# The overview strip: the whole record's lead II, small, with the analysed window shaded, to pick another window.
OVERVIEW_POINTS = 4000  # min/max pairs of 2,000 buckets: every QRS of a 5 minute record still shows as a spike
OVERVIEW_HEIGHT_PX = 150
WINDOW_FILL = "rgba(11, 92, 173, 0.16)"
WINDOW_EDGE = "#0b5cad"


def overview_figure(signal: np.ndarray, fs: float, *, start_s: float, end_s: float, lead: str = RHYTHM_LEAD) -> dict:
    """The whole record's ``lead`` (default II) as a strip over its full length, [start_s, end_s) shaded.

    Decimated to at most OVERVIEW_POINTS points by keeping each bucket's minimum and maximum, so that a spike is
    never averaged away. Returns {"figure": plotly JSON, "record_s", "window_s", "start_s"}; the window is the first
    shape (the page adds a dashed one where a person points at another start).
    """
    x = np.asarray(signal, dtype=np.float64)[LEADS.index(lead)]  # (n,) mV
    n = x.shape[0]
    record_s = n / fs
    buckets = max(1, min(n, OVERVIEW_POINTS // 2))
    edges = np.linspace(0, n, buckets + 1).astype(int)
    t: list[float] = []
    y: list[float] = []
    for a, b in zip(edges[:-1], edges[1:]):
        if b <= a:
            continue
        seg = x[a:b]
        lo, hi = int(np.argmin(seg)), int(np.argmax(seg))
        for i in sorted({lo, hi}):  # in time order, so the line goes up and down as the signal does
            t.append(round((a + i) / fs, 3))
            y.append(round(float(seg[i]), 3))
    median = float(np.median(x)) if n else 0.0
    spread = float(np.percentile(np.abs(x - median), 99.5)) if n else 1.0
    half = max(spread, 0.5) * 1.15
    tick = next(step for step in (1, 2, 5, 10, 15, 30, 60) if record_s / step <= 12)
    window = {"type": "rect", "xref": "x", "yref": "paper", "x0": start_s, "x1": end_s, "y0": 0, "y1": 1,
              "fillcolor": WINDOW_FILL, "line": {"color": WINDOW_EDGE, "width": 2}, "layer": "below"}
    figure = {
        "data": [_trace("scatter", x=t, y=y, mode="lines", line={"color": INK, "width": 1}, name=lead, meta=lead,
                         hovertemplate="%{x:.1f} s<extra></extra>", showlegend=False)],
        "layout": go.Layout(
            template="none", height=OVERVIEW_HEIGHT_PX, margin={"l": 36, "r": 12, "t": 8, "b": 34},
            paper_bgcolor="#fff", plot_bgcolor="#fff", showlegend=False, dragmode=False, hovermode="x",
            xaxis={"range": [0, record_s], "dtick": tick, "tick0": 0, "ticksuffix": " s", "showgrid": True,
                   "gridcolor": "#e4e9ee", "zeroline": False, "fixedrange": True,
                   "tickfont": {"size": 14, "color": INK, "family": "Arial, sans-serif"}},
            yaxis={"range": [median - half, median + half], "showticklabels": False, "showgrid": False,
                   "zeroline": False, "fixedrange": True},
            shapes=[window],
            annotations=[{"text": lead, "x": 0, "xref": "paper", "xanchor": "right", "xshift": -6, "y": 0.5,
                          "yref": "paper", "showarrow": False,
                          "font": {"size": 14, "color": INK, "family": "Arial, sans-serif"}},
                         # Above the shaded window, on a white ground so the trace never hides it.
                         {"text": "<b>Analysed</b>", "x": start_s, "xref": "x", "xanchor": "left", "xshift": 4,
                          "y": 1, "yref": "paper", "yanchor": "top", "yshift": -3, "showarrow": False,
                          "bgcolor": "rgba(255, 255, 255, 0.9)",
                          "font": {"size": 13, "color": WINDOW_EDGE, "family": "Arial, sans-serif"}}],
        ).to_plotly_json(),
    }
    return {"figure": figure, "record_s": round(record_s, 3), "window_s": float(WINDOW_S),
            "start_s": start_s}


# The median beats: one beat per lead in the 3x4 layout of the sheet above, on the same paper, drawn at 50 mm/s (as
# interpretation programs print their median complexes) so that a 40 ms PR segment is 2 mm wide, not 1 mm.
MEDIAN_MM_PER_S = 50.0
MEDIAN_SCALE_RATIO = MM_PER_MV / MEDIAN_MM_PER_S  # 0.2
MEDIAN_MAJOR_S, MEDIAN_MINOR_S = 5 / MEDIAN_MM_PER_S, 1 / MEDIAN_MM_PER_S  # 0.1 s, 0.02 s
MEDIAN_GAP_S = 0.1  # between two columns of beats: one major box
MEDIAN_ROW_HALF_MV = 1.5  # each row owns its baseline +- this (rows are 3 mV apart)
# Above the first row, a band for the interval bars (PR and QRS on one level, QT on the next): the marks say where
# each interval was measured, the bars say which interval that is.
BAR_LEVELS_MV = (1.75, 2.45)
MEDIAN_Y_TOP_MV = 3.2
MEDIAN_MARGIN_PX = {"l": 10, "r": 10, "b": 10, "t": 10}
BEAT_BEFORE_S, BEAT_AFTER_S = 0.12, 0.16  # drawn before P onset and after T end (see _beat_crop)
BEAT_NO_P_S, BEAT_NO_T_S = 0.3, 0.45


@dataclass(frozen=True)
class FiducialMark:
    key: str  # mlcore.measure's fiducial name
    label: str
    color: str
    dash: str


# Vertical marks at the global fiducials, one colour per wave; the page's legend uses the same colours and labels.
FIDUCIAL_MARKS = (
    FiducialMark("p_on", "P onset", "#1b7f3b", "solid"),
    FiducialMark("p_off", "P offset", "#1b7f3b", "dash"),
    FiducialMark("qrs_on", "QRS onset", "#0b5cad", "solid"),
    FiducialMark("qrs_off", "QRS offset (J)", "#0b5cad", "dash"),
    FiducialMark("j60", "J+60 ms", "#b35c00", "dot"),
    FiducialMark("t_off", "T end", "#6a3fa0", "solid"),
)
BAR_COLOR = "#13202b"


def median_beats_figure(
    leads: dict[str, list[float | None]],
    *,
    beats_fs: float,
    fs: float,
    fiducials: dict[str, int | None],
    intervals_ms: dict[str, int | None],
) -> dict:
    """Draw the median beat of each lead (3x4, as GRID_3X4) with vertical marks at the global fiducials.

    leads: lead -> mV samples at ``beats_fs`` (the stored median beats, decimated from the record's rate ``fs``);
    fiducials: mlcore.measure's global fiducials, sample indices at ``fs`` into the median beats (None: not found,
    no mark); intervals_ms: {"pr", "qrs", "qt"} in ms or None, written on the bars above the first row.

    Drawn from a little before P onset to a little after T end (see _beat_crop), the same stretch in every lead. x is
    seconds from the first drawn sample plus the column's offset, y is mV with each row 3 mV down, so within one
    lead a difference in x is a difference in time. Returns {"figure", "paper_width", "start_s", "calipers",
    "marks"}: start_s is the time of the first drawn sample in the stored beat, "calipers" names each lead's box
    ({lead, x0, x1, y0, y1}) and "marks" the fiducials drawn ({key, label, color, dash, ms}: ms from the stored
    beat's start).
    """
    if not beats_fs or beats_fs <= 0 or not fs or fs <= 0:
        raise ValueError(f"Invalid sampling rates: beats {beats_fs!r}, record {fs!r}.")
    n = max((len(v) for v in leads.values()), default=0)
    if n < 2:
        raise ValueError("No median beat samples to draw.")
    at_s = {m.key: fiducials[m.key] / fs for m in FIDUCIAL_MARKS if fiducials.get(m.key) is not None}
    j0, j1 = _beat_crop(at_s, n, beats_fs)
    start_s, shown_s = j0 / beats_fs, (j1 - j0) / beats_fs
    pitch_s = math.ceil(round((shown_s + MEDIAN_GAP_S) / MEDIAN_MAJOR_S, 6)) * MEDIAN_MAJOR_S  # columns on major lines
    bases = ROW_BASELINES_MV[:len(GRID_3X4)]
    traces: list[dict] = []
    panels: list[dict] = []
    annotations: list[dict] = []
    for row, names in enumerate(GRID_3X4):
        for col, lead in enumerate(names):
            x0 = col * pitch_s
            mv = np.asarray([np.nan if v is None else v for v in (leads.get(lead) or [])[j0:j1]], dtype=np.float64)
            # x0/dx instead of 325 x values; 10 µV steps are 0.1 mm on the paper, finer than a screen pixel.
            traces.append(_trace("scatter",
                x0=round(x0, 6), dx=1 / beats_fs, y=_json_values(mv + bases[row], 2), mode="lines",
                line={"color": INK, "width": 1.4}, name=lead, meta=lead, hoverinfo="skip", showlegend=False))
            panels.append({"lead": lead, "x0": round(x0, 6), "x1": round(x0 + shown_s, 6),
                           "y0": bases[row] - MEDIAN_ROW_HALF_MV, "y1": bases[row] + MEDIAN_ROW_HALF_MV})
            annotations.append({**_label(lead, x0, bases[row]), "x": round(x0 + 0.03, 5), "y": bases[row] + 0.6})

    y_bottom = bases[-1] - MEDIAN_ROW_HALF_MV
    y_marks_top = bases[0] + MEDIAN_ROW_HALF_MV
    # One trace per mark and per bar, its four columns joined by None gaps: a few hundred bytes where 36 layout
    # shapes took 8 KB of the page.
    columns = range(len(GRID_3X4[0]))
    marks: list[dict] = []
    at_s = {k: v - start_s for k, v in at_s.items()}  # seconds from the first drawn sample
    for m in FIDUCIAL_MARKS:
        if m.key not in at_s:
            continue
        marks.append({"key": m.key, "label": m.label, "color": m.color, "dash": m.dash,
                      "ms": round((at_s[m.key] + start_s) * 1000)})
        xs = [round(col * pitch_s + at_s[m.key], 5) for col in columns]
        traces.append(_gapped(xs, xs, [y_bottom] * len(xs), [y_marks_top] * len(xs),
                              line={"color": m.color, "width": 1.6, "dash": m.dash}, name=m.label, meta=m.key))

    bars = (("pr", "PR", "p_on", "qrs_on", 0, "right"), ("qrs", "QRS", "qrs_on", "qrs_off", 0, "left"),
            ("qt", "QT", "qrs_on", "t_off", 1, "center"))
    for key, name, a, b, level, anchor in bars:
        if a not in at_s or b not in at_s:
            continue
        y = BAR_LEVELS_MV[level]
        value = intervals_ms.get(key)
        text = f"<b>{name} {value} ms</b>" if value is not None else f"<b>{name}</b>"
        xa = [round(col * pitch_s + at_s[a], 5) for col in columns]
        xb = [round(col * pitch_s + at_s[b], 5) for col in columns]
        traces.append(_gapped(xa, xb, [y] * len(xa), [y] * len(xa), line={"color": BAR_COLOR, "width": 3},
                              name=name, meta=f"bar-{key}"))
        for ca, cb in zip(xa, xb):
            # PR's label ends at the QRS onset and QRS's starts there, so the two never overlap.
            x_text = {"right": cb, "left": ca, "center": (ca + cb) / 2}[anchor]
            annotations.append({"text": text, "x": round(x_text, 5), "y": y, "xanchor": anchor, "yanchor": "bottom",
                                "xshift": {"right": -2, "left": 2, "center": 0}[anchor], "showarrow": False,
                                "font": {"size": 12, "color": BAR_COLOR, "family": "Arial, sans-serif"}})

    x_range = (-MEDIAN_GAP_S / 2, len(GRID_3X4[0]) * pitch_s - MEDIAN_GAP_S / 2)
    y_range = (y_bottom - 0.2, MEDIAN_Y_TOP_MV)
    width = round((x_range[1] - x_range[0]) * MEDIAN_MM_PER_S * PX_PER_MM
                  + MEDIAN_MARGIN_PX["l"] + MEDIAN_MARGIN_PX["r"])
    px_per_s = (width - MEDIAN_MARGIN_PX["l"] - MEDIAN_MARGIN_PX["r"]) / (x_range[1] - x_range[0])
    height = round(px_per_s * MEDIAN_SCALE_RATIO * (y_range[1] - y_range[0])) + MEDIAN_MARGIN_PX["t"] \
        + MEDIAN_MARGIN_PX["b"]
    axis_common = {"showticklabels": False, "ticks": "", "zeroline": False, "showline": False, "tick0": 0,
                   "showgrid": True, "gridcolor": GRID_MAJOR, "gridwidth": 1}
    layout = go.Layout(
        template="none", width=width, height=height, margin=MEDIAN_MARGIN_PX, paper_bgcolor="#fff",
        plot_bgcolor="#fff", showlegend=False, dragmode=False, hovermode=False,
        xaxis={**axis_common, "range": list(x_range), "dtick": MEDIAN_MAJOR_S, "fixedrange": True,
               "minor": {"dtick": MEDIAN_MINOR_S, "tick0": 0, "showgrid": True, "gridcolor": GRID_MINOR,
                         "gridwidth": 0.5}},
        yaxis={**axis_common, "range": list(y_range), "dtick": MAJOR_MV, "fixedrange": True,
               "minor": {"dtick": MINOR_MV, "tick0": 0, "showgrid": True, "gridcolor": GRID_MINOR,
                         "gridwidth": 0.5},
               "scaleanchor": "x", "scaleratio": MEDIAN_SCALE_RATIO},
        annotations=annotations,
    )
    return {"figure": {"data": traces, "layout": layout.to_plotly_json()}, "paper_width": width,
            "start_s": round(start_s, 6),
            "calipers": {"panels": panels, "shared_time": False, "mm_per_s": MEDIAN_MM_PER_S,
                         "mm_per_mv": MM_PER_MV},
            "marks": marks}


def _beat_crop(at_s: dict[str, float], n: int, beats_fs: float) -> tuple[int, int]:
    """The stored samples [j0, j1) to draw: from BEAT_BEFORE_S before P onset to BEAT_AFTER_S after T end.

    The stored beat runs 0.5 s before R to 0.8 s after it; the rest is baseline or a neighbouring beat's waves, and
    leaving it out draws the beats about half as large again in the same card. Without a P onset (or a T end)
    the crop reaches BEAT_NO_P_S before the QRS onset (BEAT_NO_T_S after the QRS offset), where they would be.
    """
    qrs_on, qrs_off = at_s.get("qrs_on"), at_s.get("qrs_off")
    if qrs_on is None or qrs_off is None:
        return 0, n
    start = at_s["p_on"] - BEAT_BEFORE_S if "p_on" in at_s else qrs_on - BEAT_NO_P_S
    end = at_s["t_off"] + BEAT_AFTER_S if "t_off" in at_s else qrs_off + BEAT_NO_T_S
    j0 = max(0, math.floor(start * beats_fs))
    return j0, max(j0 + 2, min(n, math.ceil(end * beats_fs) + 1))


def _gapped(x0: list[float], x1: list[float], y0: list[float], y1: list[float], **style) -> dict:
    """Line segments (x0[i], y0[i]) - (x1[i], y1[i]) as one trace, separated by None gaps."""
    xs: list[float | None] = []
    ys: list[float | None] = []
    for a, b, c, d in zip(x0, x1, y0, y1):
        xs += [a, b, None]
        ys += [c, d, None]
    return _trace("scatter", x=xs[:-1], y=ys[:-1], mode="lines", hoverinfo="skip", showlegend=False, **style)


def sheet_caliper_panels() -> list[dict]:
    """The lead boxes of :func:`ecg_paper_figure`'s sheet, for the page's calipers ({lead, x0, x1, y0, y1})."""
    half = 1.5  # rows are 3 mV apart
    panels = [{"lead": lead, "x0": col * SEGMENT_S, "x1": (col + 1) * SEGMENT_S,
               "y0": ROW_BASELINES_MV[row] - half, "y1": ROW_BASELINES_MV[row] + half}
              for row, leads in enumerate(GRID_3X4) for col, lead in enumerate(leads)]
    panels.append({"lead": RHYTHM_LEAD, "x0": 0.0, "x1": WINDOW_S, "y0": ROW_BASELINES_MV[-1] - half,
                   "y1": ROW_BASELINES_MV[-1] + half})
    return panels
