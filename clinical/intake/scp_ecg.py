"""SCP-ECG (.scp; EN 1064 / ISO 11073-91064): the binary record of ECG carts and management systems.

A record is a CRC-CCITT and a length, then numbered sections: 0 points to the others, 1 holds header tags (device,
acquisition time), 2 the Huffman tables, 3 the leads and their sample ranges, 4 the QRS locations used for
reference-beat subtraction, 5 the reference beat, 6 the rhythm data, 7 global measurements, 8 and 11 the device's
interpretive statements. Everything is little-endian; sample numbers count from 1.
"""
from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass

import numpy as np

from clinical.intake.errors import IntakeError
from clinical.intake.leads import complete_leads
from clinical.intake.record import Reading
from clinical.intake.registry import register

FORMAT = "scp-ecg"
SECTION_HEADER_BYTES = 16
DEFAULT_HUFFMAN_TABLE = 19999  # section 2's table count when the standard's default table is used
# Section 3 lead codes of the 12 standard leads (the standard's lead table).
LEAD_NAMES: dict[int, str] = {1: "I", 2: "II", 3: "V1", 4: "V2", 5: "V3", 6: "V4", 7: "V5", 8: "V6",
                              61: "III", 62: "aVR", 63: "aVL", 64: "aVF"}
# Section 7 codes for a measurement that the device did not compute or rejected, or a wave it did not find.
_NOT_MEASURED = frozenset([19999, 29998, 29999])
_REFUSE = "Upload the ECG exported again from the cart, or as a WFDB record, CSV or JSON file."


def _fail(message: str) -> IntakeError:
    return IntakeError(f"{message} {_REFUSE}", "file")


def crc_ccitt(data: bytes) -> int:
    """CRC-CCITT (polynomial 0x1021, initial 0xFFFF, not reflected), the checksum of SCP records and sections.

    The standard library's binascii.crc_hqx is this CRC in C with the initial value given (CRC-16/CCITT-FALSE; check
    value 0x29B1 for b"123456789"): the bit loop it replaces took ~0.7 s per MB, on every SCP upload."""
    return binascii.crc_hqx(data, 0xFFFF)


# ---------------------------------------------------------------------------------------------------------------
# Huffman decoding (section 2 tables, applied to sections 5 and 6)


@dataclass(frozen=True)
class _Code:
    prefix_bits: int
    total_bits: int
    is_value: bool  # table mode switch: 1 = the code stands for a value, 0 = switch to table number `value`
    value: int
    code: int  # the prefix, most significant bit first as it appears in the bit stream


def _default_table() -> list[_Code]:
    # EN 1064's default table: 0 is "0"; +n and -n (n = 1..8) are n ones then "00" or "01"; nine ones then "0"
    # or "1" escape to the original value in the next 8 or 16 bits.
    codes = [_Code(1, 1, True, 0, 0b0)]
    for n in range(1, 9):
        ones = ((1 << n) - 1) << 2
        codes += [_Code(n + 2, n + 2, True, n, ones), _Code(n + 2, n + 2, True, -n, ones | 1)]
    codes += [_Code(10, 18, True, 0, 0b1111111110), _Code(10, 26, True, 0, 0b1111111111)]
    return codes


def _reverse(value: int, bits: int) -> int:
    out = 0
    for _ in range(bits):
        out = (out << 1) | (value & 1)
        value >>= 1
    return out


def _read_tables(body: bytes) -> list[list[_Code]] | None:
    """Section 2: None for the default table, else the custom tables (numbered from 1)."""
    if len(body) < 2:
        raise _fail("The SCP-ECG Huffman table section (section 2) is too short.")
    (n_tables,) = struct.unpack_from("<H", body, 0)
    if n_tables == DEFAULT_HUFFMAN_TABLE:
        return None
    tables, at = [], 2
    for _ in range(n_tables):
        if at + 2 > len(body):
            raise _fail("The SCP-ECG Huffman tables (section 2) end before the tables they announce.")
        (n_codes,) = struct.unpack_from("<H", body, at)
        at += 2
        table = []
        for _ in range(n_codes):
            if at + 9 > len(body):
                raise _fail("The SCP-ECG Huffman tables (section 2) end before the tables they announce.")
            prefix_bits, total_bits, mode, value, base_code = struct.unpack_from("<BBBhI", body, at)
            at += 9
            if not 1 <= prefix_bits <= 32 or total_bits < prefix_bits or total_bits - prefix_bits > 32:
                raise _fail("An SCP-ECG Huffman table (section 2) has a code of impossible length.")
            # The base code is stored bit-reversed: the first bit of the stream is its least significant bit.
            table.append(_Code(prefix_bits, total_bits, mode == 1, value, _reverse(base_code, prefix_bits)))
        tables.append(table)
    if not tables:
        raise _fail("The SCP-ECG Huffman table section (section 2) holds no table.")
    return tables


