"""SCP-ECG uploads (issue 13): the sample record reads as the same recording as the HL7 aECG example, and broken
records are refused with a message saying what is wrong."""
from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from clinical.intake import IntakeError, parse_upload, scp_ecg
from mlcore.preprocess import LEADS
from tests.clinical.export_fixtures import scp_record

SAMPLES = Path("/work/shared/ecg_samples")
SCP = SAMPLES / "scp-ecg" / "Example.scp"
AECG = SAMPLES / "hl7-aecg" / "Example_aECG.xml"
pytestmark = pytest.mark.skipif(not (SCP.exists() and AECG.exists()),
                                reason="the SCP-ECG and HL7 aECG samples (shared/ecg_samples) are not here")
HL7 = {"v3": "urn:hl7-org:v3"}


@pytest.fixture(scope="module")
def scp_bytes() -> bytes:
    return SCP.read_bytes()


@pytest.fixture(scope="module")
def aecg_leads() -> dict[str, np.ndarray]:
    """The HL7 file's rhythm leads in mV: digits × scale + origin (both in µV there)."""
    root = ET.parse(AECG).getroot()
    leads = {}
    for series in root.iterfind(".//v3:series", HL7):
        if series.find("v3:code", HL7).get("code") != "RHYTHM":
            continue
        # The rhythm series' own sequences; the representative beats sit in a series nested under it.
        for sequence in series.iterfind("v3:component/v3:sequenceSet/v3:component/v3:sequence", HL7):
            code = sequence.find("v3:code", HL7).get("code")
            if not code.startswith("MDC_ECG_LEAD_"):
                continue
            value = sequence.find("v3:value", HL7)
            assert value.find("v3:scale", HL7).get("unit") == "uV"
            scale = float(value.find("v3:scale", HL7).get("value"))
            origin = float(value.find("v3:origin", HL7).get("value"))
            digits = np.array(value.find("v3:digits", HL7).text.split(), dtype=np.float64)
            leads[code.removeprefix("MDC_ECG_LEAD_")] = (digits * scale + origin) / 1000.0
        break
    return {{"AVR": "aVR", "AVL": "aVL", "AVF": "aVF"}.get(k, k): v for k, v in leads.items()}


def _upload(content: bytes):
    return parse_upload(files={"file": ("Example.scp", content)}, fs=None)


# ---------------------------------------------------------------------------------------------------------------
# Building records: the sample's sections, changed, written back with a fresh section 0, lengths and CRCs
# (export_fixtures.scp_record).


def _split(record: bytes) -> dict[int, bytes]:
    (length0,) = struct.unpack_from("<I", record, 10)
    out = {}
    for at in range(22, 6 + length0 - 9, 10):
        number, length, index = struct.unpack_from("<HII", record, at)
        if length:
            out[number] = record[index - 1 + 16:index - 1 + length]
    del out[0]
    return out


def _encode(values: list[int]) -> bytes:
    """Default-table Huffman code of the values themselves (no differences): ±8 directly, else 16-bit escapes."""
    bits = []
    for v in values:
        if v == 0:
            bits.append("0")
        elif -8 <= v <= 8:
            bits.append("1" * abs(v) + ("00" if v > 0 else "01"))
        else:
            bits.append("1111111111" + format(v & 0xFFFF, "016b"))
    stream = "".join(bits)
    stream += "0" * (-len(stream) % 8)
    return bytes(int(stream[i:i + 8], 2) for i in range(0, len(stream), 8))


def _rhythm(body: bytes, streams: list[bytes], *, difference: int, bimodal: int = 0) -> bytes:
    multiplier, interval = struct.unpack_from("<HH", body, 0)
    return (struct.pack("<HHBB", multiplier, interval, difference, bimodal)
            + struct.pack(f"<{len(streams)}H", *map(len, streams)) + b"".join(streams))


# ---------------------------------------------------------------------------------------------------------------
# The sample


