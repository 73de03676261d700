"""Audit of reads: every page and API response that shows patient data writes one event, who saw what and how.

Detail reads are ``ecg.view`` on the ECG; list reads are ``ecg.list`` naming the ECGs and patients shown. Both say
``via`` ("page" or "api") and ``view`` (which screen or endpoint). Each is one short insert in its own
transaction, written before the response is rendered, so a read that is not audited is not shown.

Not audited: the job-status polls (page and API). They carry the analysis state only (state, progress, stage,
error text), no patient data, and the result page polls them every few seconds; the result itself is audited.
"""
from __future__ import annotations

from collections.abc import Sequence

from clinical.audit import AuditAction, audit_log
from clinical.intake import shown
from clinical.models import EcgRecord

PAGE, API = "page", "api"


def ecg_view_audit(*, actor, record: EcgRecord, via: str, view: str, **details) -> None:
    """One person or client saw one ECG's data (signal, findings, actions)."""
    audit_log(actor=actor, action=AuditAction.ECG_VIEW, object_type="EcgRecord", object_id=record.public_id,
              details={"via": via, "view": view, **details})


def ecg_list_audit(*, actor, records: Sequence[EcgRecord], via: str, view: str, patient: str = "") -> None:
    """One person or client saw a list of ECGs: which ones and whose, in the order shown.

    ``patient``: the pseudonym a per-patient list was asked for; the event is then the patient's, so the audit
    trail's patient filter finds it even when the list was empty.
    """
    details = {"via": via, "view": view, "count": len(records),
               "patients": sorted({r.patient.pseudonym for r in records}),
               "ecgs": [str(r.public_id) for r in records]}
    if patient:
        # As asked for in the URL, which no pseudonym rule has checked yet: escaped and cut to fit object_id.
        audit_log(actor=actor, action=AuditAction.ECG_LIST, object_type="Patient", object_id=shown(patient, 48)[:64],
                  details=details)
    else:
        audit_log(actor=actor, action=AuditAction.ECG_LIST, object_type="EcgRecord", object_id="list", details=details)