class _Huffman:
    def __init__(self, tables: list[list[_Code]] | None) -> None:
        tables = [_default_table()] if tables is None else tables
        # One lookup per table: (prefix length, prefix) -> code.
        self.lookups = [{(c.prefix_bits, c.code): c for c in table} for table in tables]
        self.longest = [max(c.prefix_bits for c in table) for table in tables]

    def decode(self, data: bytes, n: int, what: str) -> np.ndarray:
        """The first n values of a lead's Huffman stream (each lead's stream starts on a byte boundary)."""
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8)).tolist()
        n_bits, pos, table = len(bits), 0, 0
        lookup, longest = self.lookups[0], self.longest[0]
        out = np.empty(n, dtype=np.int64)
        k = 0
        while k < n:
            prefix, length, code = 0, 0, None
            while length < longest:
                if pos >= n_bits:
                    raise _fail(f"The SCP-ECG data of {what} end after {k} of its {n} samples (the Huffman code "
                                "runs off the data): the file is truncated or corrupt.")
                prefix = (prefix << 1) | bits[pos]
                pos += 1
                length += 1
                code = lookup.get((length, prefix))
                if code is not None:
                    break
            if code is None:
                raise _fail(f"The SCP-ECG data of {what} hold a bit pattern that is no code of the Huffman "
                            f"table (at sample {k + 1}): the file is corrupt.")
            if not code.is_value:
                table = code.value - 1
                if not 0 <= table < len(self.lookups):
                    raise _fail(f"The SCP-ECG data of {what} switch to Huffman table {code.value}, which section 2 "
                                "does not hold.")
                lookup, longest = self.lookups[table], self.longest[table]
                continue
            extra = code.total_bits - code.prefix_bits
            if extra:
                if pos + extra > n_bits:
                    raise _fail(f"The SCP-ECG data of {what} end inside sample {k + 1} of {n} (the Huffman code "
                                "runs off the data): the file is truncated or corrupt.")
                value = 0
                for bit in bits[pos:pos + extra]:
                    value = (value << 1) | bit
                pos += extra
                if value >= 1 << (extra - 1):  # two's complement in `extra` bits
                    value -= 1 << extra
            else:
                value = code.value
            out[k] = value
            k += 1
        return out


def _undifference(values: np.ndarray, method: int) -> np.ndarray:
    """Undo first (x[n] = d[n] + x[n-1]) or second (x[n] = d[n] + 2 x[n-1] - x[n-2]) differences; the first one or
    two values are stored as they are."""
    if method == 0:
        return values
    if method == 1:
        return np.cumsum(values)
    x = values.copy()
    for i in range(2, len(x)):
        x[i] = x[i] + 2 * x[i - 1] - x[i - 2]
    return x


# ---------------------------------------------------------------------------------------------------------------
# Record and sections


def _u(fmt: str, body: bytes, at: int, what: str) -> tuple:
    if at + struct.calcsize(fmt) > len(body):
        raise _fail(f"The SCP-ECG {what} ends early: the file is truncated or corrupt.")
    return struct.unpack_from(fmt, body, at)


