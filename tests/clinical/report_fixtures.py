"""A ReportData built by hand (no database) and an ECG whose shape the report tests can find again."""
from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np

from clinical.reports.data import ReportData, ReportStatement
from mlcore.preprocess import LEADS


def spikes_signal(fs: float = 500, seconds: float = 10.0, phase_s: float = 0.0) -> np.ndarray:
    """Flat leads, and in lead II a 1 mV triangular spike (20 ms wide) at each whole second from 1 s (+ phase_s,
    which puts the peaks off any regular subsampling of the samples)."""
    n = int(round(seconds * fs))
    sig = np.zeros((12, n), dtype=np.float32)
    half = int(0.01 * fs)
    for t in range(1, int(np.ceil(seconds))):
        i = int((t + phase_s) * fs)
        if i + half < n:
            sig[1, i - half:i + half + 1] = 1.0 - np.abs(np.arange(-half, half + 1)) / half
    return sig


def report(signal: np.ndarray, fs: float = 500, **changes) -> ReportData:
    base = ReportData(
        record_id="3f2b6a51-8c1e-4b7a-9d0e-2a7f5c9e1b44", patient_pseudonym="PT-0042", age=63, sex="F",
        acquired_at=dt.datetime(2026, 11, 30, 8, 15, tzinfo=dt.UTC),
        uploaded_at=dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC), fs=fs, leads=LEADS, signal_mv=signal,
        measurements={"heart_rate_bpm": 60, "pr_ms": 160, "qrs_ms": 92, "qt_ms": 400, "qtc_bazett_ms": 400,
                      "p_axis_deg": 60, "qrs_axis_deg": None, "t_axis_deg": 40, "reasons": {}},
        computer_statements=(ReportStatement("STTC", "ST/T change", "model"),
                             ReportStatement("AVB1", "First-degree AV block, PR 216 ms (> 200)", "measurement")),
        confirmed_statements=None, free_text="", comparison=(), status="preliminary", version=1, reviewer=None,
        confirmed_at=None, amendment_reason="", model_version="resnet1d-test", calibration_version="manifest",
        audit_reference="ab" * 32)
    return dataclasses.replace(base, **changes) if changes else base
