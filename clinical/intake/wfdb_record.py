"""WFDB records: a .hea header with its signal files (.dat, CinC .mat, PTB .xyz), any rate from 100 to
2000 Hz, the 12 standard leads picked by name from any number of signals."""
from __future__ import annotations

import math
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import wfdb

from clinical.intake.encoding import looks_binary, utf16_or_32
from clinical.intake.errors import IntakeError, basename, display_name, extension, join, lead_s, quoted, shown
from clinical.intake.leads import check_leads, complete_leads, is_non_standard_lead, recorded_lead
from clinical.intake.limits import MAX_HEADER_BYTES, MAX_SECONDS, MIN_SECONDS, WFDB_RATES
from clinical.intake.record import ParsedEcg, assemble, check_content_size, mv_per_unit
from mlcore.preprocess import LEADS

# Bytes per sample for the WFDB storage formats we can size-check (https://physionet.org/physiotools/wag/signal-5.htm).
# Format 212 packs two 12-bit samples into three bytes.
_WFDB_BYTES_PER_SAMPLE: dict[str, float] = {"16": 2, "61": 2, "160": 2, "24": 3, "32": 4, "80": 1, "212": 1.5}
# A WFDB record name: letters, digits, '_', '-', '.'; never a path, since it becomes a file name on our disk.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$")


_HEADER_SHAPE = "'<record> <number of signals> <sampling rate> <number of samples>', e.g. 'rec 12 500 5000'"
# What to do about a header that is not what the WFDB writer left (most are re-exported, not edited by hand).
_FIRST_LINE = f"Export the record again; a WFDB header's first line reads {_HEADER_SHAPE}."
_SAME_RECORD = "Upload the .hea and .dat of the same record."
_PLAIN_NAME = "Export the record again under a plain name such as 'rec001'."
_SIGNAL_FIELDS = ("file name", "storage format", "ADC gain", "ADC resolution", "ADC zero", "initial value",
                  "checksum", "block size")
_RX_WHOLE = re.compile(r"\d{1,30}")  # the number of signals, the number of samples
_RX_FS = re.compile(r"(\d{1,15}(?:\.\d*)?|\.\d+)(?:/(?:\d+(?:\.\d*)?|\.\d+)(?:\(-?\d+(?:\.\d*)?\))?)?")
_RX_FORMAT = re.compile(r"(\d{1,4})(?:x(\d{1,6}))?(?::(\d{1,6}))?(?:\+(\d{1,15}))?")
# wfdb reads a lower-case exponent only, and a units string of these characters.
_RX_GAIN = re.compile(r"(-?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d{1,3})?)(?:\((-?\d{1,12})\))?(?:/([A-Za-z0-9_^?%/-]{1,20}))?")
_RX_INT = re.compile(r"-?\d{1,12}")
_MICRO = re.compile(r"/[\u00b5\u03bc]V(?=\s)", re.IGNORECASE)  # "/µV " (micro sign) or "/μV " (Greek mu)


@dataclass(frozen=True)
class _SignalLine:
    file_name: str
    fmt: str
    samples_per_frame: int
    skew: int
    byte_offset: int
    gain: float
    units: str
    checksum: int
    name: str


@dataclass(frozen=True)
class _Header:
    record_name: str
    n_sig: int
    fs: float
    sig_len: int
    signals: list[_SignalLine]
    text: str  # what wfdb is given: the checked lines only (no comments, no base time or date)


def _header_lines(text: str) -> list[tuple[int, str]]:
    """(line number, text) of the non-comment lines, split as wfdb splits them (a '#' starts a comment)."""
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.split("#", 1)[0].strip()
        if stripped:
            lines.append((number, stripped))
    return lines