def test_sample_reads_as_12_leads_at_500_hz_for_10_s(scp_bytes):
    ecg = _upload(scp_bytes)
    assert ecg.signal.shape == (12, 5000)
    assert ecg.fs == 500.0 and ecg.duration_s == 10.0
    assert ecg.source_format == "scp-ecg"
    assert ecg.device["device"] == "ECGConversion ELI250"  # section 1: trade name (the converter) and cart model
    assert ecg.device["acquired"] == "2002-11-22T09:10:00"  # the HL7 file's effectiveTime low, 20021122091000
    # Section 7 of the sample; the HL7 example is annotated QRS 120 ms and QT 420 ms.
    assert ecg.device["measurements"]["QRSDuration"] == 120 and ecg.device["measurements"]["QTInterval"] == 420


def test_every_lead_equals_the_hl7_aecg_recording(scp_bytes, aecg_leads):
    ecg = _upload(scp_bytes)
    assert set(aecg_leads) == set(LEADS)
    # The two exports may start at different samples: find the shift on lead II, then require it of every lead.
    ii, ref = ecg.signal[LEADS.index("II")].astype(np.float64), aecg_leads["II"]
    shifts = [s for s in range(-50, 51)
              if np.abs(ii[max(s, 0):len(ii) + min(s, 0)] - ref[max(-s, 0):len(ref) + min(-s, 0)]).max() < 1e-3]
    assert len(shifts) == 1, shifts
    shift = shifts[0]
    assert shift == 0  # found: the SCP and HL7 files start on the same sample
    for k, lead in enumerate(LEADS):
        ours, theirs = ecg.signal[k].astype(np.float64), aecg_leads[lead]
        n = min(len(ours), len(theirs)) - abs(shift)
        assert n >= 4900
        a, b = ours[max(shift, 0):][:n], theirs[max(-shift, 0):][:n]
        assert np.abs(a - b).max() < 1e-3, lead  # within 1 µV


def test_custom_huffman_table_decodes_like_the_default(scp_bytes):
    # The default table written out as a custom table (base codes stored bit-reversed, as the standard says).
    rows = [(1, 1, 0, 0b0)]
    for n in range(1, 9):
        rows += [(n + 2, n + 2, n, ((1 << n) - 1) << 2), (n + 2, n + 2, -n, (((1 << n) - 1) << 2) | 1)]
    rows += [(10, 18, 0, 0b1111111110), (10, 26, 0, 0b1111111111)]
    table = b"".join(struct.pack("<BBBhI", p, t, 1, v, int(format(c, f"0{p}b")[::-1], 2)) for p, t, v, c in rows)
    sections = _split(scp_bytes)
    sections[2] = struct.pack("<HH", 1, len(rows)) + table
    custom = _upload(scp_record(sections))
    np.testing.assert_array_equal(custom.signal, _upload(scp_bytes).signal)

    sections[2] = struct.pack("<HH", 1, len(rows) - 2) + table[:-18]  # no escapes: large values have no code
    with pytest.raises(IntakeError, match="no code of the Huffman table"):
        _upload(scp_record(sections))


def _leads_and_values(scp_bytes: bytes) -> tuple[dict[int, bytes], list[tuple[int, int, int]], list[list[int]]]:
    sections = _split(scp_bytes)
    n = sections[3][0]
    leads = [struct.unpack_from("<IIB", sections[3], 2 + 9 * i) for i in range(n)]
    ecg = scp_ecg.read(scp_bytes, "Example.scp")
    (multiplier,) = struct.unpack_from("<H", sections[6], 0)
    values = [[round(v) for v in ecg.columns[scp_ecg.LEAD_NAMES[code]] * 1e6 / multiplier] for _, _, code in leads]
    return sections, leads, values


