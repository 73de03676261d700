"""XML exports (issue 13): GE MUSE, HL7 aECG and Philips Sierra ECG samples read as the same microvolts an
independent reading of each file gives, and broken or hostile XML is refused with a message saying what is wrong."""
from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from clinical.intake import IntakeError, ParsedEcg, parse_upload
from clinical.intake.philips import REMEDY as REMEDY_PHILIPS
from mlcore.preprocess import LEADS

SAMPLES = Path("/work/shared/ecg_samples")
MUSE = SAMPLES / "ge-muse-xml" / "braveheart_example1.xml"
AECG = SAMPLES / "hl7-aecg" / "Example_aECG.xml"
PHILIPS = [SAMPLES / "philips-xml" / "129DYPRG.XML", SAMPLES / "philips-xml" / "3191723_ZZDEMOPTONLY_1-04_orig.xml"]
UV = 1e-3  # 1 microvolt, in mV
HL7 = {"v3": "urn:hl7-org:v3"}


def needs(*paths: Path):
    return pytest.mark.skipif(not all(p.exists() for p in paths),
                              reason="the XML ECG samples (shared/ecg_samples) are not here")


def upload(content: bytes, name: str = "ecg.xml") -> ParsedEcg:
    return parse_upload(files={"file": (name, content)}, fs=None)


def refused(content: bytes) -> str:
    with pytest.raises(IntakeError) as info:
        upload(content)
    assert info.value.field == "file"
    return info.value.message


def row(ecg: ParsedEcg, lead: str) -> np.ndarray:
    return ecg.signal[LEADS.index(lead)].astype(np.float64)


# ---------------------------------------------------------------------------------------------------------------
# GE MUSE


def muse_rhythm(content: bytes) -> dict[str, np.ndarray]:
    """The rhythm leads in mV, decoded here with numpy straight from the base64."""
    rhythm = next(w for w in ET.fromstring(content).iter("Waveform") if w.findtext("WaveformType") == "Rhythm")
    leads = {}
    for lead in rhythm.iter("LeadData"):
        digits = np.frombuffer(base64.b64decode(lead.findtext("WaveFormData")), dtype="<i2")
        leads[lead.findtext("LeadID")] = digits * float(lead.findtext("LeadAmplitudeUnitsPerBit")) * 1e-3
    return leads


@needs(MUSE)
def test_ge_muse_reads_the_stored_leads_and_derives_the_limb_leads():
    content = MUSE.read_bytes()
    ecg = upload(content, MUSE.name)
    assert (ecg.signal.shape, ecg.fs, ecg.duration_s, ecg.source_format) == ((12, 5000), 500.0, 10.0, "ge-muse-xml")
    stored = muse_rhythm(content)
    for lead in ("I", "II", "V1", "V6"):
        np.testing.assert_allclose(row(ecg, lead), stored[lead], atol=UV)
    np.testing.assert_allclose(row(ecg, "III"), stored["II"] - stored["I"], atol=UV)
    np.testing.assert_allclose(row(ecg, "aVR"), -(stored["I"] + stored["II"]) / 2, atol=UV)
    assert any("derived from I and II" in note for note in ecg.notes)


@needs(MUSE)
def test_ge_muse_measurements_are_those_the_file_states():
    measured = upload(MUSE.read_bytes()).device["measurements"]
    assert measured["VentricularRate"] == 48 and measured["QRSDuration"] == 96
    assert measured == {"VentricularRate": 48, "PRInterval": 138, "QRSDuration": 96, "QTInterval": 452,
                        "QTCorrected": 403, "PAxis": 51, "RAxis": 20, "TAxis": 40}


