"""The HL7 v2.5 ORU^R01 of a report, parsed back with hl7apy as a receiver would."""
from __future__ import annotations

import base64
import datetime as dt

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import parse_message

from clinical.reports.data import ReportStatement
from clinical.reports.hl7 import Hl7MessageError, report_oru, unescape
from clinical.reports.pdf import report_pdf
from tests.clinical.report_fixtures import report, spikes_signal


@pytest.fixture(scope="module")
def pdf() -> bytes:
    return report_pdf(report(spikes_signal()))


def parse(er7: str):
    # TOLERANT for the element values (hl7apy reads OBX-5 "varies" as 199-character ST), then the STRICT structure
    # check of the whole message, as report_oru itself does.
    msg = parse_message(er7, validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=True)
    msg.validate()
    return msg


def observations(msg) -> list:
    return [o.obx for o in msg.ORU_R01_PATIENT_RESULT.ORU_R01_ORDER_OBSERVATION.ORU_R01_OBSERVATION]


def test_the_oru_parses_and_carries_each_measurement_with_its_unit(pdf):
    msg = parse(report_oru(report(spikes_signal()), pdf))
    assert msg.msh.msh_9.to_er7() == "ORU^R01^ORU_R01" and msg.msh.msh_12.to_er7() == "2.5"
    pid = msg.ORU_R01_PATIENT_RESULT.ORU_R01_PATIENT.pid
    assert pid.pid_3.to_er7() == "PT-0042^^^ECG-DS^PI" and pid.pid_5.to_er7() == "PT-0042^^^^^^S"
    assert pid.pid_7.to_er7() == "" and pid.pid_8.to_er7() == ""  # nothing but the pseudonym
    obr = msg.ORU_R01_PATIENT_RESULT.ORU_R01_ORDER_OBSERVATION.obr
    assert obr.obr_4.to_er7() == "11524-6^EKG study^LN" and obr.obr_25.to_er7() == "P"
    assert obr.obr_7.to_er7() == "20261130081500+0000"
    nm = {o.obx_3.to_er7().split("^")[0]: (o.obx_5.to_er7(), o.obx_6.to_er7(), o.obx_11.to_er7())
          for o in observations(msg) if o.obx_2.to_er7() == "NM"}
    assert nm == {"8867-4": ("60", "/min^/min^UCUM", "P"), "8625-6": ("160", "ms^ms^UCUM", "P"),
                  "8633-0": ("92", "ms^ms^UCUM", "P"), "8634-8": ("400", "ms^ms^UCUM", "P"),
                  "8636-3": ("400", "ms^ms^UCUM", "P"), "8626-4": ("60", "deg^deg^UCUM", "P"),
                  "8638-9": ("40", "deg^deg^UCUM", "P")}


def test_statements_are_coded_obx_and_the_pdf_comes_back_byte_for_byte(pdf):
    msg = parse(report_oru(report(spikes_signal()), pdf))
    ce = [(o.obx_4.to_er7(), o.obx_5.to_er7()) for o in observations(msg) if o.obx_2.to_er7() == "CE"]
    assert ce == [("computer", "STTC^ST/T change^99ECGSCP"),
                  ("computer", "AVB1^First-degree AV block, PR 216 ms (> 200)^99ECGCRIT")]
    (ed,) = [o for o in observations(msg) if o.obx_2.to_er7() == "ED"]
    source, kind, subtype, encoding, data = ed.obx_5.to_er7().split("^")
    assert (source, kind, subtype, encoding) == ("ECG-DS", "AP", "PDF", "Base64")
    assert base64.b64decode(data) == pdf
    assert [o.obx_1.to_er7() for o in observations(msg)] == [str(i) for i in range(1, len(observations(msg)) + 1)]


def test_a_confirmed_report_sends_free_text_escaped_and_status_corrected(pdf):
    data = report(spikes_signal(), status="amended", version=2, reviewer="rev-cy",
                  confirmed_at=dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC),
                  confirmed_statements=(ReportStatement("", "Sinus rhythm | PR^long & wide ~ \\ ok", "reviewer"),),
                  comparison=("QTc +60 ms",), amendment_reason="PR re-measured")
    msg = parse(report_oru(data, pdf))
    obr = msg.ORU_R01_PATIENT_RESULT.ORU_R01_ORDER_OBSERVATION.obr
    assert obr.obr_25.to_er7() == "C" and obr.obr_32.to_er7() == "rev-cy"
    tx = [(o.obx_3.to_er7().split("^")[0], o.obx_4.to_er7(), unescape(o.obx_5.to_er7()))
          for o in observations(msg) if o.obx_2.to_er7() == "TX"]
    assert tx == [("8601-7", "confirmed", "Sinus rhythm | PR^long & wide ~ \\ ok"),
                  ("COMPARISON", "", "QTc +60 ms"), ("AMENDMENT", "", "PR re-measured")]
    assert {o.obx_11.to_er7() for o in observations(msg)} == {"C"}


def test_something_that_is_not_a_pdf_is_refused():
    with pytest.raises(Hl7MessageError, match="must carry the report's PDF"):
        report_oru(report(spikes_signal()), b"GIF89a")


def test_a_message_that_breaks_the_structure_does_not_parse_strictly(pdf):
    er7 = report_oru(report(spikes_signal()), pdf)
    # OBR-4 (universal service identifier) is required in v2.5.
    broken = er7.replace("|11524-6^EKG study^LN||", "|||", 1)
    assert broken != er7
    with pytest.raises(HL7apyException, match="OBR_4"):
        parse(broken)


def test_an_ecg_without_measurements_or_statements_sends_only_the_pdf(pdf):
    from clinical.measurements import api_values

    msg = parse(report_oru(report(spikes_signal(), measurements=api_values({}), computer_statements=()), pdf))
    assert [o.obx_2.to_er7() for o in observations(msg)] == ["ED"]
