"""HL7 v3 annotated ECG (<AnnotatedECG xmlns="urn:hl7-org:v3">), the FDA's format for ECGs in clinical trials.

The rhythm <series> (code RHYTHM) holds a <sequenceSet> of simultaneously recorded <sequence>s: one for time
(TIME_ABSOLUTE or TIME_RELATIVE, whose <increment> gives the sample interval) and one per lead (code
MDC_ECG_LEAD_I, ..._II, ..._AVR, ..._V1, ...), an SLIST_PQ whose samples are origin + scale x digit.
"""
from __future__ import annotations

from xml.etree.ElementTree import Element

import numpy as np

from clinical.intake.errors import IntakeError, shown
from clinical.intake.leads import complete_leads
from clinical.intake.record import Reading
from clinical.intake.xml import attr, child, children, descendants, number, text
from mlcore.preprocess import canonical_lead

TIME_CODES = ("TIME_ABSOLUTE", "TIME_RELATIVE")
LEAD_PREFIX = "MDC_ECG_LEAD_"
SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}  # UCUM units of an increment
MILLIVOLTS = {"uV": 1e-3, "mV": 1.0, "V": 1e3}  # UCUM units of origin and scale
# Global measurements (MDC codes) -> the names GE MUSE uses, so that every format reports them alike.
MEASUREMENTS = {
    "MDC_ECG_HEART_RATE": "VentricularRate",
    "MDC_ECG_TIME_PD_PR": "PRInterval",
    "MDC_ECG_TIME_PD_QRS": "QRSDuration",
    "MDC_ECG_TIME_PD_QT": "QTInterval",
    "MDC_ECG_TIME_PD_QTc": "QTCorrected",
    "MDC_ECG_ANGLE_P_FRONT": "PAxis",
    "MDC_ECG_ANGLE_QRS_FRONT": "RAxis",
    "MDC_ECG_ANGLE_T_FRONT": "TAxis",
}
REMEDY = "Export the ECG again with its rhythm waveforms."


def read_root(root: Element) -> Reading:
    series = next((s for c in children(root, "component") for s in children(c, "series")
                   if attr(child(s, "code"), "code") == "RHYTHM"), None)
    sequence_set = child(series, "component", "sequenceSet")
    if sequence_set is None:
        raise IntakeError(
            "This HL7 aECG file has no rhythm waveform (a <series> with code RHYTHM and its <sequenceSet>); "
            "representative beats or annotations alone cannot be interpreted. " + REMEDY,
            "file",
        )
    sequences = [s for c in children(sequence_set, "component") for s in children(c, "sequence")]
    fs = _sampling_rate(sequences)
    columns: dict[str, np.ndarray] = {}
    labels: list[str] = []  # every lead's MDC name, the standard ones and the others
    for sequence in sequences:
        code = attr(child(sequence, "code"), "code")
        if not code.startswith(LEAD_PREFIX):
            continue
        labels.append(code[len(LEAD_PREFIX):])
        name = canonical_lead(code[len(LEAD_PREFIX):])
        if name is None:  # leads beyond the standard 12 (V7, V3R, Frank X/Y/Z, ...)
            continue
        if name in columns:
            raise IntakeError(f"Lead {name} appears twice in the rhythm waveforms of this HL7 aECG file. {REMEDY}",
                              "file")
        columns[name] = _samples(child(sequence, "value"), name)
    notes = complete_leads(columns, what="the rhythm waveforms of this HL7 aECG file", remedy=REMEDY, labels=labels)
    return Reading(columns=columns, fs=fs, source_format="hl7-aecg", device=_device(root, series), notes=notes)