def _sections(content: bytes) -> dict[int, bytes]:
    """Check the record's CRC and length and section 0's pointers; section number -> section body (after its
    16-byte header), each with its CRC checked."""
    if len(content) < 6 + SECTION_HEADER_BYTES:
        raise _fail("The .scp file is too short to be an SCP-ECG record.")
    # The section 0 marker first: another kind of file would otherwise be called a truncated record.
    if content[16:22] != b"SCPECG" or struct.unpack_from("<H", content, 8)[0] != 0:
        raise _fail("The .scp file is not an SCP-ECG record: it does not start with the pointer section (section 0).")
    stored_crc, record_length = struct.unpack_from("<HI", content, 0)
    if record_length > len(content):
        raise _fail(f"The SCP-ECG record says it is {record_length:,} bytes long but the file has "
                    f"{len(content):,}: it is truncated.")
    if record_length < 6 + SECTION_HEADER_BYTES:
        raise _fail("The SCP-ECG record length is too small to hold any section: the file is corrupt.")
    record = content[:record_length]
    if crc_ccitt(record[2:]) != stored_crc:
        raise _fail("The SCP-ECG record's checksum (CRC) does not match its contents: the file is corrupt.")
    (length0,) = struct.unpack_from("<I", record, 10)
    if length0 < SECTION_HEADER_BYTES or 6 + length0 > record_length:
        raise _fail("The SCP-ECG pointer section (section 0) runs past the end of the record.")
    section0 = record[6:6 + length0]
    sections: dict[int, bytes] = {}
    for at in range(SECTION_HEADER_BYTES, length0 - 9, 10):
        number, length, index = struct.unpack_from("<HII", section0, at)
        if length == 0:
            continue
        start = index - 1  # section 0 counts bytes from 1
        if index == 0 or length < SECTION_HEADER_BYTES or start + length > record_length:
            raise _fail(f"Section {number} of the SCP-ECG record is said to lie at bytes {index:,}–"
                        f"{index + length - 1:,}, past the end of the {record_length:,}-byte record: the file is "
                        "truncated or corrupt.")
        section = record[start:start + length]
        section_crc, section_number, section_length = struct.unpack_from("<HHI", section, 0)
        if section_number != number or section_length != length:
            raise _fail(f"Section 0 of the SCP-ECG record points to section {number}, but a different section "
                        "lies there: the file is corrupt.")
        if crc_ccitt(section[2:]) != section_crc:
            raise _fail(f"Section {number} of the SCP-ECG record fails its checksum (CRC): the file is corrupt.")
        sections[number] = section[SECTION_HEADER_BYTES:]
    return sections


def _text(raw: bytes) -> str:
    # SCP strings are NUL-terminated, in ASCII or ISO 8859-1 unless section 1 says otherwise.
    text = raw.split(b"\0", 1)[0].decode("latin-1")
    return "".join(ch for ch in text if ch.isprintable()).strip()


def _header_tags(body: bytes) -> dict:
    """Section 1: the acquiring device and the date and time of acquisition (patient tags are not kept)."""
    parts: list[str] = []
    at, date, time = 0, None, None
    while at + 3 <= len(body):
        tag, length = struct.unpack_from("<BH", body, at)
        value = body[at + 3:at + 3 + length]
        at += 3 + length
        if tag == 255 or len(value) < length:
            break
        if tag == 14 and length >= 36:
            # Acquiring device: institution, department, device numbers, type, manufacturer code, a 6-byte model,
            # protocol and capability bytes, 16 reserved, then NUL-terminated strings led by the analysing
            # program's revision (its length in byte 36); the fifth is the manufacturer's trade name.
            strings = [_text(s) for s in value[36:].split(b"\0")]
            trade_name = strings[4] if len(strings) > 4 else ""
            parts = [p for p in (trade_name, _text(value[8:14])) if p and p.lower() != "unknown"]
        elif tag == 25 and length >= 4:
            date = struct.unpack_from("<HBB", value, 0)
        elif tag == 26 and length >= 3:
            time = tuple(value[:3])
    out: dict = {}
    if parts:
        out["device"] = " ".join(dict.fromkeys(parts))
    if date and all(date):
        stamp = f"{date[0]:04d}-{date[1]:02d}-{date[2]:02d}"
        if time:
            stamp += f"T{time[0]:02d}:{time[1]:02d}:{time[2]:02d}"
        out["acquired"] = stamp
    return out


def _statements(body: bytes, coded: bool) -> list[str]:
    """Sections 8 (full text) and 11 (statement codes): confirmation, date, time, then numbered statements."""
    if len(body) < 9:
        return []
    count, at, out = body[8], 9, []
    for _ in range(count):
        if at + 3 > len(body):
            break
        (length,) = struct.unpack_from("<H", body, at + 1)
        raw = body[at + 3:at + 3 + length]
        at += 3 + length
        if coded:  # section 11: a type byte (1 codes, 2 full text, 3 statement logic), then NUL-separated fields
            if not raw or raw[0] == 3:
                continue
            raw = raw[1:]
        parts = [_text(part) for part in raw.split(b"\0")]
        text = "; ".join(p for p in parts if p)
        if text:
            out.append(text)
    return out


