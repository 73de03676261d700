"""Intake of uploaded 12-lead ECGs: WFDB pairs, CSV and JSON into one canonical form.

Every parser returns a :class:`ParsedEcg` — a (12, n) float32 array in millivolts, rows in
:data:`mlcore.preprocess.LEADS` order — or raises :class:`IntakeError` whose message is shown to the person who
uploaded the file, so each message says what was wrong and what is accepted. No Django import: this module is
unit-tested on its own.
"""
from __future__ import annotations

import codecs
import csv
import io
import json
import math
import re
import tempfile
import unicodedata
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath

import numpy as np
import wfdb

from mlcore.preprocess import LEADS, canonical_lead

MAX_UPLOAD_BYTES = 5 * 1024 * 1024  # per file; 60 s of 12 leads at 1000 Hz is 1.4 MB in WFDB format 16
MIN_SECONDS = 8.0  # the model reads a 10 s window; shorter records would be mostly padding
MAX_SECONDS = 60.0
# Accepted WFDB sampling rates, lowest and highest (Hz): any rate between, e.g. 240 Hz GE MAC-LAB, 257 Hz INCART,
# 360 Hz MIT-BIH; mlcore.preprocess resamples to the model rate.
WFDB_RATES = (100.0, 2000.0)
# Signal files a WFDB header may name: .dat, CinC 2020/2021 .mat (format 16 after a 24-byte MATLAB v4 header), and
# PTB's second file .xyz (Frank leads, ignored).
WFDB_SIGNAL_EXTENSIONS = ("dat", "mat", "xyz")
MIN_FS, MAX_FS = 50.0, 2000.0  # accepted for CSV/JSON (given in the form / document)

_LEAD_LIST = "I, II, III, aVR, aVL, aVF, V1–V6"
UPLOAD_EXTENSIONS = ("hea", "dat", "csv", "txt", "json")
ACCEPTED_UPLOADS = (
    "either a WFDB record (a .hea header and its .dat signal file together), one .csv or .txt file or one .json file"
)
_TIME_COLUMNS = ("time", "t", "time_s", "sample")
# Leads some carts record beyond the standard 12 (right-sided, posterior, Frank XYZ); named so that the message
# can say they are not accepted rather than that they are unrecognised.
_NON_STANDARD_LEADS = frozenset(
    ["v7", "v8", "v9", "v3r", "v4r", "v5r", "v6r", "v7r", "x", "y", "z", "cm5", "ml2", "mlii"]
)
# Bytes per sample for the WFDB storage formats we can size-check (https://physionet.org/physiotools/wag/signal-5.htm).
# Format 212 packs two 12-bit samples into three bytes.
_WFDB_BYTES_PER_SAMPLE: dict[str, float] = {"16": 2, "61": 2, "160": 2, "24": 3, "32": 4, "80": 1, "212": 1.5}
# Conversion factors to mV; WFDB writes "uV" for PTB-XL-style headers and some tools write the Greek mu.
_UNIT_TO_MV: dict[str, float] = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}
# A WFDB record name: letters, digits, '_', '-', '.'; never a path, since it becomes a file name on our disk.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$")
# A 12-lead header is under 2 KB; PhysioNet headers with long comment blocks stay well below this.
MAX_HEADER_BYTES = 64 * 1024
# Columns of a CSV / entries of a JSON "leads" object: 12 leads (and a time column) with room for the extra leads
# we name in the message; beyond this the file is not a 12-lead export at all.
MAX_COLUMNS = 32
# A CSV row is one sample of each lead: a few hundred characters. Longer lines are refused before the csv module
# splits them into millions of cells.
MAX_CSV_LINE_CHARS = 10_000
# Amplitude plausibility, in mV. On PTB-XL (19,601 records) the widest 1st-99th percentile range of any lead is
# 16 mV and no sample lies more than 18 mV from its lead's median; values in microvolts read as millivolts are a
# thousand times larger. Beyond MAX_DEVIATION_MV a single sample is an export error, not an artefact.
MAX_TYPICAL_RANGE_MV = 50.0
MAX_DEVIATION_MV = 1000.0
# Characters never shown as such in a message: controls, invisible formatting (bidi overrides), surrogates.
HIDDEN_CATEGORIES = frozenset(["Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"])


class IntakeError(ValueError):
    """An upload that cannot be read as a 12-lead ECG; ``message`` is for the user, ``field`` the form field."""

    def __init__(self, message: str, field: str = "file") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class ParsedEcg:
    signal: np.ndarray  # (12, n) float32, millivolts, rows in mlcore.preprocess.LEADS order
    fs: float
    source_format: str  # "wfdb" | "csv" | "json" | a clinical.readers format
    device: dict = field(default_factory=dict)  # what the file says besides the waveform (clinical.readers)
    notes: list[str] = field(default_factory=list)  # how the 12 leads were obtained, e.g. derived limb leads

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs

    @property
    def n_samples(self) -> int:
        return int(self.signal.shape[1])


# ---------------------------------------------------------------------------------------------------------------
# Shared checks


def _join(names: Sequence[str]) -> str:
    """'V4' / 'V4 and V5' / 'V4, V5 and V6'."""
    names = list(names)
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " and " + names[-1]


def _lead_s(names: Sequence[str]) -> str:
    return f"Lead {names[0]}" if len(names) == 1 else f"Leads {_join(names)}"


def shown(text: str, limit: int = 40) -> str:
    """User-supplied text as it may appear in a message: invisible and control characters (a right-to-left
    override would reorder the rest of the sentence on screen; a lone surrogate cannot even be encoded) are
    written as \\uXXXX escapes, and long text is cut."""
    text = str(text)
    out = "".join(f"\\u{ord(ch):04x}" if unicodedata.category(ch) in HIDDEN_CATEGORIES else ch
                  for ch in text[:limit])
    return out + "…" if len(text) > limit else out


def _quoted(names: Sequence[str], most: int = 5) -> str:
    """"'a', 'b' and 'c'", or "'a', 'b', 'c', 'd', 'e' and 995 more"."""
    quoted = [f"'{shown(n)}'" for n in names[:most]]
    if len(names) > most:
        return ", ".join(quoted) + f" and {len(names) - most:,} more"
    return _join(quoted)


def display_name(name: str) -> str:
    """An uploaded file's name for messages: without any folder a client sent, and safe to show."""
    return shown(_basename(name), 80)


