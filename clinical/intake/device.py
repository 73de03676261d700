"""The device's own global measurements under one vocabulary: every reader reports them with GE MUSE's names
(the most common export), and the result page and the API show each with its label and unit.

Units are those of the formats' specifications: intervals in ms, rates in beats per minute, frontal axes in
degrees (GE MUSE <RestingECGMeasurements>, Philips Sierra XML <globalmeasurements>, HL7 aECG MDC codes, DICOM
PS3.3 C.10.10 annotations, SCP-ECG section 7).
"""
from __future__ import annotations

# MUSE name -> (label, unit)
MEASUREMENTS: dict[str, tuple[str, str]] = {
    "VentricularRate": ("Ventricular rate", "/min"),
    "AtrialRate": ("Atrial rate", "/min"),
    "RRInterval": ("RR interval", "ms"),
    "PRInterval": ("PR interval", "ms"),
    "QRSDuration": ("QRS duration", "ms"),
    "QTInterval": ("QT interval", "ms"),
    "QTCorrected": ("QTc", "ms"),
    "PAxis": ("P axis", "°"),
    "RAxis": ("QRS axis", "°"),
    "TAxis": ("T axis", "°"),
}
# Other names exports use for the same measurements (DICOM code meanings, lower-cased), -> the MUSE name.
ALIASES: dict[str, str] = {
    "ventricular heart rate": "VentricularRate", "heart rate": "VentricularRate", "rr interval": "RRInterval",
    "pr interval": "PRInterval", "qrs duration": "QRSDuration", "qt interval": "QTInterval",
    "qtc interval": "QTCorrected", "qtc": "QTCorrected", "p axis": "PAxis", "qrs axis": "RAxis", "r axis": "RAxis",
    "t axis": "TAxis",
}


def canonical_measurement(name: str) -> str:
    """The MUSE name of a measurement an export names otherwise ('PR Interval' -> 'PRInterval'), else the name."""
    return name if name in MEASUREMENTS else ALIASES.get(name.strip().lower(), name)


def measurement_rows(measurements: dict) -> list[dict]:
    """[{"key", "label", "value", "unit"}] in the order of MEASUREMENTS, then any others as the file named them
    (unit unknown: ""), for the result page and the API."""
    known = [k for k in MEASUREMENTS if k in measurements]
    others = [k for k in measurements if k not in MEASUREMENTS]
    return [{"key": k, "label": MEASUREMENTS.get(k, (k, ""))[0], "value": measurements[k],
             "unit": MEASUREMENTS.get(k, ("", ""))[1]} for k in known + others]