def _measurements(body: bytes) -> dict:
    """Section 7, the first (dominant) reference beat, under the names GE MUSE uses (as the other readers do):
    intervals in ms, axes in degrees."""
    if len(body) < 6 + 16 or body[0] == 0:
        return {}
    (rr,) = struct.unpack_from("<H", body, 2)
    p_on, p_off, qrs_on, qrs_off, t_off, p_axis, qrs_axis, t_axis = struct.unpack_from("<5H3h", body, 6)
    seen = {name: v for name, v in (("p_onset", p_on), ("qrs_onset", qrs_on), ("qrs_offset", qrs_off),
                                    ("t_offset", t_off)) if v not in _NOT_MEASURED}
    out: dict = {}
    if rr not in _NOT_MEASURED and rr > 0:
        out["VentricularRate"] = round(60000 / rr)
    if "p_onset" in seen and "qrs_onset" in seen:
        out["PRInterval"] = seen["qrs_onset"] - seen["p_onset"]
    if "qrs_onset" in seen and "qrs_offset" in seen:
        out["QRSDuration"] = seen["qrs_offset"] - seen["qrs_onset"]
    if "qrs_onset" in seen and "t_offset" in seen:
        out["QTInterval"] = seen["t_offset"] - seen["qrs_onset"]
    for name, axis in (("PAxis", p_axis), ("RAxis", qrs_axis), ("TAxis", t_axis)):
        if axis not in _NOT_MEASURED:
            out[name] = axis
    return out


@dataclass(frozen=True)
class _Lead:
    code: int
    start: int  # first sample number, from 1
    end: int


def _leads(body: bytes) -> tuple[list[_Lead], bool]:
    """Section 3: the leads, their sample ranges, and whether reference-beat subtraction was used."""
    n, flags = _u("<BB", body, 0, "lead section (section 3)")
    leads = []
    for i in range(n):
        start, end, code = _u("<IIB", body, 2 + 9 * i, "lead section (section 3)")
        if start < 1 or end < start:
            raise _fail(f"Lead {i + 1} of the SCP-ECG record has an impossible sample range {start}–{end}.")
        leads.append(_Lead(code, start, end))
    if not leads:
        raise _fail("The SCP-ECG record defines no leads (section 3).")
    return leads, bool(flags & 0x01)


def _encoded_data(body: bytes, n_leads: int, what: str) -> tuple[int, int, int, int, list[bytes]]:
    """Sections 5 and 6: amplitude multiplier (nV), sample interval (µs), difference method, the byte that is the
    bimodal flag in section 6, and each lead's encoded bytes."""
    multiplier, interval, difference, bimodal = _u("<HHBB", body, 0, what)
    sizes = _u(f"<{n_leads}H", body, 6, what)
    at, streams = 6 + 2 * n_leads, []
    for size in sizes:
        if at + size > len(body):
            raise _fail(f"The SCP-ECG {what} is shorter than its leads' data: the file is truncated or corrupt.")
        streams.append(body[at:at + size])
        at += size
    if difference not in (0, 1, 2):
        raise _fail(f"The SCP-ECG {what} uses difference encoding {difference}; only 0, 1 and 2 exist.")
    if multiplier == 0 or interval == 0:
        raise _fail(f"The SCP-ECG {what} gives no amplitude multiplier or sample interval.")
    return multiplier, interval, difference, bimodal, streams


def _decode(stream: bytes, n: int, huffman: _Huffman | None, difference: int, what: str) -> np.ndarray:
    if huffman is None:  # without section 2 the values are plain 16-bit integers
        if len(stream) < 2 * n:
            raise _fail(f"The SCP-ECG data of {what} hold fewer than its {n} samples: the file is truncated.")
        values = np.frombuffer(stream[:2 * n], dtype="<i2").astype(np.int64)
    else:
        values = huffman.decode(stream, n, what)
    return _undifference(values, difference)


