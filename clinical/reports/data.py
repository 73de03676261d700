"""What a report says, independent of the models it is read from: the PDF, FHIR and HL7 builders read only this.

The reading workflow (worklists, over-read, confirm, amend) fills ``confirmed_statements`` and the fields after it
through clinical.reports.selectors._confirmed; until then every report is preliminary.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from mlcore.preprocess import LEADS

PRELIMINARY, FINAL, AMENDED = "preliminary", "final", "amended"
STATUSES = (PRELIMINARY, FINAL, AMENDED)
ORIGINS = ("model", "measurement", "reviewer")


class ReportDataError(ValueError):
    """A ReportData that no report could be honestly built from (says which field and why)."""


@dataclass(frozen=True)
class ReportStatement:
    code: str  # label code ("AFIB", "NORM") or measurement-criterion code, or "" for free text
    display: str
    origin: str  # "model" | "measurement" | "reviewer"

    def __post_init__(self) -> None:
        if self.origin not in ORIGINS:
            raise ReportDataError(f"statement origin must be one of {', '.join(ORIGINS)}; got {self.origin!r}")
        if not self.display.strip():
            raise ReportDataError("a statement needs display text")


@dataclass(frozen=True)
class ReportData:
    record_id: str
    patient_pseudonym: str
    age: int | None
    sex: str  # "M" | "F" | "U", as given with this ECG
    acquired_at: datetime | None  # what the file said (device export); None for WFDB/CSV/JSON uploads
    uploaded_at: datetime
    fs: float
    leads: tuple[str, ...]
    signal_mv: np.ndarray  # (12, n_samples) mV: the analysed window of the stored signal (at most 10 s)
    measurements: dict  # the API's `measurements` dict (clinical.measurements.api_values: API_KEYS + reasons)
    computer_statements: tuple[ReportStatement, ...]  # what the system said (model + measurement findings)
    confirmed_statements: tuple[ReportStatement, ...] | None  # None until a reviewer confirms
    free_text: str
    comparison: tuple[str, ...]  # change lines vs a prior ECG ("QTc +60 ms"), may be empty
    status: str  # "preliminary" | "final" | "amended"
    version: int
    reviewer: str | None
    confirmed_at: datetime | None
    amendment_reason: str
    model_version: str
    calibration_version: str
    audit_reference: str  # the hash of the result's audit event (inference.complete)
    # Where the drawn window lies in the whole recording, e.g. "Analysed 12.0-22.0 s of 38.0 s"; "" when the
    # record is the window. Added after the contract above, with a default, so callers that omit it still work.
    window_note: str = field(default="")
    # Keys of ``measurements`` whose value the reviewer set (calipers) or that were derived from theirs; printed as
    # the reviewer's. Empty until confirmation.
    reviewer_measured: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        # A report is a signed document: one that would misstate its status or draw a wrong signal is refused whole.
        if self.status not in STATUSES:
            raise ReportDataError(f"status must be one of {', '.join(STATUSES)}; got {self.status!r}")
        if tuple(self.leads) != LEADS:
            raise ReportDataError(f"leads must be the 12 standard leads in order ({', '.join(LEADS)})")
        if not isinstance(self.signal_mv, np.ndarray) or self.signal_mv.ndim != 2 or self.signal_mv.shape[0] != 12:
            raise ReportDataError("signal_mv must be a (12, n_samples) array in mV")
        if self.signal_mv.shape[1] < 2 or not np.isfinite(self.signal_mv).all():
            raise ReportDataError("signal_mv must hold at least two finite samples per lead")
        if not (self.fs > 0):
            raise ReportDataError(f"fs must be positive; got {self.fs!r}")
        if self.status == PRELIMINARY:
            if self.confirmed_statements is not None or self.reviewer or self.confirmed_at:
                raise ReportDataError("a preliminary report has no confirmed statements, reviewer or confirmation "
                                      "time; use status final or amended")
        else:
            if self.confirmed_statements is None or not self.reviewer or self.confirmed_at is None:
                raise ReportDataError(f"a {self.status} report needs confirmed_statements, reviewer and "
                                      "confirmed_at")
        if self.status == AMENDED and not self.amendment_reason.strip():
            raise ReportDataError("an amended report needs amendment_reason")
        if self.version < 1:
            raise ReportDataError(f"version starts at 1; got {self.version}")
        if self.reviewer_measured and self.status == PRELIMINARY:
            raise ReportDataError("a preliminary report has no reviewer's measurements")
        unknown = [k for k in self.reviewer_measured if k not in self.measurements]
        if unknown:
            raise ReportDataError(f"reviewer_measured names measurements the report does not have: {unknown}")

    @property
    def duration_s(self) -> float:
        return self.signal_mv.shape[1] / self.fs


@dataclass(frozen=True)
class Confirmation:
    """What a reviewer's confirmation adds to the preliminary report (returned by selectors._confirmed)."""

    statements: tuple[ReportStatement, ...]  # the confirmed statements, origin "reviewer" or kept "model"/...
    reviewer: str  # username
    confirmed_at: datetime
    version: int  # 1 for the first confirmation, +1 per amendment
    status: str = FINAL  # "final" | "amended"
    free_text: str = ""
    comparison: tuple[str, ...] = ()
    amendment_reason: str = ""
    # The confirmed scalar measurements {API key: value} (the computer's where the reviewer kept them), which replace
    # the computer's in the report; None: the computer's stand. ``reviewer_measured``: the keys the reviewer set.
    measurements: dict | None = None
    reviewer_measured: tuple[str, ...] = ()