def check_size(size: int, label: str, field: str) -> None:
    """Refuse an empty or over-large file before its content is read (the form and the API call this with the
    size of the uploaded file; the parsers with the length of the content)."""
    if size == 0:
        raise IntakeError(f"The {label} file is empty.", field)
    if size > MAX_UPLOAD_BYTES:
        raise IntakeError(
            f"The {label} file is {size / 2**20:.1f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB per file. "
            "A 10 s 12-lead ECG at 500 Hz is under 1 MB as a WFDB record, CSV or JSON file.",
            field,
        )


def _check_size(content: bytes, label: str, field: str) -> None:
    check_size(len(content), label, field)


_CONTROL = re.compile(rb"[\x00-\x08\x0e-\x1f]")


def _looks_binary(content: bytes) -> bool:
    # Control characters other than tab, newlines, vertical tab, form feed and carriage return do not occur in
    # text exports.
    return _CONTROL.search(content) is not None


def _utf16_or_32(content: bytes) -> str | None:
    """'UTF-16' / 'UTF-32' for text in those encodings (with a byte-order mark, or UTF-16 without one)."""
    if content.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "UTF-32"
    if content.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "UTF-16"
    head = content[:4096]
    if len(head) >= 4 and b"\0" in head:
        # ASCII text in UTF-16 has a NUL in every other byte, all at even or all at odd positions.
        even, odd = head[0::2].count(0) / len(head[0::2]), head[1::2].count(0) / len(head[1::2])
        if max(even, odd) > 0.9 and min(even, odd) < 0.1:
            return "UTF-16"
    return None


def _check_fs(fs: object, field: str, what: str = "The sampling rate") -> float:
    if isinstance(fs, bool) or not isinstance(fs, int | float):
        raise IntakeError(f"{what} must be a number of Hz; got {_json_shown(fs)}.", field)
    try:
        value = float(fs)
    except OverflowError:  # an integer with hundreds of digits
        value = math.inf
    if not math.isfinite(value) or not MIN_FS <= value <= MAX_FS:
        raise IntakeError(f"{what} must be between {MIN_FS:g} and {MAX_FS:g} Hz; got {value:g} Hz.", field)
    return value


def _json_shown(value: object) -> str:
    text = json.dumps(value, default=str)  # ASCII: non-ASCII characters come out as \u escapes
    return text if len(text) <= 40 else text[:40] + "…"


def _canonical_names(raw_names: Sequence[str], field: str) -> list[str]:
    """Map each raw lead label to its standard spelling, refusing unknown, extra, duplicate and missing leads."""
    canon = [canonical_lead(str(n)) for n in raw_names]
    strangers = [str(raw) for raw, c in zip(raw_names, canon) if c is None]
    extra = [s for s in strangers if s.strip().lower() in _NON_STANDARD_LEADS]
    unknown = [s for s in strangers if s not in extra]
    if unknown:
        verb = "is not a recognised lead name" if len(unknown) == 1 else "are not recognised lead names"
        raise IntakeError(
            f"{_quoted(unknown)} {verb}; a 12-lead ECG has leads {_LEAD_LIST} (spellings such as AVR, v1 or "
            "'Lead II' are fine).",
            field,
        )
    if extra:
        verb, pronoun = ("is", "it") if len(extra) == 1 else ("are", "them")
        raise IntakeError(
            f"{_lead_s([shown(e) for e in extra[:5]])} {verb} not part of the standard 12-lead ECG; remove "
            f"{pronoun} and upload only {_LEAD_LIST}.",
            field,
        )
    for lead in LEADS:
        spellings = [str(raw) for raw, c in zip(raw_names, canon) if c == lead]
        if len(spellings) > 1:
            raise IntakeError(
                f"Lead {lead} appears {len(spellings)} times (as {_quoted(spellings)}); each lead must appear once.",
                field,
            )
    missing = [lead for lead in LEADS if lead not in canon]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise IntakeError(f"{_lead_s(missing)} {verb} missing; a 12-lead ECG needs {_LEAD_LIST}.", field)
    return [c for c in canon if c is not None]


def _check_duration(n: int, fs: float, field: str) -> None:
    duration = n / fs
    if duration < MIN_SECONDS:
        raise IntakeError(
            f"The recording is {duration:.1f} s long ({n} samples at {fs:g} Hz); at least {MIN_SECONDS:g} s is needed.",
            field,
        )
    if duration > MAX_SECONDS:
        raise IntakeError(
            f"The recording is {duration:.1f} s long; at most {MAX_SECONDS:g} s is accepted. "
            "Crop it to the part to be interpreted.",
            field,
        )


def _assemble(columns: dict[str, np.ndarray], fs: float, source_format: str, field: str, *,
              device: dict | None = None, notes: list[str] | None = None) -> ParsedEcg:
    """Check lengths, values and duration of per-lead float64 arrays (keyed by canonical name) and stack them."""
    lengths = {lead: len(columns[lead]) for lead in LEADS}
    if len(set(lengths.values())) > 1:
        longest = max(LEADS, key=lambda lead: lengths[lead])
        shortest = min(LEADS, key=lambda lead: lengths[lead])
        raise IntakeError(
            f"Leads have different lengths: {longest} has {lengths[longest]} samples but {shortest} has "
            f"{lengths[shortest]}; all leads must cover the same time span.",
            field,
        )
    x = np.stack([np.asarray(columns[lead], dtype=np.float64) for lead in LEADS])  # (12, n) mV
    for bad, word in ((np.isnan(x), "missing (NaN)"), (np.isinf(x), "infinite")):
        rows = bad.any(axis=1)
        if rows.any():
            names = [lead for lead, hit in zip(LEADS, rows) if hit]
            first = int(np.argmax(bad[int(np.argmax(rows))]))
            verb = "contains" if len(names) == 1 else "contain"
            raise IntakeError(
                f"{_lead_s(names)} {verb} {word} values (first at {first / fs:.3f} s); every sample must be a number.",
                field,
            )
    _check_duration(x.shape[1], fs, field)
    too_large = (np.abs(x) > np.finfo(np.float32).max).any(axis=1)  # finite, but not as float32: not millivolts
    if too_large.any():
        names = [lead for lead, hit in zip(LEADS, too_large) if hit]
        verb = "has" if len(names) == 1 else "have"
        raise IntakeError(f"{_lead_s(names)} {verb} values far too large to be millivolts; an ECG spans a few mV.",
                          field)
    _check_amplitude(x, fs, field)
    return ParsedEcg(signal=np.ascontiguousarray(x, dtype=np.float32), fs=float(fs), source_format=source_format,
                     device=device or {}, notes=notes or [])


