"""Report downloads: build the document from the stored result and audit who took which one, together."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from clinical.audit import AuditAction, audit_log
from clinical.errors import ApplicationError
from clinical.models import EcgRecord
from clinical.reports import fhir, hl7
from clinical.reports.pdf import PAPERS, report_pdf
from clinical.reports.selectors import report_data

PDF, FHIR, HL7 = "pdf", "fhir", "hl7"
FORMATS = (PDF, FHIR, HL7)


@dataclass(frozen=True)
class ReportFile:
    content: bytes
    content_type: str
    filename: str
    status: str  # the report's: preliminary / final / amended


def report_export(*, actor, record: EcgRecord, fmt: str, via: str, paper: str = "A4") -> ReportFile:
    """The report of ``record`` as a PDF, a FHIR R4 bundle or an HL7 v2.5 ORU^R01, with its ``report.downloaded``
    audit event. The document is built (and validated) first and the event written after, in one transaction: a
    document that fails to build is not audited as sent, and one whose audit fails is not sent.

    Raises ApplicationError: an unknown format or paper (field "format" / "paper"), or ReportNotReady (no result yet).
    """
    if fmt not in FORMATS:
        raise ApplicationError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}", field="format")
    if paper not in PAPERS:
        raise ApplicationError(f"paper must be one of {', '.join(PAPERS)}; got {paper!r}", field="paper")
    data = report_data(record=record)
    now = timezone.now()
    pdf = report_pdf(data, paper=paper)
    # The pseudonym as typed at upload may hold characters a Content-Disposition filename must not.
    stem = f"ecg-report-{re.sub(r'[^A-Za-z0-9._-]', '_', data.patient_pseudonym)}-{record.public_id}-v{data.version}"
    if fmt == PDF:
        out = ReportFile(pdf, "application/pdf", f"{stem}.pdf", data.status)
    elif fmt == FHIR:
        body = json.dumps(fhir.report_fhir(data, pdf, issued=data.confirmed_at or now), separators=(",", ":"))
        out = ReportFile(body.encode(), fhir.CONTENT_TYPE, f"{stem}.fhir.json", data.status)
    else:
        out = ReportFile(hl7.report_oru(data, pdf, sent_at=now).encode(), hl7.CONTENT_TYPE, f"{stem}.hl7",
                         data.status)
    with transaction.atomic():
        audit_log(actor=actor, action=AuditAction.REPORT_DOWNLOADED,
                  object_type="EcgRecord", object_id=record.public_id,
                  details={"format": fmt, "via": via, "paper": paper, "status": data.status,
                           "version": data.version, "bytes": len(out.content),
                           "sha256": hashlib.sha256(out.content).hexdigest()})
    return out