def _add_reference_beat(residual: dict[int, np.ndarray], leads: list[_Lead], sections: dict[int, bytes],
                        huffman: _Huffman | None, rhythm_multiplier: int) -> None:
    """Reference-beat subtraction: the rhythm data are residuals; add back section 5's beat (type 0) over each
    type-0 QRS's subtraction zone in section 4, aligned on the fiducial points. Works in µV·1000 (nV)."""
    if 4 not in sections or 5 not in sections:
        raise _fail("The SCP-ECG record was compressed by reference-beat subtraction but lacks the QRS locations "
                    "(section 4) or the reference beat (section 5) needed to restore it.")
    body4 = sections[4]
    length_ms, fiducial, n_qrs = _u("<HHH", body4, 0, "QRS location section (section 4)")
    multiplier, interval, difference, _, streams = _encoded_data(sections[5], len(leads),
                                                                 "reference beat section (section 5)")
    n_ref = length_ms * 1000 // interval
    if fiducial < 1 or fiducial > n_ref:
        raise _fail("The SCP-ECG reference beat's fiducial point lies outside the beat (section 4).")
    zones = []
    for q in range(n_qrs):
        beat_type, start, fc, end = _u("<HIII", body4, 6 + 14 * q, "QRS location section (section 4)")
        if beat_type == 0 and start >= 1 and end >= start:
            zones.append((start, fc, end))
    for i, lead in enumerate(leads):
        beat = _decode(streams[i], n_ref, huffman, difference, f"the reference beat of {_lead_label(i, lead)}")
        beat = beat * multiplier
        x = residual[i]
        for start, fc, end in zones:
            # Sample s of the record gets reference sample (s - fc) + fiducial (both numbered from 1).
            lo, hi = max(start, lead.start), min(end, lead.end)
            for s in range(lo, hi + 1):
                j = s - fc + fiducial - 1
                if 0 <= j < n_ref:
                    x[s - lead.start] += beat[j] / rhythm_multiplier


def _lead_label(i: int, lead: _Lead) -> str:
    return f"lead {i + 1} ({LEAD_NAMES[lead.code]})" if lead.code in LEAD_NAMES else f"lead {i + 1}"


@register("scp", "SCP-ECG")
def read(content: bytes, name: str) -> Reading:
    sections = _sections(content)
    for needed, what in ((3, "lead definitions (section 3)"), (6, "rhythm data (section 6)")):
        if needed not in sections:
            raise _fail(f"The SCP-ECG record has no {what}, so it holds no full-length ECG.")
    leads, subtracted = _leads(sections[3])
    huffman = _Huffman(_read_tables(sections[2])) if 2 in sections else None
    multiplier, interval, difference, bimodal, streams = _encoded_data(sections[6], len(leads),
                                                                       "rhythm data section (section 6)")
    if bimodal:
        raise _fail("The SCP-ECG rhythm data use bimodal compression (the signal between QRS complexes stored at a "
                    "reduced sampling rate), which this reader does not restore; export the ECG without it.")
    rhythm = {i: _decode(streams[i], lead.end - lead.start + 1, huffman, difference, _lead_label(i, lead)).astype(
        np.float64) for i, lead in enumerate(leads)}
    if subtracted:
        _add_reference_beat(rhythm, leads, sections, huffman, multiplier)

    # Keep the standard leads over the span every one of them covers.
    standard = [(i, lead) for i, lead in enumerate(leads) if lead.code in LEAD_NAMES]
    names = [LEAD_NAMES[lead.code] for _, lead in standard]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise _fail(f"The SCP-ECG record stores lead {duplicated[0]} more than once.")
    if not standard:
        raise _fail("The SCP-ECG record holds none of the 12 standard leads.")
    first, last = max(lead.start for _, lead in standard), min(lead.end for _, lead in standard)
    if last < first:
        raise _fail("The leads of this SCP-ECG record were recorded one group after another, not at the same "
                    "time; a 12-lead ECG needs all leads over the same seconds.")
    columns = {LEAD_NAMES[lead.code]: rhythm[i][first - lead.start:last - lead.start + 1] * multiplier * 1e-6
               for i, lead in standard}  # nV -> mV
    notes = []
    other = sorted({lead.code for lead in leads if lead.code not in LEAD_NAMES})
    if other:
        notes.append(f"Leads with SCP codes {', '.join(map(str, other))} are not standard leads and were left out.")
    labels = [LEAD_NAMES.get(lead.code, f"SCP lead code {lead.code}") for lead in leads]
    notes += complete_leads(columns, what="the SCP-ECG record", remedy=_REFUSE, labels=labels)

    device = _header_tags(sections[1]) if 1 in sections else {}
    statements = (_statements(sections[8], coded=False) if 8 in sections else []) + (
        _statements(sections[11], coded=True) if 11 in sections else [])
    if statements:
        device["statements"] = statements
    measurements = _measurements(sections[7]) if 7 in sections else {}
    if measurements:
        device["measurements"] = measurements
    return Reading(columns=columns, fs=1e6 / interval, source_format=FORMAT, device=device, notes=notes)