def _read_header(text: str, label: str) -> _Header:
    """Check a WFDB header's syntax strictly before wfdb reads it: wfdb's own parser falls back to defaults (a
    sampling rate of 250 Hz, an ADC gain of 200) or shifts fields when one is malformed, instead of failing."""
    numbered = _header_lines(text)
    if not numbered:
        raise IntakeError(f"The .hea file has no record line; it is not a WFDB header. {_FIRST_LINE}", "hea")
    invalid = f"The header {label} is not a valid WFDB header"
    # Some tools write microvolts with a Greek mu; wfdb reads headers as ASCII and would drop it, reading "V"
    # (a factor of a million), so it is spelt out before the ASCII check.
    numbered = numbered[:1] + [(number, _MICRO.sub("/uV", line)) for number, line in numbered[1:]]
    for number, line in numbered:
        if not line.isascii():
            odd = next(ch for ch in line if not ch.isascii())
            raise IntakeError(
                f"{invalid}: line {number} contains the non-ASCII character {shown(odd)!r} (U+{ord(odd):04X}); "
                "WFDB headers are plain ASCII text (lead names such as I, aVR or V1). Correct that line, or export "
                "the record again.",
                "hea",
            )
    lines = [line for _, line in numbered]
    tokens = lines[0].split()
    record_name = tokens[0]
    if re.fullmatch(r"[^/]+/\d+", record_name):
        raise IntakeError("Multi-segment WFDB records are not supported; upload a single-segment record.", "hea")
    if not _SAFE_NAME.match(record_name):
        raise IntakeError(
            f"The header's record name '{shown(record_name)}' is not a valid WFDB record name (up to 64 letters, "
            f"digits, '_', '-' or '.'). {_PLAIN_NAME}",
            "hea",
        )
    if len(tokens) < 2 or not _RX_WHOLE.fullmatch(tokens[1]):
        got = f"'{shown(tokens[1])}'" if len(tokens) > 1 else "nothing"
        raise IntakeError(
            f"{invalid}: the number of signals should be a whole number, but the first line has {got}. "
            f"{_FIRST_LINE}",
            "hea",
        )
    n_sig = int(tokens[1])
    rates = f"{WFDB_RATES[0]:g} to {WFDB_RATES[1]:g}"
    if len(tokens) < 3:
        raise IntakeError(
            f"The header {label} does not state the sampling rate (WFDB would assume 250 Hz); WFDB uploads must "
            f"state theirs: {rates} Hz. {_FIRST_LINE}",
            "hea",
        )
    if not _RX_FS.fullmatch(tokens[2]):
        raise IntakeError(
            f"The header's sampling rate '{shown(tokens[2])}' is not a number of Hz; WFDB uploads must be sampled at "
            f"{rates} Hz. {_FIRST_LINE}",
            "hea",
        )
    fs = float(tokens[2].split("/")[0])
    if not WFDB_RATES[0] <= fs <= WFDB_RATES[1]:
        raise IntakeError(
            f"The header's sampling rate is {fs:g} Hz; WFDB uploads must be sampled at {rates} Hz. Export the "
            "record at a rate in that range, e.g. 500 Hz.", "hea"
        )
    if len(tokens) < 4:
        raise IntakeError(f"The header {label} does not state the number of samples. {_FIRST_LINE}", "hea")
    if not _RX_WHOLE.fullmatch(tokens[3]):
        raise IntakeError(
            f"The header's number of samples '{shown(tokens[3])}' is not a whole number. {_FIRST_LINE}",
            "hea",
        )
    sig_len = int(tokens[3])
    if sig_len == 0:
        raise IntakeError(
            f"The header {label} states 0 samples per lead; a recording of {MIN_SECONDS:g} to {MAX_SECONDS:g} s is "
            "needed. Export the record again with its samples.",
            "hea",
        )
    described = len(lines) - 1
    if n_sig == 0 or described != n_sig:
        raise IntakeError(
            f"The header {label} declares {n_sig} signals but describes {described}; it is incomplete or not a WFDB "
            "header. Upload the record's complete .hea file.",
            "hea",
        )
    signals = [_read_signal_line(line, number, label) for number, line in numbered[1:]]
    checked = "\n".join([f"{record_name} {n_sig} {tokens[2]} {sig_len}", *lines[1:]]) + "\n"
    return _Header(record_name=record_name, n_sig=n_sig, fs=fs, sig_len=sig_len, signals=signals, text=checked)


