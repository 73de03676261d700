"""Serial comparison: this ECG against the patient's previous analysed ECG, in measurements and in statements.

Every difference is listed. A few are marked significant, each where a source defines a serial or threshold
change; for the others (heart rate, PR and QRS changes that cross no limit, QT, axes) we found no guideline that
defines a significant serial change, so none is claimed and the difference is shown as it is.
"""
from __future__ import annotations

from datetime import datetime

from django.utils.dateparse import parse_datetime

from clinical.models import EcgRecord, InferenceJob, Interpretation
from mlcore.criteria import AHA_2009_III, BRADY_2018, PR_LONG_MS, QRS_WIDE_MS, QTC_CRITICAL_MS, TDP_2010

# The scalar measurements compared (mlcore.measure keys), with the label and unit printed in a change line.
COMPARED: tuple[tuple[str, str, str], ...] = (
    ("heart_rate_bpm", "HR", "/min"), ("pr_ms", "PR", " ms"), ("qrs_ms", "QRS", " ms"), ("qt_ms", "QT", " ms"),
    ("qtc_bazett_ms", "QTc (Bazett)", " ms"), ("qtc_fridericia_ms", "QTc (Fridericia)", " ms"),
    ("p_axis_deg", "P axis", "°"), ("qrs_axis_deg", "QRS axis", "°"), ("t_axis_deg", "T axis", "°"),
)
# A QTc lengthening of more than 60 ms from baseline, or a QTc newly at or above 500 ms, puts a patient at risk of
# torsade de pointes (TDP_2010, "Prevention of Torsade de Pointes in Hospital Settings", 2010).
QTC_INCREASE_MS = 60
QTC_KEYS = ("qtc_bazett_ms", "qtc_fridericia_ms")
# The criteria statements by measurement (mlcore.criteria codes), named without their values: a reviewer may add
# one the measurement did not meet (e.g. a QRS they measured wider by caliper).
MEASUREMENT_STATEMENTS = {
    "BRADY": "Bradycardia (rate < 50/min)", "TACHY": "Tachycardia (rate > 100/min)",
    "AVB1": "First-degree AV block (PR > 200 ms)", "WIDE_QRS": "Wide QRS (≥ 120 ms)",
    "LONG_QTC": "Prolonged QTc", "LAD": "Left axis deviation", "RAD": "Right axis deviation",
    "EXTREME_AXIS": "Extreme axis deviation", "STEMI": "ST elevation meeting the STEMI criteria",
    "ST_DEPRESSION": "ST depression",
}


NO_SOURCE = "no guideline we know defines a significant serial change here; the difference is shown as it is"


def ecg_acquired_at(record: EcgRecord) -> datetime:
    """When the ECG was taken: the device's acquisition time where the file gave one, else the upload time."""
    acquired = parse_datetime(str((record.device or {}).get("acquired") or ""))
    if acquired is not None and acquired.tzinfo is None:
        from django.utils import timezone

        acquired = timezone.make_aware(acquired, timezone.get_default_timezone())
    return acquired or record.uploaded_at


def prior_ecg(*, record: EcgRecord) -> EcgRecord | None:
    """The patient's most recent analysed ECG taken before this one, other than another window of the same
    recording (a re-analysis reads the same signal: comparing the two would only show the model's variance)."""
    root = record.reanalysis_of_id or record.pk
    at = ecg_acquired_at(record)
    candidates = (EcgRecord.objects.filter(patient_id=record.patient_id, job__state=InferenceJob.State.DONE,
                                           prediction__isnull=False)
                  .exclude(pk=root).exclude(reanalysis_of_id=root).exclude(pk=record.pk)
                  .select_related("prediction").defer("signal"))
    earlier = [(ecg_acquired_at(r), r.uploaded_at, r.pk, r) for r in candidates]
    earlier = [c for c in earlier if (c[0], c[1]) < (at, record.uploaded_at)]
    return max(earlier, key=lambda c: c[:3])[3] if earlier else None


def latest_interpretation(record: EcgRecord) -> Interpretation | None:
    return record.interpretations.filter(superseded_by__isnull=True).order_by("-version").first()


def reading_of(record: EcgRecord) -> dict:
    """What an ECG says, for comparison: its latest confirmed reading, else the computer's.

    {"source": "confirmed v2" | "computer", "statements": {key: display}, "measurements": {key: value}}
    """
    interpretation = latest_interpretation(record)
    if interpretation is not None:
        return {"source": f"confirmed v{interpretation.version}",
                "statements": {s["key"]: s["display"] for s in interpretation.kept_statements},
                "measurements": dict(interpretation.measurements)}
    from clinical.interpretations import computer_statements  # it imports this module

    return {"source": "computer", "statements": {s["key"]: s["display"] for s in computer_statements(record)},
            "measurements": {k: (record.measurements or {}).get(k) for k, _, _ in COMPARED}}


