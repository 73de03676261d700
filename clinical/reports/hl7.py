"""The report as an HL7 v2.5 ORU^R01 (unsolicited observation result), built and checked with hl7apy.

MSH, PID (the pseudonym only, as a coded pseudo-name), OBR (LOINC 11524-6 EKG study), NTE (decision support only),
then OBX: one NM per measured value with its UCUM unit, one CE per coded statement and TX for free text (LOINC
8601-7 EKG impression), TX for the comparison and amendment lines, and one ED carrying the PDF in Base64.

Validation: the elements are built at hl7apy's TOLERANT level and the whole message is then checked with hl7apy's
Validator against the v2.5 message structure (segments, groups, cardinality, required fields, datatypes), which
raises on any error. Not STRICT at build time: hl7apy parses OBX-5 (datatype "varies") as ST components of at most
199 characters, which no Base64 PDF fits, while v2.5 gives ED data no such limit. hl7apy reports lengths over the
v2.5 maximum only as warnings; the PDF's OBX-5 is over OBX-5's nominal 99,999 (about 230 KB here), which receivers
that enforce it would need split: none of ours is known to.
"""
from __future__ import annotations

import base64
import uuid
from datetime import datetime

from django.utils import timezone
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.exceptions import HL7apyException

from clinical.reports.data import AMENDED, PRELIMINARY, ReportData, ReportStatement
from clinical.reports.fhir import OBSERVATIONS

VERSION = "2.5"
CONTENT_TYPE = "x-application/hl7-v2+er7"
SENDER = "ECG-DS"
# HL7 table 0123 (OBR-25) / 0085 (OBX-11): P preliminary, F final, C correction.
RESULT_STATUS = {PRELIMINARY: "P", "final": "F", AMENDED: "C"}
# Local coding systems are named 99zzz (HL7 v2.5 table 0396): PTB-XL's SCP-ECG statements, mlcore.criteria's codes.
CODING = {"model": "99ECGSCP", "measurement": "99ECGCRIT"}
IMPRESSION = "8601-7^EKG impression^LN"  # LOINC, verified in the US Core STU5 clinical test codes value set
COMPARISON = "COMPARISON^Comparison with prior ECG^99ECGDS"
AMENDMENT = "AMENDMENT^Reason for amendment^99ECGDS"
EKG_STUDY = "11524-6^EKG study^LN"
REVIEWER_METHOD = "CALIPER^Measured by the reviewer (calipers) or derived from their values^99ECGDS"


class Hl7MessageError(ValueError):
    """The ORU^R01 did not validate (hl7apy's message, naming the element)."""


def escape(text: str) -> str:
    """HL7 v2.5 escape sequences (chapter 2.7.4) for text inside a field: the escape character first."""
    return (text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\").replace("&", "\\T\\")
            .replace("~", "\\R\\").replace("\r", " ").replace("\n", " "))


def unescape(text: str) -> str:
    return (text.replace("\\F\\", "|").replace("\\S\\", "^").replace("\\T\\", "&").replace("\\R\\", "~")
            .replace("\\E\\", "\\"))


def _ts(t: datetime) -> str:
    t = t if timezone.is_aware(t) else timezone.make_aware(t, timezone.utc)
    return t.strftime("%Y%m%d%H%M%S%z")


class _Obx:
    def __init__(self, group, status: str, when: str) -> None:
        self.group, self.status, self.when, self.n = group, status, when, 0

    def add(self, value_type: str, identifier: str, value: str, *, sub_id: str = "", units: str = "",
            observer: str = "", method: str = "") -> None:
        self.n += 1
        obx = self.group.add_group("ORU_R01_OBSERVATION").obx
        obx.obx_1 = str(self.n)
        obx.obx_2 = value_type
        obx.obx_3 = identifier
        if sub_id:
            obx.obx_4 = sub_id
        obx.obx_5 = value
        if units:
            obx.obx_6 = units
        obx.obx_11 = self.status
        if self.when:
            obx.obx_14 = self.when
        if observer:
            obx.obx_16 = observer  # responsible observer (XCN): who measured it
        if method:
            obx.obx_17 = method  # observation method (CE)