def test_only_i_ii_and_v1_v6_stored_derives_the_other_limb_leads(scp_bytes):
    sections, leads, values = _leads_and_values(scp_bytes)
    keep = [i for i, (_, _, code) in enumerate(leads) if code <= 8]
    assert len(keep) == 8
    sections[3] = bytes([8, sections[3][1] & 0x07 | (8 << 3)]) + b"".join(struct.pack("<IIB", *leads[i]) for i in keep)
    sections[6] = _rhythm(sections[6], [_encode(values[i]) for i in keep], difference=0)
    sections.pop(4), sections.pop(5)
    ecg = _upload(scp_record(sections))
    full = _upload(scp_bytes)
    assert ecg.notes == ["III, aVR, aVL and aVF derived from I and II"]
    np.testing.assert_allclose(ecg.signal, full.signal, atol=0.003)  # the stored leads were rounded by the cart


def _keep(scp_bytes: bytes, codes: set[int]) -> bytes:
    """The sample with only the leads of these SCP codes, their rhythm re-encoded without reference beats."""
    sections, leads, values = _leads_and_values(scp_bytes)
    keep = [i for i, (_, _, code) in enumerate(leads) if code in codes]
    sections[3] = bytes([len(keep), sections[3][1] & 0x07 | (len(keep) << 3)]) + b"".join(
        struct.pack("<IIB", *leads[i]) for i in keep)
    sections[6] = _rhythm(sections[6], [_encode(values[i]) for i in keep], difference=0)
    sections.pop(4), sections.pop(5)
    return scp_record(sections)


def test_ii_avl_and_v1_v6_stored_reconstruct_i_and_the_other_limb_leads(scp_bytes):
    ecg = _upload(_keep(scp_bytes, {2, 63, 3, 4, 5, 6, 7, 8}))  # II, aVL, V1-V6
    full = _upload(scp_bytes)
    assert ecg.notes == ["I, III, aVR and aVF derived from II and aVL"]
    np.testing.assert_allclose(ecg.signal, full.signal, atol=0.003)  # the cart rounded its derived aVL


def test_a_record_without_v3_is_refused_naming_it(scp_bytes):
    with pytest.raises(IntakeError) as caught:
        _upload(_keep(scp_bytes, {1, 2, 3, 4, 6, 7, 8}))
    assert caught.value.message.startswith("Lead V3 is missing from the SCP-ECG record")


def test_reference_beat_subtraction_is_added_back_at_the_fiducials(scp_bytes):
    sections, leads, values = _leads_and_values(scp_bytes)
    # A 200 ms reference beat (fiducial at its sample 51) subtracted over three QRS zones around samples 1000,
    # 2000 and 3000; the second is of another beat type and so not subtracted.
    n_ref, fiducial = 100, 51
    beat = [[(lead + 1) * (j - 30) for j in range(n_ref)] for lead in range(len(leads))]
    zones = [(0, 960, 1000, 1040), (1, 1960, 2000, 2040), (0, 2955, 3000, 3049)]
    residual = [list(v) for v in values]
    for kind, start, fc, end in zones:
        if kind == 0:
            for lead in range(len(leads)):
                for s in range(start, end + 1):
                    residual[lead][s - 1] -= beat[lead][s - fc + fiducial - 1]
    sections[3] = bytes([sections[3][0], sections[3][1] | 0x01]) + sections[3][2:]
    sections[4] = (struct.pack("<HHH", 200, fiducial, len(zones))
                   + b"".join(struct.pack("<HIII", *zone) for zone in zones)
                   + b"".join(struct.pack("<II", start, end) for _, start, _, end in zones))
    sections[5] = _rhythm(sections[6], [_encode(b) for b in beat], difference=0)
    sections[5] = sections[5][:2] + struct.pack("<H", 2000) + sections[5][4:]
    sections[6] = _rhythm(sections[6], [_encode(r) for r in residual], difference=0)
    np.testing.assert_array_equal(_upload(scp_record(sections)).signal, _upload(scp_bytes).signal)


# ---------------------------------------------------------------------------------------------------------------
# Broken records