def _check_amplitude(x: np.ndarray, fs: float, field: str) -> None:
    """Refuse values no ECG in millivolts has: most often microvolts labelled as millivolts."""
    with np.errstate(all="ignore"):
        low, high = np.percentile(x, [1, 99], axis=1)
        typical = high - low
        deviation = np.abs(x - np.median(x, axis=1, keepdims=True))
    wide = typical > MAX_TYPICAL_RANGE_MV
    if wide.any():
        names = [lead for lead, hit in zip(LEADS, wide) if hit]
        verb = "spans" if len(names) == 1 else "span"
        raise IntakeError(
            f"{_lead_s(names)} {verb} about {float(typical[wide].max()):,.0f} mV, but an ECG spans a few mV. The "
            "values look like microvolts: upload millivolts, or say they are microvolts (uV units in a WFDB "
            'header, "units": "uV" in JSON).',
            field,
        )
    peak = deviation.max(axis=1)
    if (peak > MAX_DEVIATION_MV).any():
        i = int(np.argmax(peak))
        at = int(np.argmax(deviation[i]))
        raise IntakeError(
            f"Lead {LEADS[i]} has a value {float(peak[i]):,.0f} mV away from its baseline (at {at / fs:.3f} s); "
            f"values beyond ±{MAX_DEVIATION_MV:g} mV are not an ECG in millivolts. Check the export and its units.",
            field,
        )


# ---------------------------------------------------------------------------------------------------------------
# WFDB


def _basename(name: str) -> str:
    # Browsers send bare names, but some clients send a Windows or POSIX path.
    return PureWindowsPath(name).name


