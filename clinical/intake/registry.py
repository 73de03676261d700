"""The single-file export formats (GE MUSE, Philips, HL7 aECG, DICOM, SCP-ECG, EDF): each reader module
registers the extensions it reads here, and clinical.intake.dispatch hands it the uploaded file.

A reader is ``read(content: bytes, name: str) -> Reading``: it follows its format's specification and returns the
leads it found in millivolts under their canonical names, with what the file says besides the waveform;
record.assemble then applies the checks every upload shares (lengths, values, duration, amplitude) and stacks the
12 leads. A reader raises IntakeError with a message that says what is wrong and what to upload instead.
"""
from __future__ import annotations

from collections.abc import Callable

from clinical.intake.record import Reading

# extension (lower case, no dot) -> reader; clinical.intake accepts exactly these besides WFDB, CSV and JSON.
READERS: dict[str, Callable[[bytes, str], Reading]] = {}
# What each extension is, for the messages that list accepted uploads.
DESCRIPTIONS: dict[str, str] = {}


def register(ext: str, description: str):
    def wrap(fn: Callable[[bytes, str], Reading]) -> Callable[[bytes, str], Reading]:
        READERS[ext] = fn
        DESCRIPTIONS[ext] = description
        return fn
    return wrap