@needs(MUSE)
def test_ge_muse_statements_join_fragments_into_lines_and_device_is_read():
    content = MUSE.read_bytes().replace(b"<RestingECG>", b"""<RestingECG><TestDemographics>
        <AcquisitionDevice>MAC55</AcquisitionDevice><AcquisitionDate>12-11-2018</AcquisitionDate>
        <AcquisitionTime>15:21:27</AcquisitionTime></TestDemographics><Diagnosis>
        <DiagnosisStatement><StmtFlag>USERINSERT</StmtFlag><StmtText>Sinus bradycardia</StmtText></DiagnosisStatement>
        <DiagnosisStatement><StmtFlag>ENDSLINE</StmtFlag><StmtText>with 1st degree AV block</StmtText>
        </DiagnosisStatement><DiagnosisStatement><StmtFlag>ENDSLINE</StmtFlag><StmtText>Abnormal ECG</StmtText>
        </DiagnosisStatement></Diagnosis>""", 1)
    device = upload(content).device
    assert device["device"] == "MAC55" and device["acquired"] == "2018-12-11T15:21:27"
    assert device["statements"] == ["Sinus bradycardia with 1st degree AV block", "Abnormal ECG"]


@needs(MUSE)
def test_ge_muse_in_utf16_with_bom_reads_the_same():
    content = MUSE.read_bytes()
    text = content.decode("iso-8859-1").replace('encoding="ISO-8859-1"', 'encoding="UTF-16"')
    np.testing.assert_array_equal(upload(text.encode("utf-16")).signal, upload(content).signal)


def _without_lead(content: bytes, lead: str) -> bytes:
    text = content.decode("iso-8859-1")
    rhythm = text.index("<WaveformType>Rhythm</WaveformType>")
    start = text.index(f"<LeadID>{lead}</LeadID>", rhythm)
    begin, end = text.rindex("<LeadData>", 0, start), text.index("</LeadData>", start) + len("</LeadData>")
    return (text[:begin] + text[end:]).encode("iso-8859-1")


@needs(MUSE)
def test_ge_muse_with_a_lead_missing_is_refused_naming_it():
    message = refused(_without_lead(MUSE.read_bytes(), "V3"))
    assert message.startswith("Lead V3 is missing from the rhythm waveform of this GE MUSE file")


def _muse_lead_as(content: bytes, lead: str, new_id: str, mv: np.ndarray) -> bytes:
    """The rhythm waveform's lead ``lead`` replaced by lead ``new_id`` holding ``mv`` (at the file's 4.88 uV/bit)."""
    text = content.decode("iso-8859-1")
    rhythm = text.index("<WaveformType>Rhythm</WaveformType>")
    at = text.index(f"<LeadID>{lead}</LeadID>", rhythm)
    begin, end = text.index("<WaveFormData>", at) + len("<WaveFormData>"), text.index("</WaveFormData>", at)
    digits = np.round(mv / (4.88 * UV)).astype("<i2")
    text = (text[:at] + f"<LeadID>{new_id}</LeadID>" + text[at + len(f"<LeadID>{lead}</LeadID>"):begin]
            + base64.b64encode(digits.tobytes()).decode() + text[end:])
    return text.encode("iso-8859-1")


@needs(MUSE)
def test_ge_muse_notes_which_limb_leads_were_derived_from_which():
    assert upload(MUSE.read_bytes()).notes == ["III, aVR, aVL and aVF derived from I and II"]


@needs(MUSE)
def test_ge_muse_with_ii_and_avl_instead_of_i_and_ii_reconstructs_i():
    content = MUSE.read_bytes()
    stored = muse_rhythm(content)
    assert "4.88" in content.decode("iso-8859-1") and sorted(stored) == sorted(["I", "II", *LEADS[6:]])
    ecg = upload(_muse_lead_as(content, "I", "aVL", stored["I"] - stored["II"] / 2))
    assert ecg.notes == ["I, III, aVR and aVF derived from II and aVL"]
    np.testing.assert_allclose(row(ecg, "I"), stored["I"], atol=3 * UV)  # half a 4.88 uV step from rounding
    np.testing.assert_array_equal(ecg.signal[6:], upload(content).signal[6:])


@needs(MUSE)
def test_ge_muse_with_an_absurd_gain_is_refused_by_the_amplitude_check():
    content = MUSE.read_bytes().replace(b"<LeadAmplitudeUnitsPerBit>4.88<", b"<LeadAmplitudeUnitsPerBit>1e9<")
    assert "but an ECG spans a few mV" in refused(content)


