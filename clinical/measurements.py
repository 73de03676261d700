"""This system's measurements of an ECG (mlcore.measure) as stored on the record, and the criteria statements that
follow from them (mlcore.criteria) as the action table's ``measure:CODE`` keys: the one place that maps one to the
other.
"""
from __future__ import annotations

import logging
import math

import numpy as np

from clinical.ecgplot import median_beats_figure
from clinical.recommend import FindingInput
from mlcore import measure as mlmeasure
from mlcore.criteria import criteria_statements

log = logging.getLogger(__name__)

# What the API's result and the inference.complete audit carry (mlcore.measure.KEYS less the two extra QTc formulas,
# which stay stored: the criteria read Framingham's first).
API_KEYS = ("heart_rate_bpm", "rr_ms", "p_ms", "pr_ms", "qrs_ms", "qt_ms", "qtc_bazett_ms", "qtc_fridericia_ms",
            "p_axis_deg", "qrs_axis_deg", "t_axis_deg", "st_j_uv", "st_j60_uv")
# The median beats are stored at no more than this rate (the fiducials stay sample indices at the record's own
# rate): 12 leads x 1.3 s at 250 Hz is about 25 KB of JSON, at 1000 Hz it would be 100 KB per row.
MEDIAN_BEATS_MAX_HZ = 250.0
NOT_MEASURED_YET = "measured only for ECGs uploaded since measurements were added"

# mlcore.criteria's statement codes -> the action table's measure: codes (clinical/recommendations.json). A code
# not listed here is passed on as it is and, having no rule, gets the generic "abnormal ECG: over-read" action.
ACTION_CODES = {"BRADY": "BRADY", "TACHY": "TACHY", "AVB1": "PR_LONG", "WIDE_QRS": "WIDE_QRS",
                "LONG_QTC": "QTC_LONG", "LAD": "AXIS_LEFT", "RAD": "AXIS_RIGHT", "ST_DEPRESSION": "ST_DEPRESSION"}
QTC_CRITICAL_CODE = "QTC_500"  # a LONG_QTC statement of severity "critical" (QTc >= 500 ms)
STEMI_CODES = {"anterior": "STEMI_ANTERIOR", "anteroseptal": "STEMI_ANTERIOR", "septal": "STEMI_ANTERIOR",
               "inferior": "STEMI_INFERIOR", "lateral": "STEMI_LATERAL"}


def ecg_measurements(signal: np.ndarray, fs: float) -> dict:
    """mlcore.measure of the analysed window (12, m) mV at its own rate, ready to store on EcgRecord.measurements.

    Never raises: a measurement that fails is stored as all nulls with the reason, and the upload goes on.
    """
    try:
        m = mlmeasure.measure(signal, fs)
    except Exception as exc:  # a bug or an odd signal in the measurement must not refuse the ECG
        log.exception("measurement failed")
        reason = f"the measurement failed ({type(exc).__name__}); the ECG was analysed without it"
        return {**{k: None for k in mlmeasure.KEYS}, "reasons": {k: reason for k in mlmeasure.KEYS},
                "version": mlmeasure.VERSION, "convention": mlmeasure.DEFAULT_CONVENTION, "fs": fs,
                "median_beats": None, "fiducials": None, "beats": None}
    m.setdefault("convention", mlmeasure.DEFAULT_CONVENTION)
    beats = m.get("median_beats")
    if beats:
        step = max(1, math.ceil(fs / MEDIAN_BEATS_MAX_HZ))
        m["median_beats"] = {"r": beats["r"], "step": step, "fs": fs / step,
                             "leads": {lead: v[::step] for lead, v in beats["leads"].items()}}
    return m


def api_values(m: dict | None) -> dict:
    """The API's ``measurements``: each of API_KEYS (a number, null, or for ST levels {lead: µV or null}) and
    ``reasons`` {key: why it is null}; all null for an ECG stored before it was measured."""
    m = m or {}
    reasons = m.get("reasons") or {}
    out = {k: m.get(k) for k in API_KEYS}
    if not m:
        reasons = {k: NOT_MEASURED_YET for k in API_KEYS}
    out["reasons"] = {k: v for k, v in reasons.items() if k in API_KEYS}
    return out