def _sampling_rate(sequences: list[Element]) -> float:
    time = next((s for s in sequences if attr(child(s, "code"), "code") in TIME_CODES), None)
    increment = child(time, "value", "increment")
    value, unit = number(attr(increment, "value")), attr(increment, "unit")
    if value is None or value <= 0 or unit not in SECONDS:
        raise IntakeError(
            "The rhythm waveforms of this HL7 aECG file state no usable sample interval (a TIME_ABSOLUTE or "
            f"TIME_RELATIVE sequence with an <increment> in s or ms; found '{shown(attr(increment, 'value'), 20)}' "
            f"'{shown(unit, 10)}'). {REMEDY}",
            "file",
        )
    return 1.0 / (value * SECONDS[unit])


def _samples(value: Element | None, name: str) -> np.ndarray:
    kind = attr(value, "type")
    if kind != "SLIST_PQ":
        raise IntakeError(f"Lead {name} of this HL7 aECG file is of type '{shown(kind or '(none)', 20)}'; only "
                          f"SLIST_PQ sequences (origin, scale and digits) are read. {REMEDY}", "file")
    origin, scale = child(value, "origin"), child(value, "scale")
    o, s = number(attr(origin, "value")), number(attr(scale, "value"))
    o_unit, s_unit = attr(origin, "unit"), attr(scale, "unit")
    if o is None or s is None or s <= 0 or o_unit not in MILLIVOLTS or s_unit not in MILLIVOLTS:
        raise IntakeError(
            f"Lead {name} of this HL7 aECG file has no usable origin and scale (values with units uV or mV; found "
            f"origin '{shown(attr(origin, 'value'), 12)} {shown(o_unit, 8)}', scale "
            f"'{shown(attr(scale, 'value'), 12)} {shown(s_unit, 8)}'). {REMEDY}",
            "file",
        )
    try:
        digits = np.array(text(value, "digits").split(), dtype=np.float64)
    except ValueError:
        raise IntakeError(f"The digits of lead {name} in this HL7 aECG file are not all numbers. {REMEDY}",
                          "file") from None
    return o * MILLIVOLTS[o_unit] + s * MILLIVOLTS[s_unit] * digits


def _device(root: Element, series: Element | None) -> dict:
    made = child(series, "author", "seriesAuthor")
    model = text(made, "manufacturedSeriesDevice", "manufacturerModelName")
    maker = text(made, "manufacturerOrganization", "name")
    device = " ".join(part for part in (maker, model) if part)
    low = attr(child(series, "effectiveTime", "low"), "value") or attr(child(root, "effectiveTime", "center"),
                                                                       "value")
    statements: list[str] = []
    measurements: dict = {}
    annotation_set = next(descendants(series, "annotationSet"), None)  # the first: usually the device's own
    for annotation in _annotations(annotation_set):
        code = attr(child(annotation, "code"), "code")
        value = child(annotation, "value")
        if code == "MDC_ECG_BEAT":
            continue  # per-beat measurements are not the ECG's global ones
        if code == "MDC_ECG_RHY" and attr(value, "displayName"):
            statements.append(attr(value, "displayName"))
        elif code == "MDC_ECG_INTERPRETATION_STATEMENT" and text(value):
            statements.append(text(value))
        elif code in MEASUREMENTS and MEASUREMENTS[code] not in measurements:
            x = number(attr(value, "value"))
            if x is not None:
                measurements[MEASUREMENTS[code]] = x
    return {"device": device or None, "acquired": _timestamp(low), "statements": statements,
            "measurements": measurements}


def _annotations(element: Element | None):
    """Annotations of a set, depth first, not descending into beats."""
    for component in children(element, "component"):
        for annotation in children(component, "annotation"):
            yield annotation
            if attr(child(annotation, "code"), "code") != "MDC_ECG_BEAT":
                yield from _annotations(annotation)


def _timestamp(value: str) -> str | None:
    # HL7 TS: YYYYMMDDHHMMSS[.fff][+ZZZZ]
    digits = value.split(".")[0].split("+")[0].split("-")[0]
    if len(digits) >= 14 and digits.isdigit():
        return f"{digits[:4]}-{digits[4:6]}-{digits[6:8]}T{digits[8:10]}:{digits[10:12]}:{digits[12:14]}"
    return value or None
