"""Readers for the single-file formats that ECG carts and management systems export (issue 13).

Each format has its own module with one function `read(content: bytes, name: str) -> Reading`, registered below by
file extension. A reader follows its format's specification, returns the leads it found in millivolts under
their canonical names (clinical.ingest's names: I, II, III, aVR, aVL, aVF, V1-V6) and what the file says besides
the waveform; clinical.ingest then applies the checks every upload shares (lengths, values, duration,
amplitude) and stacks the 12 leads. A reader raises clinical.ingest.IntakeError with a message that says what is
wrong and what to upload instead. No Django import here.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Reading:
    columns: dict[str, np.ndarray]  # canonical lead name -> samples in mV (float64)
    fs: float
    source_format: str  # e.g. "ge-muse-xml"
    # What the file says besides the waveform: device, acquisition time, the device's own statements and
    # measurements (kept for the result page and the API).
    device: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. "III, aVR, aVL, aVF derived from I and II"


# The reader modules, each registering its extensions when imported (clinical.ingest loads them).
READER_MODULES: tuple[str, ...] = (
    "clinical.readers.scp_ecg",
    "clinical.readers.xml",
    "clinical.readers.dicom",
    "clinical.readers.edf",
)

# extension (lower case, no dot) -> reader; clinical.ingest accepts exactly these besides WFDB, CSV and JSON.
READERS: dict[str, Callable[[bytes, str], Reading]] = {}
# What each extension is, for the messages that list accepted uploads.
DESCRIPTIONS: dict[str, str] = {}


def load() -> None:
    import importlib

    for module in READER_MODULES:
        importlib.import_module(module)


def register(ext: str, description: str):
    def wrap(fn: Callable[[bytes, str], Reading]) -> Callable[[bytes, str], Reading]:
        READERS[ext] = fn
        DESCRIPTIONS[ext] = description
        return fn
    return wrap


def derive_limb_leads(columns: dict[str, np.ndarray]) -> list[str]:
    """III, aVR, aVL, aVF from I and II where missing (Einthoven's and Goldberger's relations); returns the names
    derived. GE MUSE stores only the 8 independent leads."""
    derived = []
    if "I" in columns and "II" in columns:
        i, ii = columns["I"], columns["II"]
        for name, value in (("III", ii - i), ("aVR", -(i + ii) / 2), ("aVL", i - ii / 2), ("aVF", ii - i / 2)):
            if name not in columns:
                columns[name] = value
                derived.append(name)
    return derived