_HEADER_SHAPE = "'<record> <number of signals> <sampling rate> <number of samples>', e.g. 'rec 12 500 5000'"
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
        raise IntakeError(f"The .hea file has no record line; it is not a WFDB header. Its first line should be "
                          f"{_HEADER_SHAPE}.", "hea")
    invalid = f"The header {label} is not a valid WFDB header"
    # Some tools write microvolts with a Greek mu; wfdb reads headers as ASCII and would drop it, reading "V"
    # (a factor of a million), so it is spelt out before the ASCII check.
    numbered = numbered[:1] + [(number, _MICRO.sub("/uV", line)) for number, line in numbered[1:]]
    for number, line in numbered:
        if not line.isascii():
            odd = next(ch for ch in line if not ch.isascii())
            raise IntakeError(
                f"{invalid}: line {number} contains the non-ASCII character {shown(odd)!r} (U+{ord(odd):04X}); "
                "WFDB headers are plain ASCII text (lead names such as I, aVR or V1).",
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
            "digits, '_', '-' or '.').",
            "hea",
        )
    if len(tokens) < 2 or not _RX_WHOLE.fullmatch(tokens[1]):
        got = f"'{shown(tokens[1])}'" if len(tokens) > 1 else "nothing"
        raise IntakeError(
            f"{invalid}: the number of signals should be a whole number, but the first line has {got}. "
            f"Its first line should be {_HEADER_SHAPE}.",
            "hea",
        )
    n_sig = int(tokens[1])
    rates = f"{WFDB_RATES[0]:g} to {WFDB_RATES[1]:g}"
    if len(tokens) < 3:
        raise IntakeError(
            f"The header {label} does not state the sampling rate (WFDB would assume 250 Hz); WFDB uploads must "
            f"state theirs: {rates} Hz. Its first line should be {_HEADER_SHAPE}.",
            "hea",
        )
    if not _RX_FS.fullmatch(tokens[2]):
        raise IntakeError(
            f"The header's sampling rate '{shown(tokens[2])}' is not a number of Hz; WFDB uploads must be sampled at "
            f"{rates} Hz.",
            "hea",
        )
    fs = float(tokens[2].split("/")[0])
    if not WFDB_RATES[0] <= fs <= WFDB_RATES[1]:
        raise IntakeError(
            f"The header's sampling rate is {fs:g} Hz; WFDB uploads must be sampled at {rates} Hz.", "hea"
        )
    if len(tokens) < 4:
        raise IntakeError(f"The header {label} does not state the number of samples. Its first line should be "
                          f"{_HEADER_SHAPE}.", "hea")
    if not _RX_WHOLE.fullmatch(tokens[3]):
        raise IntakeError(
            f"The header's number of samples '{shown(tokens[3])}' is not a whole number. Its first line should be "
            f"{_HEADER_SHAPE}.",
            "hea",
        )
    sig_len = int(tokens[3])
    if sig_len == 0:
        raise IntakeError(
            f"The header {label} states 0 samples per lead; a recording of {MIN_SECONDS:g} to {MAX_SECONDS:g} s is "
            "needed.",
            "hea",
        )
    if sig_len / fs > MAX_SECONDS:
        raise IntakeError(
            f"The header {label} describes a recording of {sig_len / fs:,.1f} s ({sig_len:,} samples at {fs:g} Hz); "
            f"at most {MAX_SECONDS:g} s is accepted. Crop it to the part to be interpreted.",
            "hea",
        )
    described = len(lines) - 1
    if n_sig == 0 or described != n_sig:
        raise IntakeError(
            f"The header {label} declares {n_sig} signals but describes {described}; it is incomplete or not a WFDB "
            "header.",
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
            f"{len(parts)} of the 9 fields: {', '.join(_SIGNAL_FIELDS)} and lead name).",
            "hea",
        )
    file_name, fmt_spec, gain_spec, *numbers, name = parts

    def bad(what: str, value: str, expected: str) -> IntakeError:
        return IntakeError(
            f"The header {label} is not a valid WFDB header: on line {k} the {what} '{shown(value)}' is not "
            f"{expected}.",
            "hea",
        )

    if not _SAFE_NAME.match(file_name):
        raise IntakeError(
            f"The header's signal file name '{shown(file_name)}' is not a plain file name (up to 64 letters, digits, "
            "'_', '-' or '.', no folders).",
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
            "must be a positive number. A gain of 0 marks an uncalibrated signal, which cannot be interpreted.",
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
    _check_size(hea, ".hea", "hea")
    for name, content in uploaded:
        _check_size(content, f".{extension(name) or 'dat'}", "dat")
    hea_label = display_name(hea_name)
    if len(hea) > MAX_HEADER_BYTES:
        raise IntakeError(
            f"The header {hea_label} is {len(hea) / 1024:,.0f} KB; a WFDB header is a short text file (at most "
            f"{MAX_HEADER_BYTES // 1024} KB). Were the .hea and .dat files swapped?",
            "hea",
        )
    encoding = _utf16_or_32(hea)
    if encoding:
        raise IntakeError(f"The header {hea_label} is {encoding} text; WFDB headers are plain ASCII text.", "hea")
    if _looks_binary(hea):
        raise IntakeError(
            f"The header {hea_label} is not a text file; were the .hea and .dat files swapped?", "hea"
        )
    header = _read_header(hea.decode("utf-8", errors="replace"), hea_label)
    fs, sig_len, signals = header.fs, header.sig_len, header.signals
    names = [s.name for s in signals]

    # The 12 standard leads, picked by name; any other signal (Frank vx/vy/vz, V7, respiration...) is ignored.
    canon_all = [canonical_lead(n) for n in names]
    for lead in LEADS:
        spellings = [n for n, c in zip(names, canon_all) if c == lead]
        if len(spellings) > 1:
            raise IntakeError(
                f"Lead {lead} appears {len(spellings)} times (as {_quoted(spellings)}); each lead must appear once.",
                "hea",
            )
    missing = [lead for lead in LEADS if lead not in canon_all]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        others = [n for n, c in zip(names, canon_all) if c is None]
        verb_o = "is not a recognised lead name" if len(others) == 1 else "are not recognised lead names"
        besides = f" ({_quoted(others)} {verb_o})" if others else ""
        raise IntakeError(
            f"{_lead_s(missing)} {verb} missing from the header {hea_label}{besides}; a 12-lead ECG needs "
            f"{_LEAD_LIST}.",
            "hea",
        )
    wanted = [i for i, c in enumerate(canon_all) if c is not None]
    ignored = [names[i] for i, c in enumerate(canon_all) if c is None]

    # Which uploaded file is which signal file of the header (names compared without case, as browsers and
    # Windows may change it).
    by_name: dict[str, tuple[str, bytes]] = {}
    for name, content in uploaded:
        by_name.setdefault(_basename(name).lower(), (name, content))
    declared = list(dict.fromkeys(s.file_name for s in signals))
    needed = list(dict.fromkeys(signals[i].file_name for i in wanted))
    strangers = [n for n, _ in uploaded if _basename(n).lower() not in {d.lower() for d in declared}]
    if strangers:
        raise IntakeError(
            f"The header {hea_label} belongs to the signal file{'s' if len(declared) > 1 else ''} "
            f"{_join([repr(d) for d in declared[:5]])}, but the uploaded signal file is "
            f"'{display_name(strangers[0])}'. Upload the .hea and .dat files of the same record.",
            "dat",
        )
    absent = [f for f in needed if f.lower() not in by_name]
    if absent:
        f = absent[0]
        leads = [canon_all[i] for i in wanted if signals[i].file_name == f]
        given = _join([f"'{display_name(n)}'" for n, _ in uploaded]) if uploaded else "none"
        raise IntakeError(
            f"{_lead_s(leads)} of {hea_label} {'is' if len(leads) == 1 else 'are'} stored in the signal file "
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
            raise IntakeError(f"The leads in {label} use mixed storage formats ({_join(fmts)}); one format is "
                              "required.", "hea")
        fmt = fmts[0]
        if fmt not in _WFDB_BYTES_PER_SAMPLE:
            raise IntakeError(
                f"WFDB storage format {fmt} is not supported; export the record in format 16 (supported: "
                f"{supported}).",
                "hea",
            )
        if any(s.samples_per_frame != 1 for s in in_file):
            raise IntakeError("Records with several samples per frame (mixed rates) are not supported.", "hea")
        if any(s.skew for s in in_file):
            raise IntakeError("Records with skewed signals are not supported; export the record without skew.",
                              "hea")
        # The byte offset (format '16+24': the samples start after 24 bytes, as in CinC .mat files) is that of
        # the file's first signal (WFDB header specification); the others must agree or omit it.
        offset = in_file[0].byte_offset
        if any(s.byte_offset not in (0, offset) for s in in_file):
            raise IntakeError(f"The leads in {label} start at different byte offsets; one offset is required.",
                              "hea")
        expected = offset + math.ceil(len(in_file) * sig_len * _WFDB_BYTES_PER_SAMPLE[fmt])
        if len(content) != expected:
            raise IntakeError(
                f"The {shown('.' + (extension(name) or 'dat'), 12)} file is {len(content)} bytes but the header "
                f"describes {expected} bytes ({len(in_file)} leads × {sig_len} samples in format {fmt}"
                f"{f' after a {offset}-byte preamble' if offset else ''}); the file is truncated or does not belong "
                f"to {hea_label}.",
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
        key = s.units.strip().lower()
        if key not in _UNIT_TO_MV:
            raise IntakeError(
                f"Lead {shown(s.name)} is recorded in '{shown(s.units)}'; only mV or uV are accepted.", "hea"
            )
        factors[i] = _UNIT_TO_MV[key]

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
                              f"({shown(str(exc), 200)}).", "dat") from exc

    # Our reading of the header and wfdb's must agree, or the samples would be scaled by something else.
    chosen = [signals[i] for i in read_channels]
    read = (int(record.n_sig), float(record.fs), int(record.sig_len), [str(f) for f in record.fmt],
            [float(g) for g in record.adc_gain], [str(n) for n in record.sig_name])
    if read != (len(chosen), fs, sig_len, [s.fmt for s in chosen], [s.gain for s in chosen],
                [s.name for s in chosen]):
        raise IntakeError(f"The header {hea_label} could not be read unambiguously; re-export the record.", "hea")
    d_signal = np.asarray(record.d_signal)  # (n, channels read) ADC units
    if d_signal.shape != (sig_len, len(chosen)):
        raise IntakeError(f"The signal files do not hold {sig_len} samples of {len(chosen)} leads.", "dat")
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
    with np.errstate(all="ignore"):  # huge gains or values become inf and are refused by _assemble
        p_signal = np.asarray(record.dac(return_res=64), dtype=np.float64)  # (n, channels), header units; NaN = gap
        columns = {canon_all[i]: p_signal[:, read_channels.index(i)] * factors[i] for i in wanted}
    notes = []
    if ignored:
        verb = "signal is" if len(ignored) == 1 else "signals are"
        notes.append(f"The record's other {verb} not part of the standard 12-lead ECG and "
                     f"{'was' if len(ignored) == 1 else 'were'} ignored: {_join([shown(n) for n in ignored])}.")
    return _assemble(columns, fs, "wfdb", "dat", notes=notes)


# ---------------------------------------------------------------------------------------------------------------
# CSV

_CSV_SHAPE = (f"a CSV or text export has one row of numbers per sample, after an optional header row of lead names "
              f"({_LEAD_LIST}) and optional 'key: value' lines such as 'Sampling Rate (Hz): 500'")
# Lines of "key: value" (or "key=value") that ECG software writes above the samples.
MAX_PREAMBLE_LINES = 64
_RX_PREAMBLE = re.compile(r"^\s*([A-Za-z\u00b5\u03bc][^:=,;\t]{0,80}?)\s*[:=]\s*(.{0,200}?)\s*$")
_RX_RATE_KEY = re.compile(r"^(?:fs|sampl\w*[\s_-]*(?:rate|freq\w*)|(?:sample|sampling)?[\s_-]*frequency)\b",
                          re.IGNORECASE)
_RX_RATE_VALUE = re.compile(r"^(\d{1,6}(?:[.,]\d{0,6})?)\s*(hz|khz|samples?/s|sps)?$", re.IGNORECASE)
_RX_NUMBER = r"([-+]?\d{1,12}(?:[.,]\d{0,12})?(?:e[-+]?\d{1,3})?)"
_RX_SHAPE_LINE = re.compile(r"^\s*rhythm\s+signal\s*:\s*(\d{1,9})\s*[x×]\s*(\d{1,4})\s*$", re.IGNORECASE)
# Unit words of a preamble, to mV per unit.
_TEXT_UNITS: dict[str, float] = {"mv": 1.0, "millivolt": 1.0, "millivolts": 1.0, "uv": 1e-3, "µv": 1e-3,
                                 "μv": 1e-3, "microvolt": 1e-3, "microvolts": 1e-3, "nv": 1e-6, "v": 1e3}
# Einthoven's law, III = II − I, checked for a headerless 12-column file before its columns are taken to be in the
# standard order: the residual may be rounding (a few units) or a small fraction of the lead's own size.
EINTHOVEN_TOLERANCE = 0.1
EINTHOVEN_UNITS = 3.0


@dataclass
class _Preamble:
    """What the 'key: value' lines above a CSV / text export's samples say."""
    lines: int = 0  # how many lines (with blank ones) the preamble takes
    fs: float | None = None
    factor: float | None = None  # mV per value in the file, when the file says
    unit_said: str = ""  # how the file said it, for messages
    shape: tuple[int, int] | None = None  # "Rhythm signal: rows X leads"


def _unit_factor(word: str) -> float | None:
    return _TEXT_UNITS.get(word.strip().lower().replace("\u00b5", "µ").rstrip("."))


def _read_preamble(lines: list[str], label: str) -> _Preamble:
    """Read the 'key: value' lines at the top of a CSV / text export, up to its header row or first samples."""
    pre = _Preamble()
    gain: tuple[float, float, str] | None = None  # (digits per unit, mV per unit, the line)
    units: tuple[float, str] | None = None
    resolution: tuple[float, str] | None = None
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        match = _RX_PREAMBLE.match(line)
        if match is None or k >= MAX_PREAMBLE_LINES:
            break
        key, value = match.group(1).strip(), match.group(2).strip()
        pre.lines = k + 1
        lowered = key.lower()
        shape = _RX_SHAPE_LINE.match(line)
        if shape:
            pre.shape = (int(shape.group(1)), int(shape.group(2)))
            # The raw digital text export that writes this line stores integers at 1 µV resolution.
            resolution = resolution or (1e-3, "'Rhythm signal' export at 1 µV resolution")
        elif _RX_RATE_KEY.match(lowered) or lowered.endswith("(hz)"):
            found = _RX_RATE_VALUE.match(value)
            if not found:
                raise IntakeError(
                    f"Line {k + 1} of the {label} file, '{shown(line.strip(), 60)}', gives no sampling rate in Hz; "
                    "write it like 'Sampling Rate (Hz): 500'.", "csv")
            rate = float(found.group(1).replace(",", ".")) * (1000.0 if (found.group(2) or "").lower() == "khz"
                                                               else 1.0)
            pre.fs = _check_fs(rate, "csv", f"The sampling rate in the {label} file")
        elif lowered.startswith("gain"):
            found = re.match(_RX_NUMBER + r"\s*(?:(?:digits?|units?|counts?)?\s*(?:/|per)\s*(\S+))?$", value,
                             re.IGNORECASE)
            per = re.search(r"/\s*([A-Za-z\u00b5\u03bc]+)\s*\)", key)
            per_unit = _unit_factor(found.group(2)) if found and found.group(2) else (
                _unit_factor(per.group(1)) if per else 1.0)
            try:
                number = float(found.group(1).replace(",", ".")) if found else math.nan
            except ValueError:
                number = math.nan
            if not math.isfinite(number) or number <= 0 or per_unit is None:
                raise IntakeError(
                    f"Line {k + 1} of the {label} file, '{shown(line.strip(), 60)}', must give a positive gain in "
                    "digits per millivolt, like 'Gain (digit/millivolt): 2048'.", "csv")
            gain = (number, per_unit, shown(line.strip(), 60))
        elif lowered in ("unit", "units", "amplitude unit", "amplitude units", "signal unit", "signal units"):
            factor = _unit_factor(value)
            if factor is None:
                raise IntakeError(
                    f"Line {k + 1} of the {label} file says the units are '{shown(value, 20)}'; only mV or uV "
                    "(µV) are accepted.", "csv")
            units = (factor, shown(line.strip(), 60))
        elif "resolution" in lowered:
            found = re.match(_RX_NUMBER + r"\s*([A-Za-z\u00b5\u03bc]+)(?:\s*(?:/|per)\s*\w+)?$", value, re.IGNORECASE)
            factor = _unit_factor(found.group(2)) if found else None
            if found and factor is not None and float(found.group(1).replace(",", ".")) > 0:
                resolution = (float(found.group(1).replace(",", ".")) * factor, shown(line.strip(), 60))
    if gain is not None:
        pre.factor, pre.unit_said = gain[1] / gain[0], gain[2]
    elif units is not None:
        pre.factor, pre.unit_said = units
    elif resolution is not None:
        pre.factor, pre.unit_said = resolution
    return pre


def _decode_text(data: bytes, label: str, field: str) -> str:
    encoding = _utf16_or_32(data)
    if encoding:
        raise IntakeError(
            f"The {label} file is {encoding} text; save it as UTF-8 (in Excel: 'CSV UTF-8') and upload it again.",
            field,
        )
    if _looks_binary(data):
        raise IntakeError(f"The {label} file is not a text file; {_CSV_SHAPE}.", field)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # spreadsheet exports on older Windows systems


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "."))
    except ValueError:
        return False
    return True


