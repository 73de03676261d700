"""The report of one ECG, read from its stored result: preliminary today, confirmed once the reading workflow
says so."""
from __future__ import annotations

import dataclasses
from datetime import datetime

from django.utils.dateparse import parse_datetime

from clinical import measurements as ecg_measures
from clinical import selectors
from clinical.audit import AuditAction
from clinical.errors import ApplicationError
from clinical.interpretations import reading_for_report
from clinical.models import AuditEvent, EcgRecord, Finding, Prediction
from clinical.reports.data import ORIGINS, PRELIMINARY, Confirmation, ReportData, ReportDataError, ReportStatement
from mlcore.preprocess import LEADS, WINDOW_S

NOT_READY = "result_not_ready"  # ApplicationError.code: the API answers 409 (clinical.api.errors.STATUS_BY_CODE)


class ReportNotReady(ApplicationError):
    """The ECG has no result yet (queued, running or failed): there is nothing to report."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=NOT_READY)


def _confirmed(record: EcgRecord) -> Confirmation | None:
    """The latest signed version of this ECG's reading (clinical.interpretations: confirmation or amendment), or
    None while it is preliminary."""
    return confirmation_from_reading(reading_for_report(record))


def _statements(prediction: Prediction) -> tuple[ReportStatement, ...]:
    """The system's statements, as the result page lists them: the model's findings whose operating point is
    validated (or not recorded), then the criteria met by measurement."""
    model = [f for f in selectors.model_findings(prediction=prediction)
             if (f.operating_point or {}).get("validated") is not False]
    measured = prediction.findings.filter(head=Finding.Head.MEASUREMENT)
    return (tuple(ReportStatement(code=f.code, display=f.display, origin="model") for f in model)
            + tuple(ReportStatement(code=f.code, display=f.display, origin="measurement") for f in measured))


def _acquired(record: EcgRecord) -> datetime | None:
    text = (record.device or {}).get("acquired") or ""
    try:
        return parse_datetime(text) if text else None
    except ValueError:  # an export's own time field we cannot read is left out, not guessed
        return None


def _audit_reference(record: EcgRecord) -> str:
    return (AuditEvent.objects.filter(action=AuditAction.INFERENCE_COMPLETE,
                                      object_type="EcgRecord", object_id=str(record.public_id))
            .order_by("-id").values_list("hash", flat=True).first()) or ""


def report_data(*, record: EcgRecord) -> ReportData:
    """The report of ``record``'s result: preliminary (the system's statements, unconfirmed), or the confirmed
    version when _confirmed gives one. Raises ReportNotReady when the ECG has no result yet."""
    prediction = getattr(record, "prediction", None)
    if prediction is None:
        raise ReportNotReady("This ECG has no result yet; a report can be made once the analysis is done.")
    window_note = ""
    if record.duration_s > WINDOW_S:
        window_note = (f"Analysed {record.window_start_s:.1f}-{record.window_end_s:.1f} s of "
                       f"{record.duration_s:.1f} s ({record.get_window_chosen_by_display()})")
    data = ReportData(
        record_id=str(record.public_id), patient_pseudonym=record.patient.pseudonym, age=record.age_at_ecg,
        sex=record.sex_at_ecg, acquired_at=_acquired(record), uploaded_at=record.uploaded_at, fs=record.fs,
        leads=LEADS, signal_mv=record.window_array(), measurements=ecg_measures.api_values(record.measurements),
        computer_statements=_statements(prediction), confirmed_statements=None, free_text="", comparison=(),
        status=PRELIMINARY, version=1, reviewer=None, confirmed_at=None, amendment_reason="",
        model_version=prediction.model_version, calibration_version=prediction.calibration_shown,
        audit_reference=_audit_reference(record), window_note=window_note)
    confirmation = _confirmed(record)
    if confirmation is None:
        return data
    measurements = data.measurements
    if confirmation.measurements is not None:
        values = {k: v for k, v in confirmation.measurements.items() if k in measurements and k != "reasons"}
        reasons = {k: r for k, r in (measurements.get("reasons") or {}).items() if values.get(k) is None}
        measurements = {**measurements, **values, "reasons": reasons}
    # replace() runs ReportData's checks again, so an incomplete confirmation is refused here, not printed.
    return dataclasses.replace(
        data, confirmed_statements=confirmation.statements, free_text=confirmation.free_text,
        comparison=confirmation.comparison, status=confirmation.status, version=confirmation.version,
        reviewer=confirmation.reviewer, confirmed_at=confirmation.confirmed_at,
        amendment_reason=confirmation.amendment_reason, measurements=measurements,
        reviewer_measured=tuple(confirmation.reviewer_measured))


def confirmation_from_reading(reading: dict | None) -> Confirmation | None:
    """A Confirmation from the reading workflow's summary of its latest version (a dict with confirmed_statements,
    free_text, status, version, reviewer, confirmed_at, amendment_reason, comparison, measurements,
    measurement_overrides), or None for None. Statements may be display strings or dicts with "display" and
    optionally "key" ("statements:AFIB") / "code" and "origin"; a string is the reviewer's, uncoded.

    Raises ReportDataError when a required item is missing, rather than printing a report without it.
    """
    if reading is None:
        return None
    missing = [k for k in ("confirmed_statements", "status", "version", "reviewer", "confirmed_at") if
               reading.get(k) is None]
    if missing:
        raise ReportDataError(f"the confirmed reading lacks {', '.join(missing)}")
    statements = []
    for s in reading["confirmed_statements"]:
        if isinstance(s, str):
            statements.append(ReportStatement(code="", display=s, origin="reviewer"))
        else:
            code = s.get("code") or str(s.get("key") or "").rsplit(":", 1)[-1]
            origin = s.get("origin") if s.get("origin") in ORIGINS else "reviewer"
            statements.append(ReportStatement(code=code, display=s["display"], origin=origin))
    return Confirmation(
        statements=tuple(statements), reviewer=reading["reviewer"], confirmed_at=reading["confirmed_at"],
        version=int(reading["version"]), status=reading["status"], free_text=reading.get("free_text") or "",
        comparison=tuple(reading.get("comparison") or ()), amendment_reason=reading.get("amendment_reason") or "",
        measurements=reading.get("measurements"),
        reviewer_measured=tuple(sorted(reading.get("measurement_overrides") or {})))