@needs(MUSE)
def test_ge_muse_without_a_rhythm_waveform_is_refused():
    content = MUSE.read_bytes().replace(b"<WaveformType>Rhythm<", b"<WaveformType>Median<")
    assert refused(content).startswith("This GE MUSE file has no rhythm waveform")


@needs(MUSE)
def test_truncated_xml_is_refused_as_cut_short():
    content = MUSE.read_bytes()
    assert "it looks cut short" in refused(content[: len(content) // 2])


# ---------------------------------------------------------------------------------------------------------------
# HL7 aECG


def aecg_rhythm(content: bytes) -> tuple[float, dict[str, np.ndarray]]:
    """fs and the rhythm leads in mV, from the digits as xml.etree reads them."""
    root = ET.fromstring(content)
    series = next(s for s in root.iterfind("v3:component/v3:series", HL7)
                  if s.find("v3:code", HL7).get("code") == "RHYTHM")
    fs, leads = None, {}
    for seq in series.iterfind("v3:component/v3:sequenceSet/v3:component/v3:sequence", HL7):
        code = seq.find("v3:code", HL7).get("code")
        value = seq.find("v3:value", HL7)
        if code == "TIME_ABSOLUTE":
            increment = value.find("v3:increment", HL7)
            assert increment.get("unit") == "s"
            fs = 1 / float(increment.get("value"))
        elif code.startswith("MDC_ECG_LEAD_"):
            origin, scale = value.find("v3:origin", HL7), value.find("v3:scale", HL7)
            assert origin.get("unit") == scale.get("unit") == "uV"
            digits = np.array([int(d) for d in value.findtext("v3:digits", namespaces=HL7).split()])
            leads[code.removeprefix("MDC_ECG_LEAD_")] = (float(origin.get("value"))
                                                         + float(scale.get("value")) * digits) * 1e-3
    return fs, leads


@needs(AECG)
def test_hl7_aecg_reads_the_digits_as_origin_plus_scale_times_digit():
    content = AECG.read_bytes()
    ecg = upload(content, AECG.name)
    fs, leads = aecg_rhythm(content)
    assert (ecg.signal.shape, ecg.fs, fs, ecg.duration_s, ecg.source_format) == ((12, 5000), 500.0, 500.0, 10.0,
                                                                                 "hl7-aecg")
    assert len(leads) == 12
    for code, values in leads.items():
        lead = {"AVR": "aVR", "AVL": "aVL", "AVF": "aVF"}.get(code, code)
        np.testing.assert_allclose(row(ecg, lead), values, atol=UV)
    assert ecg.notes == []
    assert ecg.device["device"] == "Mortara Instrument, Inc. ELI250"
    assert ecg.device["acquired"] == "2002-11-22T09:10:00"
    assert ecg.device["statements"] == ["Sinus Rhythm"]


@needs(AECG)
def test_hl7_aecg_with_only_i_and_ii_derives_the_other_limb_leads():
    text = AECG.read_text("utf-8")
    for code in ("III", "AVR", "AVL", "AVF"):
        start = text.index(f'<code code="MDC_ECG_LEAD_{code}"')
        begin = text.rindex("<component>", 0, start)
        end = text.index("</component>", start) + len("</component>")
        text = text[:begin] + text[end:]
    ecg = upload(text.encode("utf-8"))
    _, leads = aecg_rhythm(AECG.read_bytes())
    np.testing.assert_allclose(row(ecg, "III"), leads["II"] - leads["I"], atol=UV)
    assert any("derived from I and II" in note for note in ecg.notes)


def _aecg_without(text: str, codes: tuple[str, ...]) -> str:
    for code in codes:
        start = text.index(f'<code code="MDC_ECG_LEAD_{code}"')
        begin = text.rindex("<component>", 0, start)
        end = text.index("</component>", start) + len("</component>")
        text = text[:begin] + text[end:]
    return text


@needs(AECG)
def test_hl7_aecg_with_ii_and_avl_reconstructs_i():
    ecg = upload(_aecg_without(AECG.read_text("utf-8"), ("I", "III", "AVR", "AVF")).encode("utf-8"))
    _, leads = aecg_rhythm(AECG.read_bytes())
    assert ecg.notes == ["I, III, aVR and aVF derived from II and aVL"]
    # The cart derived its aVL from I and II and rounded it to the file's 5 uV digits.
    np.testing.assert_allclose(row(ecg, "I"), leads["I"], atol=5 * UV)
    np.testing.assert_allclose(row(ecg, "II"), leads["II"], atol=UV)


@needs(AECG)
def test_hl7_aecg_without_v3_is_refused_naming_it():
    message = refused(_aecg_without(AECG.read_text("utf-8"), ("V3",)).encode("utf-8"))
    assert message.startswith("Lead V3 is missing from the rhythm waveforms of this HL7 aECG file; a 12-lead ECG "
                              "needs all six chest leads (V1–V6), which cannot be derived from the other leads.")
    assert message.endswith("Export the ECG again with its rhythm waveforms.")


def test_empty_annotated_ecg_is_refused_for_having_no_rhythm_waveform():
    assert refused(b"<AnnotatedECG/>").startswith("This HL7 aECG file has no rhythm waveform")


# ---------------------------------------------------------------------------------------------------------------
# Philips Sierra ECG XML


@needs(*PHILIPS)
@pytest.mark.parametrize("path", PHILIPS, ids=["1.03", "1.04-utf16"])
def test_philips_matches_sierraecg_without_the_calibration_pulse(path: Path):
    sierraecg = pytest.importorskip("sierraecg")
    ecg = upload(path.read_bytes(), path.name)
    assert (ecg.signal.shape, ecg.fs, ecg.duration_s, ecg.source_format) == ((12, 5000), 500.0, 10.0, "philips-xml")
    reference = sierraecg.read_file(str(path))
    for lead in reference.leads:
        mv = lead.samples.astype(np.float64) * 5 * 1e-3  # both samples state 5 uV per unit
        assert len(mv) == 5500
        # The file's last second holds the 1 mV calibration pulse (10.7-10.9 s), which the upload leaves out.
        baseline = np.median(np.r_[mv[5330:5348], mv[5452:5470]])
        assert np.median(mv[5360:5440]) - baseline == pytest.approx(1.0, abs=0.02)
        np.testing.assert_allclose(row(ecg, lead.label), mv[:5000], atol=UV)
    assert any("calibration" in note for note in ecg.notes)


@needs(*PHILIPS)
def test_philips_machine_statements_and_measurements_are_kept():
    v103 = upload(PHILIPS[0].read_bytes()).device
    assert v103["statements"] == ["Sinus bradycardia", "Nonspecific intraventricular conduction delay",
                                  "Inferior infarct, acute (LCx)", ">>> Acute MI <<<"]
    assert v103["device"].startswith("HeartstartMRx") and v103["acquired"] == "2011-12-01T07:27:34"
    assert v103["measurements"]["VentricularRate"] == 41
    v104 = upload(PHILIPS[1].read_bytes()).device
    assert v104["statements"][0] == "SINUS RHYTHM" and "LEFT VENTRICULAR HYPERTROPHY" in v104["statements"][1]
    assert v104["measurements"]["QRSDuration"] == 84 and v104["device"].startswith("PageWriter Touch")


def _philips_uncompressed(leads: dict[str, np.ndarray]) -> bytes:
    """The 1.04 sample with its waveforms replaced by ``leads`` (int16 digits at 5 uV, 11 s at 500 Hz), stored
    uncompressed as the format allows."""
    text = PHILIPS[1].read_bytes().decode("utf-16")
    begin, end = text.index("<parsedwaveforms"), text.index("</parsedwaveforms>") + len("</parsedwaveforms>")
    data = base64.b64encode(b"".join(np.asarray(v, dtype="<i2").tobytes() for v in leads.values())).decode()
    element = (f'<parsedwaveforms dataencoding="Base64" compression="Uncompressed" numberofleads="{len(leads)}" '
               f'leadlabels="{" ".join(leads)}" durationperchannel="11000" samplespersecond="500" resolution="5">'
               f"{data}</parsedwaveforms>")
    return (text[:begin] + element + text[end:]).encode("utf-16")


@needs(*PHILIPS)
def test_philips_with_only_i_ii_and_v1_v6_derives_the_other_limb_leads():
    sierraecg = pytest.importorskip("sierraecg")
    digits = {lead.label: lead.samples for lead in sierraecg.read_file(str(PHILIPS[1])).leads}
    ecg = upload(_philips_uncompressed({lead: digits[lead] for lead in ("I", "II", *LEADS[6:])}))
    assert ecg.notes[0] == "III, aVR, aVL and aVF derived from I and II"
    full = upload(PHILIPS[1].read_bytes())
    for lead in ("I", "II", *LEADS[6:]):  # the stored leads as the compressed file's, bit for bit
        np.testing.assert_array_equal(ecg.signal[LEADS.index(lead)], full.signal[LEADS.index(lead)])
    # The cart's own III, aVR, aVL, aVF (from their residuals) agree with the derived ones to its rounding.
    np.testing.assert_allclose(ecg.signal[:6], full.signal[:6], atol=10 * UV)


@needs(*PHILIPS)
def test_philips_limb_leads_other_than_i_and_ii_alone_are_refused():
    # The format stores III, aVR, aVL and aVF as residuals of their prediction from I and II; without I they are
    # not leads, so II with aVL cannot be read as it can in the other formats.
    sierraecg = pytest.importorskip("sierraecg")
    digits = {lead.label: lead.samples for lead in sierraecg.read_file(str(PHILIPS[1])).leads}
    message = refused(_philips_uncompressed({lead: digits[lead] for lead in ("II", "aVL", *LEADS[6:])}))
    assert message.startswith("This Philips XML file stores aVL but not all of I, II, III, aVR, aVL and aVF")


@needs(*PHILIPS)
def test_philips_without_v3_is_refused_naming_it():
    sierraecg = pytest.importorskip("sierraecg")
    digits = {lead.label: lead.samples for lead in sierraecg.read_file(str(PHILIPS[1])).leads}
    message = refused(_philips_uncompressed({lead: digits[lead] for lead in LEADS if lead != "V3"}))
    assert message.startswith("Lead V3 is missing from the rhythm waveforms of this Philips XML file; a 12-lead "
                              "ECG needs all six chest leads (V1–V6), which cannot be derived from the other leads.")
    assert message.endswith(REMEDY_PHILIPS)


# ---------------------------------------------------------------------------------------------------------------
# Any XML


def test_xml_bomb_is_refused_before_expansion():
    laughs = "".join(f'<!ENTITY lol{k} "{f"&lol{k - 1};" * 10}">' for k in range(1, 10))
    bomb = f'<?xml version="1.0"?><!DOCTYPE RestingECG [<!ENTITY lol0 "lol">{laughs}]><RestingECG>&lol9;</RestingECG>'
    assert "declares entities" in refused(bomb.encode())


def test_external_entity_is_refused():
    xxe = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><RestingECG>&x;</RestingECG>'
    assert "refused unread" in refused(xxe)


def test_bytes_that_do_not_match_the_declared_encoding_are_refused():
    latin1 = '<?xml version="1.0" encoding="UTF-8"?><RestingECG><PatientLastName>Müller</PatientLastName>'
    message = refused((latin1 + "</RestingECG>").encode("iso-8859-1"))
    assert message.startswith("The file is not well-formed XML") and "encoding" in message


def test_xml_of_another_kind_is_refused_naming_the_formats_read():
    message = refused(b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>')
    assert message.startswith("This XML file is not a GE MUSE, Philips or HL7 aECG ECG export (its root element "
                              "is <svg>)")


def test_upper_case_extension_is_accepted_as_xml():
    assert re.search("no rhythm waveform", refused_named(b"<AnnotatedECG/>", "ECG.XML"))


def refused_named(content: bytes, name: str) -> str:
    with pytest.raises(IntakeError) as info:
        upload(content, name)
    return info.value.message