def _first_line(text: str, label: str = ".csv") -> str:
    """The first non-blank line, refusing lines no CSV of samples has (checked before the csv module builds
    a list of millions of cells from one line)."""
    lines = text.splitlines()
    longest = max(range(len(lines)), key=lambda k: len(lines[k]), default=0)
    if lines and len(lines[longest]) > MAX_CSV_LINE_CHARS:
        raise IntakeError(
            f"Line {longest + 1} of the {label} file is {len(lines[longest]):,} characters long; each row of a CSV "
            f"ECG is one sample of each lead (at most {MAX_CSV_LINE_CHARS:,} characters), and {_CSV_SHAPE}.",
            "csv",
        )
    return next((line for line in lines if line.strip()), "")


def _check_einthoven(matrix: np.ndarray, unit_mv: float, label: str) -> None:
    """A headerless 12-column file is read in the standard order only if its columns 1-3 obey III = II − I."""
    with np.errstate(all="ignore"):
        lead_i, lead_ii, lead_iii = (matrix[:, c] - np.median(matrix[:, c]) for c in range(3))
        residual = float(np.sqrt(np.mean((lead_iii - (lead_ii - lead_i)) ** 2)))
        size = float(np.sqrt(np.mean(lead_iii ** 2) + np.mean((lead_ii - lead_i) ** 2)))
    if np.isfinite(residual) and residual <= max(EINTHOVEN_TOLERANCE * size, EINTHOVEN_UNITS * unit_mv):
        return
    raise IntakeError(
        f"The {label} file has no header row, and its 12 columns do not look like the standard order "
        f"({_LEAD_LIST}): column 3 is not column 2 minus column 1, as lead III = II − I would be. Add a header row "
        "naming the lead of each column.",
        "csv",
    )