def _read_signal_line(line: str, k: int, label: str) -> _SignalLine:
    parts = line.split(None, 8)
    if len(parts) < 9:
        raise IntakeError(
            f"The header {label} does not name every signal; lead names are required (line {k} has "
            f"{len(parts)} of the 9 fields: {', '.join(_SIGNAL_FIELDS)} and lead name). Export the record again "
            "with a lead name for every signal.",
            "hea",
        )
    file_name, fmt_spec, gain_spec, *numbers, name = parts

    def bad(what: str, value: str, expected: str) -> IntakeError:
        return IntakeError(
            f"The header {label} is not a valid WFDB header: on line {k} the {what} '{shown(value)}' is not "
            f"{expected}. Export the record again, or correct line {k}.",
            "hea",
        )

    if not _SAFE_NAME.match(file_name):
        raise IntakeError(
            f"The header's signal file name '{shown(file_name)}' is not a plain file name (up to 64 letters, digits, "
            f"'_', '-' or '.', no folders). {_PLAIN_NAME}",
            "hea",
        )
    fmt = _RX_FORMAT.fullmatch(fmt_spec)
    if not fmt:
        raise bad("storage format", fmt_spec, "a WFDB format such as 16 or 212")
    gain = _RX_GAIN.fullmatch(gain_spec)
    if not gain:
        raise bad("ADC gain", gain_spec, "a gain such as 1000 or 1000(0)/mV")
    for what, value in zip(_SIGNAL_FIELDS[3:], numbers):
        if not _RX_INT.fullmatch(value):
            raise bad(what, value, "a whole number")
    gain_value = float(gain.group(1))
    if not math.isfinite(gain_value) or gain_value <= 0:
        raise IntakeError(
            f"Lead {shown(name)} has an ADC gain of {gain.group(1)} in the header; the gain (ADC units per mV or uV) "
            "must be a positive number. A gain of 0 marks an uncalibrated signal, which cannot be interpreted. "
            "Export the record again with its calibration.",
            "hea",
        )
    return _SignalLine(
        file_name=file_name, fmt=str(int(fmt.group(1))), samples_per_frame=int(fmt.group(2) or 1),
        skew=int(fmt.group(3) or 0), byte_offset=int(fmt.group(4) or 0), gain=gain_value,
        units=gain.group(3) or "mV", checksum=int(numbers[3]), name=name,
    )


def _checksum(samples: np.ndarray) -> int:
    """The WFDB checksum of one signal: the sum of its samples modulo 2**16. Writers differ in writing it signed
    (the WFDB C library) or unsigned (wfdb-python), so it is compared modulo 2**16 too."""
    return int(samples.sum(dtype=np.int64)) & 0xFFFF