def _statement(obx: _Obx, s: ReportStatement, sub_id: str) -> None:
    if s.code and s.origin in CODING:
        obx.add("CE", IMPRESSION, f"{escape(s.code)}^{escape(s.display)}^{CODING[s.origin]}", sub_id=sub_id)
    else:
        obx.add("TX", IMPRESSION, escape(s.display), sub_id=sub_id)


def report_oru(data: ReportData, pdf: bytes, *, sent_at: datetime | None = None) -> str:
    """The ORU^R01 of the report in ER7 (segments separated by CR), validated before it is returned."""
    if not pdf.startswith(b"%PDF-"):
        raise Hl7MessageError("the ED observation must carry the report's PDF")
    sent_at = sent_at or timezone.now()
    status = RESULT_STATUS[data.status]
    when = _ts(data.acquired_at) if data.acquired_at else ""
    try:
        m = Message("ORU_R01", version=VERSION, validation_level=VALIDATION_LEVEL.TOLERANT)
        m.msh.msh_3 = SENDER
        m.msh.msh_7 = _ts(sent_at)
        m.msh.msh_9 = "ORU^R01^ORU_R01"
        # Unique per message (MSH-10, at most 20 characters); the report itself is named by OBR-3.
        m.msh.msh_10 = uuid.uuid4().hex[:20]
        m.msh.msh_11 = "P"
        m.msh.msh_12 = VERSION
        result = m.add_group("ORU_R01_PATIENT_RESULT")
        pid = result.add_group("ORU_R01_PATIENT").pid
        pid.pid_1 = "1"
        pid.pid_3 = f"{escape(data.patient_pseudonym)}^^^{SENDER}^PI"
        # Name type S (HL7 table 0200): a coded pseudo-name, to assure anonymity. The pseudonym is all we send.
        pid.pid_5 = f"{escape(data.patient_pseudonym)}^^^^^^S"
        order = result.add_group("ORU_R01_ORDER_OBSERVATION")
        obr = order.obr
        obr.obr_1 = "1"
        obr.obr_3 = f"{data.record_id}^{SENDER}"
        obr.obr_4 = EKG_STUDY
        if when:
            obr.obr_7 = when
        obr.obr_22 = _ts(data.confirmed_at or sent_at)
        obr.obr_25 = status
        if data.reviewer:
            obr.obr_32 = escape(data.reviewer)
        nte = order.add_segment("NTE")
        nte.nte_1 = "1"
        nte.nte_3 = escape(("Preliminary: not confirmed by a clinician. " if data.status == PRELIMINARY else "")
                           + "Decision support only: every result needs a clinician's interpretation. "
                           f"Model {data.model_version}, calibration {data.calibration_version}, report version "
                           f"{data.version}, audit reference {data.audit_reference or 'none'}.")
        obx = _Obx(order, status, when)
        for key, code, display, unit, method in OBSERVATIONS:
            value = data.measurements.get(key)
            if value is not None:
                name = display + (f" ({method.split(':')[0]})" if method else "")
                by_reviewer = key in data.reviewer_measured
                obx.add("NM", f"{code}^{escape(name)}^LN", f"{value:g}" if isinstance(value, float) else str(value),
                        units=f"{unit}^{unit}^UCUM", observer=escape(data.reviewer or "") if by_reviewer else "",
                        method=REVIEWER_METHOD if by_reviewer else "")
        for s in data.confirmed_statements or ():
            _statement(obx, s, "confirmed")
        if data.free_text.strip():
            obx.add("TX", IMPRESSION, escape(data.free_text.strip()), sub_id="confirmed")
        for s in data.computer_statements:
            _statement(obx, s, "computer")
        for line in data.comparison:
            obx.add("TX", COMPARISON, escape(line))
        if data.status == AMENDED:
            obx.add("TX", AMENDMENT, escape(data.amendment_reason.strip()))
        obx.add("ED", EKG_STUDY, f"{SENDER}^AP^PDF^Base64^{base64.b64encode(pdf).decode('ascii')}")
        m.validate()  # hl7apy: the STRICT structure check of the whole message; raises on the first error
        return m.to_er7()
    except HL7apyException as exc:
        raise Hl7MessageError(f"the ORU^R01 did not validate: {exc}") from exc