def parse_csv(data: bytes, *, fs: float | None, label: str = ".csv") -> ParsedEcg:
    """Read a CSV / TSV / whitespace-separated text export: one row per sample, values in mV unless the file says.

    Above the samples, optional 'key: value' lines: a sampling rate ('Sampling Rate (Hz): 500', 'fs=500'), a gain
    ('Gain (digit/millivolt): 2048': values are ADC digits) or units ('Units: uV'), a shape ('Rhythm signal:
    5000 X 12', the raw digital text export at 1 µV resolution). Then an optional header row of lead names;
    without one, exactly 12 columns in the standard order, checked against Einthoven's law. Comma, semicolon,
    tab or space separated; with semicolons or tabs, decimal commas are accepted. An optional first column named
    time, t, time_s or sample is ignored. Row numbers in messages are the file's line numbers, as a spreadsheet
    counts them. The form's ``fs`` is needed only when the file gives none, and must agree with it.
    """
    _check_size(data, label, "csv")
    text = _decode_text(data, label, "csv")
    _first_line(text, label)
    all_lines = text.splitlines(keepends=True)
    pre = _read_preamble([line.rstrip("\r\n") for line in all_lines], label)
    if pre.fs is not None and fs is not None:
        form_rate = _check_fs(fs, "fs")
        if not math.isclose(form_rate, pre.fs, rel_tol=1e-6):
            raise IntakeError(
                f"The {label} file gives a sampling rate of {pre.fs:g} Hz, but the form says {form_rate:g} Hz; "
                "leave the form's sampling rate empty to use the file's, or correct the one that is wrong.",
                "fs",
            )
    if pre.fs is None and fs is None:
        raise IntakeError(
            f"Enter the sampling rate in Hz; this {label} file does not state it (no line such as "
            "'Sampling Rate (Hz): 500' above the samples).",
            "fs",
        )
    rate = pre.fs if pre.fs is not None else _check_fs(fs, "fs")
    body = "".join(all_lines[pre.lines:])
    first_line = next((line for line in body.splitlines() if line.strip()), "")
    delimiter = (";" if ";" in first_line else "," if "," in first_line else "\t" if "\t" in first_line
                 else " " if first_line.strip() else ",")
    decimal_comma = delimiter in (";", "\t")

    if delimiter == " ":
        rows = (line.split() for line in body.splitlines())
        reader = None
    else:
        reader = csv.reader(io.StringIO(body), delimiter=delimiter)
        rows = iter(reader)
    line_count = pre.lines
    header: list[str] | None = None
    names: list[str] = []
    canon: list[str] = []
    headerless = False
    header_row = 0
    # Samples are kept as doubles in one flat buffer (8 bytes each, not a Python float per cell), and only as
    # many as MAX_SECONDS allows: the rows after that are counted to say how long the recording is.
    values = array("d")
    max_rows = math.floor(MAX_SECONDS * rate)
    n_rows = 0
    blank_at: int | None = None
    n_cols = 0
    skip_first = False
    while True:
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as exc:  # a quoted cell running on for megabytes, say
            problem = (f"a cell is longer than {csv.field_size_limit():,} characters (is a quote left open?)"
                       if "field limit" in str(exc) else shown(str(exc), 120))
            row = pre.lines + (reader.line_num if reader else 0)
            raise IntakeError(f"Row {row} of the {label} file cannot be read: {problem}; {_CSV_SHAPE}.",
                              "csv") from None
        line_count += 1
        row_no = pre.lines + reader.line_num if reader is not None else line_count
        if not any(cell.strip() for cell in row):
            blank_at = blank_at or row_no
            continue
        if header is None:
            header, header_row, blank_at = [cell.strip() for cell in row], row_no, None
            if header and header[-1] == "":
                header = header[:-1]  # a trailing delimiter, common in spreadsheet exports
            if len(header) > MAX_COLUMNS:
                raise IntakeError(
                    f"Row {row_no} has {len(header):,} columns; a 12-lead ECG has one column per lead "
                    f"({_LEAD_LIST}), optionally after a time column.",
                    "csv",
                )
            n_cols = len(header)
            if all(_is_number(c) for c in header):
                if n_cols != 12:
                    raise IntakeError(
                        f"The {label} file has no header row naming the leads, and its rows have {n_cols} values; "
                        f"a file without a header must have exactly 12 columns in the order {_LEAD_LIST}. Add a "
                        "header row naming the lead of each column.",
                        "csv",
                    )
                headerless, names, canon = True, list(LEADS), list(LEADS)
            else:
                skip_first = header[0].lower() in _TIME_COLUMNS
                misplaced = [h for h in header[1:] if h.lower() in _TIME_COLUMNS]
                if misplaced:
                    raise IntakeError(f"The time column '{shown(misplaced[0])}' must be the first column.", "csv")
                names = header[1:] if skip_first else header
                canon = _canonical_names(names, "csv")
                continue
        if blank_at is not None:
            raise IntakeError(f"Row {blank_at} is empty; every sample needs a value for each lead.", "csv")
        if len(row) == n_cols + 1 and row[-1].strip() == "":
            row = row[:-1]
        if len(row) != n_cols:
            against = "the first row has" if headerless else "the header row names"
            raise IntakeError(f"Row {row_no} has {len(row)} values but {against} {n_cols} columns.", "csv")
        n_rows += 1
        if n_rows > max_rows:
            continue
        cells = row[1:] if skip_first else row
        try:
            if decimal_comma:
                values.extend([float(c.replace(",", ".")) for c in cells])
            else:
                values.extend([float(c) for c in cells])
        except ValueError:
            for name, cell in zip(names, cells):
                if not cell.strip():
                    raise IntakeError(f"Row {row_no}, column {shown(name)}: the cell is empty.", "csv") from None
                if not _is_number(cell) or (not decimal_comma and "," in cell):
                    message = f"Row {row_no}, column {shown(name)}: '{shown(cell.strip())}' is not a number."
                    raise IntakeError(message, "csv") from None
            raise IntakeError(f"Row {row_no} could not be read as numbers.", "csv") from None
    if header is None:
        raise IntakeError(f"The {label} file has no rows; {_CSV_SHAPE}.", "csv")
    if not n_rows:
        raise IntakeError(f"The {label} file has a header (row {header_row}) but no samples.", "csv")
    if pre.shape is not None and pre.shape != (n_rows, len(names)):
        raise IntakeError(
            f"The {label} file says 'Rhythm signal: {pre.shape[0]} X {pre.shape[1]}' ({pre.shape[0]} rows of "
            f"{pre.shape[1]} leads) but has {n_rows} rows of {len(names)} values; it may be cut short.",
            "csv",
        )
    if n_rows > max_rows:
        _check_duration(n_rows, rate, "csv")

    matrix = np.frombuffer(values, dtype=np.float64).reshape(n_rows, len(names))  # (n, 12) in file column order
    factor = pre.factor if pre.factor is not None else 1.0
    if headerless:
        _check_einthoven(matrix, factor, label)
    if pre.factor is None:
        _check_stated_units(matrix, canon, label)
    columns = {lead: matrix[:, i] * factor for i, lead in enumerate(canon)}
    return _assemble(columns, rate, "csv", "csv")