def statements(m: dict | None, *, age: float | None, sex: str | None) -> list[dict]:
    """mlcore.criteria's statements for the stored measurements ([] for an ECG stored before it was measured)."""
    if not m:
        return []
    return criteria_statements(m, age=age, sex=sex)["statements"]


def action_inputs(stmts: list[dict]) -> list[FindingInput]:
    """The action table's inputs for the criteria statements: a criterion met is certain (probability 1.0)."""
    keys: list[str] = []
    for s in stmts:
        if s["code"] == "STEMI":
            codes = [STEMI_CODES.get(t, f"STEMI_{t.upper()}") for t in s["values"].get("territories", {})]
        else:
            codes = [ACTION_CODES.get(s["code"], s["code"])]
            if s["code"] == "LONG_QTC" and s["severity"] == "critical":
                codes.append(QTC_CRITICAL_CODE)
        keys += [f"measure:{c}" for c in codes if f"measure:{c}" not in keys]
    return [FindingInput(k, 1.0, False) for k in keys]


# The line printed on an ECG: (label, keys, unit, note), as "HR 72/min · PR 160 ms · QT/QTc 380/410 ms (Bazett)".
LINE = (("HR", ("heart_rate_bpm",), "/min", ""), ("PR", ("pr_ms",), " ms", ""), ("QRS", ("qrs_ms",), " ms", ""),
        ("QT/QTc", ("qt_ms", "qtc_bazett_ms"), " ms", " (Bazett)"), ("Fridericia", ("qtc_fridericia_ms",), " ms", ""),
        ("P/QRS/T axes", ("p_axis_deg", "qrs_axis_deg", "t_axis_deg"), "°", ""))


def display_line(m: dict | None) -> list[dict]:
    """The result page's measurement line: [{label, values: [{text, reason}], unit, note}], "—" for a value not
    measured with the reason (shown as its tooltip); [] for an ECG stored before it was measured."""
    if not m:
        return []
    reasons = m.get("reasons") or {}
    return [{"label": label, "unit": unit, "note": note,
             "values": [{"text": "—" if m.get(k) is None else str(m[k]),
                         "reason": reasons.get(k, "not measured") if m.get(k) is None else ""} for k in keys]}
            for label, keys, unit, note in LINE]


def median_beats_view(m: dict | None) -> dict:
    """The result page's median-beat panel for the stored measurements: {"plot": median_beats_figure(...),
    "missing": [{label, reason}] for a fiducial not marked} or, when there are no median beats to draw,
    {"reason": why} (an ECG stored before it was measured, or one whose beats could not be measured)."""
    if not m:
        return {"reason": NOT_MEASURED_YET}
    beats, fiducials, fs = m.get("median_beats"), m.get("fiducials"), m.get("fs")
    if not beats or not beats.get("leads") or not fiducials or not fs:
        reasons = m.get("reasons") or {}
        # mlcore.measure gives every key the same reason when it finds no beats to measure; QRS is always measured
        # when there are beats, so its reason is the one that says why there are none.
        return {"reason": reasons.get("qrs_ms") or next(iter(reasons.values()), "the beats could not be measured")}
    reasons = m.get("reasons") or {}
    try:
        plot = median_beats_figure(
            beats["leads"], beats_fs=beats.get("fs") or fs, fs=fs, fiducials=fiducials,
            intervals_ms={"pr": m.get("pr_ms"), "qrs": m.get("qrs_ms"), "qt": m.get("qt_ms")})
    except ValueError:  # a stored row this code cannot read must not take the result page down with it
        log.exception("median beats not drawn")
        return {"reason": "the median beats stored for this ECG could not be drawn"}
    missing = []
    if fiducials.get("p_on") is None:
        missing.append({"label": "P wave", "reason": reasons.get("pr_ms", "no P wave found")})
    if fiducials.get("t_off") is None:
        missing.append({"label": "T end", "reason": reasons.get("qt_ms", "no T wave end found")})
    return {"plot": plot, "missing": missing}