def _signed(value: float, unit: str) -> str:
    number = f"{value:+.0f}" if float(value).is_integer() or abs(value) >= 10 else f"{value:+.1f}"
    return f"{number}{unit}"


def measurement_changes(prior: dict, current: dict) -> list[dict]:
    """One row per compared measurement both ECGs have: {key, label, prior, current, delta, text, significant,
    rule, source}; ``significant`` only where a source defines the change (QTc, QRS widening, PR prolongation)."""
    rows = []
    for key, label, unit in COMPARED:
        a, b = prior.get(key), current.get(key)
        if a is None or b is None:
            continue
        delta = b - a
        row = {"key": key, "label": label, "prior": a, "current": b, "delta": delta,
               "text": f"{label} {_signed(delta, unit)} ({a:g} → {b:g}{unit})" if delta
               else f"{label} unchanged ({b:g}{unit})", "significant": False, "rule": NO_SOURCE, "source": ""}
        if key in QTC_KEYS:
            if delta > QTC_INCREASE_MS:
                row.update(significant=True, rule=f"QTc lengthened by more than {QTC_INCREASE_MS} ms",
                           source=TDP_2010)
            elif a < QTC_CRITICAL_MS <= b:
                row.update(significant=True, rule=f"QTc newly at or above {QTC_CRITICAL_MS} ms", source=TDP_2010)
            else:
                row["rule"] = f"not a lengthening of more than {QTC_INCREASE_MS} ms nor newly ≥ {QTC_CRITICAL_MS} ms"
                row["source"] = TDP_2010
        elif key == "qrs_ms" and a < QRS_WIDE_MS <= b:
            row.update(significant=True, rule=f"new QRS widening (now ≥ {QRS_WIDE_MS} ms)", source=AHA_2009_III)
        elif key == "qrs_ms" and b < QRS_WIDE_MS <= a:
            row.update(significant=True, rule=f"QRS no longer wide (now < {QRS_WIDE_MS} ms)", source=AHA_2009_III)
        elif key == "pr_ms" and a <= PR_LONG_MS < b:
            row.update(significant=True, rule=f"new PR prolongation (now > {PR_LONG_MS} ms)", source=BRADY_2018)
        rows.append(row)
    return rows


def statement_changes(prior: dict[str, str], current: dict[str, str]) -> list[dict]:
    """Statements new on this ECG, then those of the prior ECG no longer present: {key, display, change, text}."""
    # A statement by measurement is named without the value it was met with (the measurements are compared above).
    def name(key: str, display: str) -> str:
        head, _, code = key.partition(":")
        return MEASUREMENT_STATEMENTS.get(code, display) if head == "measurement" else display

    new = [{"key": k, "display": name(k, d), "change": "new", "text": f"New: {name(k, d)}"}
           for k, d in current.items() if k not in prior]
    gone = [{"key": k, "display": name(k, d), "change": "no_longer", "text": f"{name(k, d)}: no longer present"}
            for k, d in prior.items() if k not in current]
    return new + gone


def ecg_compare(*, record: EcgRecord, prior: EcgRecord | None, statements: dict[str, str],
                measurements: dict) -> dict:
    """The comparison of this ECG, read as ``statements`` ({key: display}) and ``measurements`` ({key: value}),
    with ``prior`` (its latest confirmed reading, else the computer's): what the page shows and the confirmed
    version stores. {} without a prior ECG.

    "lines" lists the changes a report prints: significant measurement changes first, then statement changes, then
    the other measurement differences; "unchanged" ones are left out of the lines but kept in "measurements".
    """
    if prior is None:
        return {}
    then = reading_of(prior)
    rows = measurement_changes(then["measurements"], measurements)
    stmts = statement_changes(then["statements"], statements)
    significant = [r for r in rows if r["significant"]]
    lines = ([f"{r['text']}: {r['rule']}" for r in significant] + [s["text"] for s in stmts]
             + [r["text"] for r in rows if not r["significant"] and r["delta"]])
    return {"prior": {"id": str(prior.public_id), "acquired_at": ecg_acquired_at(prior).isoformat(),
                      "uploaded_at": prior.uploaded_at.isoformat(), "reading": then["source"]},
            "measurements": rows, "statements": stmts, "lines": lines or ["No change in statements or measurements"],
            "significant": len(significant), "thresholds_note": NO_SOURCE}