def _check_stated_units(matrix: np.ndarray, canon: Sequence[str], label: str) -> None:
    """Values read as mV (no gain or units line) that span far more than an ECG: digits or µV, never guessed."""
    with np.errstate(all="ignore"):
        low, high = np.percentile(matrix, [1, 99], axis=0)
    typical = high - low
    wide = typical > MAX_TYPICAL_RANGE_MV
    if not wide.any():
        return
    names = [lead for lead, hit in zip(canon, wide) if hit]
    integers = bool(np.all(np.isfinite(matrix)) and np.all(matrix == np.round(matrix)))
    what = "ADC digits (e.g. 2048 per mV) or microvolts" if integers else "microvolts or ADC digits"
    verb = "spans" if len(names) == 1 else "span"
    raise IntakeError(
        f"{_lead_s(names)} {verb} about {float(typical[wide].max()):,.0f} units, but an ECG spans a few mV. The "
        f"values look like {what}, and the {label} file does not say which; add a 'Gain (digit/millivolt): N' "
        "line (or 'Units: uV') above the samples, or export in mV.",
        "csv",
    )


# ---------------------------------------------------------------------------------------------------------------
# JSON


def _json_number_list(lead: str, values: object) -> np.ndarray:
    if not isinstance(values, list):
        raise IntakeError(f"Lead {lead} must be a list of numbers; got {type(values).__name__}.", "json")
    for i, v in enumerate(values):
        # bool is an int subclass and would silently become 0/1.
        if type(v) not in (int, float):
            shown_value = "null" if v is None else _json_shown(v)
            raise IntakeError(f"Lead {lead}, sample {i + 1}: {shown_value} is not a number.", "json")
    try:
        return np.asarray(values, dtype=np.float64)
    except OverflowError:  # an integer beyond the range of a double
        i = next(i for i, v in enumerate(values) if type(v) is int and abs(v) >= 2**1023)
        raise IntakeError(
            f"Lead {lead}, sample {i + 1}: a {len(str(values[i]))}-digit number is far too large to be millivolts.",
            "json",
        ) from None