def parse_wfdb(hea: bytes, dat: bytes | None = None, *, hea_name: str, dat_name: str | None = None,
               signal_files: Sequence[tuple[str, bytes]] = ()) -> ParsedEcg:
    """Read a WFDB header and its signal files (format 16, 212, 24, 32, 61, 80 or 160) into a ParsedEcg.

    ``dat``/``dat_name`` and ``signal_files`` (``(name, content)`` pairs) are the uploaded signal files; only the
    files holding the 12 standard leads are needed (PTB's ``.xyz`` Frank leads may be left out). Signals other
    than the 12 standard leads are ignored and named in the notes. Everything the header says is checked against
    what we accept and against the size of each signal file before the samples are read, and the samples against
    the header's checksums after.
    """
    uploaded = ([(dat_name or "", dat)] if dat is not None else []) + list(signal_files)
    check_content_size(hea, ".hea", "hea")
    for name, content in uploaded:
        check_content_size(content, f".{extension(name) or 'dat'}", "dat")
    hea_label = display_name(hea_name)
    if len(hea) > MAX_HEADER_BYTES:
        raise IntakeError(
            f"The header {hea_label} is {len(hea) / 1024:,.0f} KB; a WFDB header is a short text file (at most "
            f"{MAX_HEADER_BYTES // 1024} KB). Were the .hea and .dat files swapped? {_SAME_RECORD}",
            "hea",
        )
    encoding = utf16_or_32(hea)
    if encoding:
        raise IntakeError(f"The header {hea_label} is {encoding} text; WFDB headers are plain ASCII text. Save it "
                          "as ASCII, or export the record again.", "hea")
    if looks_binary(hea):
        raise IntakeError(
            f"The header {hea_label} is not a text file; were the .hea and .dat files swapped? {_SAME_RECORD}", "hea"
        )
    try:
        hea_text = hea.decode("utf-8")
    except UnicodeDecodeError:  # shown as what it is (an 'ä' written by a Latin-1 tool), not as U+FFFD
        hea_text = hea.decode("latin-1")
    header = _read_header(hea_text, hea_label)
    fs, sig_len, signals = header.fs, header.sig_len, header.signals
    names = [s.name for s in signals]

    # The 12 standard leads, picked by name; any other signal (Frank vx/vy/vz, V7, respiration...) is ignored.
    canon_all = [recorded_lead(n) for n in names]
    for lead in LEADS:
        spellings = [n for n, c in zip(names, canon_all) if c == lead]
        if len(spellings) > 1:
            raise IntakeError(
                f"Lead {lead} appears {len(spellings)} times (as {quoted(spellings)}); each lead must appear once. "
                "Export the record again with each lead once.",
                "hea",
            )
    others = [n for n, c in zip(names, canon_all) if c is None and not is_non_standard_lead(n)]
    verb_o = "is not a recognised lead name" if len(others) == 1 else "are not recognised lead names"
    what = f"the header {hea_label}" + (f" ({quoted(others)} {verb_o})" if others else "")
    # Which leads, before how long: a 30-minute Holter record is refused as a Holter record.
    check_leads(names, what=what, field="hea")
    if sig_len / fs > MAX_SECONDS:
        raise IntakeError(
            f"The header {hea_label} describes a recording of {sig_len / fs:,.1f} s ({sig_len:,} samples at {fs:g} "
            f"Hz); at most {MAX_SECONDS:g} s is accepted. Crop it to the part to be interpreted.",
            "hea",
        )
    wanted = [i for i, c in enumerate(canon_all) if c is not None]
    ignored = [names[i] for i, c in enumerate(canon_all) if c is None]

    # Which uploaded file is which signal file of the header (names compared without case, as browsers and
    # Windows may change it).
    by_name: dict[str, tuple[str, bytes]] = {}
    for name, content in uploaded:
        by_name.setdefault(basename(name).lower(), (name, content))
    declared = list(dict.fromkeys(s.file_name for s in signals))
    needed = list(dict.fromkeys(signals[i].file_name for i in wanted))
    strangers = [n for n, _ in uploaded if basename(n).lower() not in {d.lower() for d in declared}]
    if strangers:
        raise IntakeError(
            f"The header {hea_label} belongs to the signal file{'s' if len(declared) > 1 else ''} "
            f"{join([repr(d) for d in declared[:5]])}, but the uploaded signal file is "
            f"'{display_name(strangers[0])}'. Upload the .hea and .dat files of the same record.",
            "dat",
        )
    absent = [f for f in needed if f.lower() not in by_name]
    if absent:
        f = absent[0]
        leads = [canon_all[i] for i in wanted if signals[i].file_name == f]
        given = join([f"'{display_name(n)}'" for n, _ in uploaded]) if uploaded else "none"
        raise IntakeError(
            f"{lead_s(leads)} of {hea_label} {'is' if len(leads) == 1 else 'are'} stored in the signal file "
            f"'{f}', which was not uploaded (uploaded: {given}); upload '{f}' together with {hea_label}.",
            "dat",
        )
    # Files the header names that hold only ignored signals are read only if they were uploaded.
    present = [f for f in declared if f.lower() in by_name]
    read_channels = [i for i, s in enumerate(signals) if s.file_name in present]

    supported = ", ".join(sorted(_WFDB_BYTES_PER_SAMPLE, key=int))
    for f in present:
        in_file = [s for s in signals if s.file_name == f]
        name, content = by_name[f.lower()]
        label = display_name(name)
        fmts = list(dict.fromkeys(s.fmt for s in in_file))
        if len(fmts) > 1:
            raise IntakeError(f"The leads in {label} use mixed storage formats ({join(fmts)}); one format is "
                              "required. Export the record again in format 16.", "hea")
        fmt = fmts[0]
        if fmt not in _WFDB_BYTES_PER_SAMPLE:
            raise IntakeError(
                f"WFDB storage format {fmt} is not supported; export the record in format 16 (supported: "
                f"{supported}).",
                "hea",
            )
        if any(s.samples_per_frame != 1 for s in in_file):
            raise IntakeError("Records with several samples per frame (mixed rates) are not supported. Export the "
                              "record again with one rate for every signal.", "hea")
        if any(s.skew for s in in_file):
            raise IntakeError("Records with skewed signals are not supported; export the record without skew.",
                              "hea")
        # The byte offset (format '16+24': the samples start after 24 bytes, as in CinC .mat files) is that of
        # the file's first signal (WFDB header specification); the others must agree or omit it.
        offset = in_file[0].byte_offset
        if any(s.byte_offset not in (0, offset) for s in in_file):
            raise IntakeError(f"The leads in {label} start at different byte offsets; one offset is required. "
                              "Export the record again in format 16.", "hea")
        expected = offset + math.ceil(len(in_file) * sig_len * _WFDB_BYTES_PER_SAMPLE[fmt])
        if len(content) != expected:
            raise IntakeError(
                f"The {shown('.' + (extension(name) or 'dat'), 12)} file is {len(content)} bytes but the header "
                f"describes {expected} bytes ({len(in_file)} leads × {sig_len} samples in format {fmt}"
                f"{f' after a {offset}-byte preamble' if offset else ''}); the file is truncated or does not belong "
                f"to {hea_label}. Upload the complete .hea and .dat of the same record.",
                "dat",
            )
    text = header.text
    for f in present:
        # Every signal of a file carries the file's byte offset, so wfdb reads each from the same start.
        offset = next(s.byte_offset for s in signals if s.file_name == f)
        if offset:
            lines = text.splitlines()
            for k, s in enumerate(signals, 1):
                if s.file_name == f and not s.byte_offset:
                    file_name, fmt_spec, rest = lines[k].split(None, 2)
                    lines[k] = f"{file_name} {fmt_spec}+{offset} {rest}"
            text = "\n".join(lines) + "\n"

    factors = {}
    for i in wanted:
        s = signals[i]
        factor = mv_per_unit(s.units)
        if factor is None:
            raise IntakeError(
                f"Lead {shown(s.name)} is recorded in '{shown(s.units)}'; only mV or uV are accepted. Export the "
                "record with its leads in mV or uV.", "hea"
            )
        factors[i] = factor

    first_label = display_name(by_name[needed[0].lower()][0])
    with tempfile.TemporaryDirectory(prefix="ecg-intake-") as tmp:
        base = Path(tmp) / header.record_name
        Path(f"{base}.hea").write_text(text, encoding="ascii")
        for f in present:
            (Path(tmp) / f).write_bytes(by_name[f.lower()][1])
        try:
            record = wfdb.rdrecord(str(base), physical=False, channels=read_channels)
        except Exception as exc:  # the files agree on size, so one is corrupt; say so rather than crash
            raise IntakeError(f"The signal file {first_label} could not be read with its header "
                              f"({shown(str(exc), 200)}). {_SAME_RECORD}", "dat") from exc

    # Our reading of the header and wfdb's must agree, or the samples would be scaled by something else.
    chosen = [signals[i] for i in read_channels]
    read = (int(record.n_sig), float(record.fs), int(record.sig_len), [str(f) for f in record.fmt],
            [float(g) for g in record.adc_gain], [str(n) for n in record.sig_name])
    if read != (len(chosen), fs, sig_len, [s.fmt for s in chosen], [s.gain for s in chosen],
                [s.name for s in chosen]):
        raise IntakeError(f"The header {hea_label} could not be read unambiguously; re-export the record.", "hea")
    d_signal = np.asarray(record.d_signal)  # (n, channels read) ADC units
    if d_signal.shape != (sig_len, len(chosen)):
        raise IntakeError(f"The signal files do not hold {sig_len} samples of {len(chosen)} leads. {_SAME_RECORD}",
                          "dat")
    for j, s in enumerate(chosen):
        found = _checksum(d_signal[:, j])
        if found != s.checksum & 0xFFFF:
            label = display_name(by_name[s.file_name.lower()][0])
            raise IntakeError(
                f"The signal file {label} does not match its header: the samples of lead {shown(s.name)} add up "
                f"to checksum {found}, but {hea_label} says {s.checksum}. The signal file is damaged or belongs to "
                "another record; upload the .hea and .dat files of the same record.",
                "dat",
            )
    with np.errstate(all="ignore"):  # huge gains or values become inf and are refused by assemble
        p_signal = np.asarray(record.dac(return_res=64), dtype=np.float64)  # (n, channels), header units; NaN = gap
        columns = {canon_all[i]: p_signal[:, read_channels.index(i)] * factors[i] for i in wanted}
    notes = complete_leads(columns, what=what, labels=names, field="hea")
    if ignored:
        verb = "signal is" if len(ignored) == 1 else "signals are"
        notes.append(f"The record's other {verb} not part of the standard 12-lead ECG and "
                     f"{'was' if len(ignored) == 1 else 'were'} ignored: {join([shown(n) for n in ignored])}.")
    return assemble(columns, fs, "wfdb", "dat", notes=notes)


# ---------------------------------------------------------------------------------------------------------------
# CSV