def test_truncated_file_is_refused(scp_bytes):
    with pytest.raises(IntakeError, match="truncated") as refused:
        _upload(scp_bytes[: len(scp_bytes) * 2 // 3])
    assert "Upload the ECG exported again" in refused.value.message


def test_flipped_crc_byte_is_refused(scp_bytes):
    broken = bytes([scp_bytes[0] ^ 0xFF]) + scp_bytes[1:]
    with pytest.raises(IntakeError, match=r"checksum \(CRC\) does not match"):
        _upload(broken)
    broken = bytearray(scp_bytes)
    broken[20_000] ^= 0x10  # one bit of the rhythm data
    with pytest.raises(IntakeError, match="CRC"):
        _upload(bytes(broken))


def test_section_pointer_past_the_end_is_refused(scp_bytes):
    record = bytearray(scp_bytes)
    (length0,) = struct.unpack_from("<I", record, 10)
    for at in range(22, 6 + length0 - 9, 10):
        if struct.unpack_from("<H", record, at)[0] == 6:
            struct.pack_into("<I", record, at + 6, len(record) + 100)
    # Fresh section 0 and record CRCs, so that only the pointer is wrong.
    struct.pack_into("<H", record, 6, scp_ecg.crc_ccitt(bytes(record[8:6 + length0])))
    struct.pack_into("<H", record, 0, scp_ecg.crc_ccitt(bytes(record[2:])))
    with pytest.raises(IntakeError, match="Section 6 .* past the end"):
        _upload(bytes(record))


def test_huffman_stream_that_runs_off_its_data_is_refused(scp_bytes):
    sections = _split(scp_bytes)
    n = sections[3][0]
    sizes = struct.unpack_from(f"<{n}H", sections[6], 6)
    body = bytearray(sections[6])
    body[6 + 2 * n:6 + 2 * n + sizes[0]] = b"\xff" * sizes[0]  # 16-bit escapes: 26 bits a sample, too few bytes
    sections[6] = bytes(body)
    with pytest.raises(IntakeError, match=r"lead 1 \(I\) .*runs off the data"):
        _upload(scp_record(sections))


def test_bimodal_compression_is_refused(scp_bytes):
    sections = _split(scp_bytes)
    sections[6] = sections[6][:5] + b"\x01" + sections[6][6:]
    with pytest.raises(IntakeError, match="bimodal compression"):
        _upload(scp_record(sections))


def test_device_statements_from_sections_8_and_11(scp_bytes):
    sections = _split(scp_bytes)
    when = struct.pack("<BHBBBBB", 0, 2002, 11, 22, 9, 10, 0)
    texts = [b"Sinus rhythm\0", b"Left axis deviation\0"]
    sections[8] = when + bytes([2]) + b"".join(struct.pack("<BH", k + 1, len(t)) + t for k, t in enumerate(texts))
    coded = [b"\x01SR\0", b"\x03\0", b"\x02Abnormal ECG\0"]  # codes, statement logic (not shown), full text
    sections[11] = when + bytes([3]) + b"".join(struct.pack("<BH", k + 1, len(t)) + t for k, t in enumerate(coded))
    ecg = _upload(scp_record(sections))
    assert ecg.device["statements"] == ["Sinus rhythm", "Left axis deviation", "SR", "Abnormal ECG"]


def test_rebuilt_sample_is_unchanged(scp_bytes):
    # The record builder the tests above rely on writes a record that reads exactly as the sample.
    np.testing.assert_array_equal(_upload(scp_record(_split(scp_bytes))).signal, _upload(scp_bytes).signal)


def test_the_crc_is_crc_ccitt_with_initial_ffff():
    """SCP-ECG's checksum (EN 1064: CRC-CCITT, polynomial 0x1021, initial 0xFFFF): the catalogue check value, and
    the bit-by-bit definition on other inputs."""
    import os

    def bitwise(data: bytes) -> int:
        crc = 0xFFFF
        for byte in data:
            crc ^= byte << 8
            for _ in range(8):
                crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
        return crc

    assert scp_ecg.crc_ccitt(b"123456789") == 0x29B1
    for n in (0, 1, 2, 17, 1000):
        data = os.urandom(n)
        assert scp_ecg.crc_ccitt(data) == bitwise(data)