def parse_json(data: bytes) -> ParsedEcg:
    """Read ``{"fs": 500, "units": "mV" | "uV", "leads": {"I": [...], ...}}`` (units default to mV)."""
    _check_size(data, ".json", "json")
    example = '{"fs": 500, "units": "mV", "leads": {"I": [...], "II": [...], ...}}'
    try:
        doc = json.loads(data)
    except UnicodeDecodeError as exc:
        raise IntakeError(f"The .json file is not UTF-8 text; expected a JSON document like {example}.",
                          "json") from exc
    except json.JSONDecodeError as exc:
        raise IntakeError(
            f"The .json file is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); expected a "
            f"document like {example}.",
            "json",
        ) from exc
    except RecursionError:
        raise IntakeError(
            f"The .json file is nested too deeply to be an ECG; expected a document like {example}.", "json"
        ) from None
    except ValueError as exc:  # an integer of more than 4300 digits (Python's limit on int parsing)
        problem = "it has a number thousands of digits long" if "digits" in str(exc) else shown(str(exc), 120)
        raise IntakeError(f"The .json file cannot be read: {problem}; expected a document like {example}, with "
                          "samples in mV such as 0.125.", "json") from exc
    if not isinstance(doc, dict):
        raise IntakeError(f"The JSON document must be an object like {example}.", "json")
    if "fs" not in doc:
        raise IntakeError(f'The JSON document has no "fs" (sampling rate in Hz); expected {example}.', "json")
    fs = _check_fs(doc["fs"], "json", 'The JSON "fs" (sampling rate)')
    units = doc.get("units", "mV")
    if not isinstance(units, str) or units.strip().lower() not in ("mv", "uv", "µv", "μv"):
        raise IntakeError(f'"units" must be "mV" or "uV"; got {_json_shown(units)}.', "json")
    factor = _UNIT_TO_MV[units.strip().lower()]
    if "leads" not in doc:
        raise IntakeError(f'The JSON document has no "leads"; expected {example}.', "json")
    leads = doc["leads"]
    if not isinstance(leads, dict):
        raise IntakeError(
            f'"leads" must be an object mapping lead names to lists of numbers, like {example}.', "json"
        )
    if len(leads) > MAX_COLUMNS:
        raise IntakeError(f'"leads" has {len(leads):,} entries; a 12-lead ECG has the leads {_LEAD_LIST}.', "json")
    raw_names = list(leads)
    canon = _canonical_names(raw_names, "json")
    for raw in raw_names:  # refuse a far too long lead before checking each of its samples
        if isinstance(leads[raw], list) and len(leads[raw]) / fs > MAX_SECONDS:
            _check_duration(len(leads[raw]), fs, "json")
    with np.errstate(all="ignore"):
        columns = {lead: _json_number_list(lead, leads[raw]) * factor for raw, lead in zip(raw_names, canon)}
    return _assemble(columns, fs, "json", "json")


# ---------------------------------------------------------------------------------------------------------------
# Dispatch


def extension(name: str) -> str:
    """An uploaded file's extension, lower case and without the dot ('' for none); folders are ignored."""
    return Path(_basename(name)).suffix.lower().lstrip(".")


def parse_upload(*, files: dict[str, tuple[str, bytes]], fs: float | None) -> ParsedEcg:
    """Pick the parser from the uploaded files' extensions.

    ``files`` maps a form field to ``(file name, content)``; the file name's extension decides (the key is used
    only for a name without one). A .hea with a .dat is WFDB, one .csv or .txt is CSV/text
    (``fs`` unless the file gives it), one .json is
    JSON (its own "fs" is used).
    """
    by_ext: dict[str, list[tuple[str, bytes]]] = {}
    for key, (name, content) in files.items():
        ext = extension(name) or key.lower().lstrip(".")
        by_ext.setdefault(ext, []).append((name, content))
    if not by_ext:
        raise IntakeError(f"No file was uploaded. Upload {ACCEPTED_UPLOADS}.")
    unsupported = sorted(e for e in by_ext if e not in UPLOAD_EXTENSIONS)
    if unsupported:
        shown_types = _join([f".{shown(e, 12)}" if e else "(no extension)" for e in unsupported[:5]])
        raise IntakeError(f"Files of type {shown_types} are not accepted. Upload {ACCEPTED_UPLOADS}.")
    counts = {e: len(v) for e, v in by_ext.items()}
    if counts.get("hea") == 1 and len(counts) > 1 and all(e in ("hea", *WFDB_SIGNAL_EXTENSIONS) for e in counts):
        # A header with the signal files it names (.dat, .mat, PTB's .xyz), matched by name in parse_wfdb.
        hea_name, hea = by_ext["hea"][0]
        signal_files = [f for e in WFDB_SIGNAL_EXTENSIONS for f in by_ext.get(e, [])]
        return parse_wfdb(hea, hea_name=hea_name, signal_files=signal_files)
    if counts == {"hea": 1}:
        raise IntakeError("A WFDB header (.hea) was uploaded without its signal file; upload the .dat file too.", "dat")
    if counts == {"dat": 1}:
        raise IntakeError("A WFDB signal file (.dat) was uploaded without its header; upload the .hea file too.", "hea")
    if counts in ({"csv": 1}, {"txt": 1}):
        ext = next(iter(counts))
        return parse_csv(by_ext[ext][0][1], fs=fs, label=f".{ext}")
    if counts == {"json": 1}:
        return parse_json(by_ext["json"][0][1])
    if len(counts) == 1 and next(iter(counts.values())) == 1 and next(iter(counts)) in _readers.READERS:
        ext = next(iter(counts))
        name, content = by_ext[ext][0]
        _check_size(content, f"The .{ext} file", "file")
        reading = _readers.READERS[ext](content, name)
        return _assemble(reading.columns, reading.fs, reading.source_format, "file", device=reading.device,
                         notes=reading.notes)
    raise IntakeError(f"Upload one ECG at a time: {ACCEPTED_UPLOADS}.")


# The single-file formats of clinical.readers (GE MUSE, HL7 aECG, DICOM, ...). They import IntakeError from this
# module, so they are loaded once it is defined; they add their extensions to what the upload accepts.
from clinical import readers as _readers  # noqa: E402

_readers.load()
UPLOAD_EXTENSIONS = ("hea", *WFDB_SIGNAL_EXTENSIONS, "csv", "txt", "json", *sorted(_readers.READERS))
if _readers.READERS:
    ACCEPTED_UPLOADS = ("either a WFDB record (a .hea header and its .dat signal file together), one .csv, .txt or "
                        ".json file, or one export file: " + ", ".join(f"{d} (.{e})" for e, d in
                                                               sorted(_readers.DESCRIPTIONS.items())))
