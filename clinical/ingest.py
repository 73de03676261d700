"""Intake of uploaded 12-lead ECGs: WFDB pairs, CSV and JSON into one canonical form.

Every parser returns a :class:`ParsedEcg` — a (12, n) float32 array in millivolts, rows in
:data:`mlcore.preprocess.LEADS` order — or raises :class:`IntakeError` whose message is shown to the person who
uploaded the file, so each message says what was wrong and what is accepted. No Django import: this module is
unit-tested on its own.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

import numpy as np
import wfdb

from mlcore.preprocess import LEADS, canonical_lead

MAX_UPLOAD_BYTES = 5 * 1024 * 1024  # per file; 60 s of 12 leads at 1000 Hz is 1.4 MB in WFDB format 16
MIN_SECONDS = 8.0  # the model reads a 10 s window; shorter records would be mostly padding
MAX_SECONDS = 60.0
WFDB_RATES = (100, 250, 500, 1000)  # accepted WFDB sampling rates
MIN_FS, MAX_FS = 50.0, 2000.0  # accepted for CSV/JSON (given in the form / document)

_LEAD_LIST = "I, II, III, aVR, aVL, aVF, V1–V6"
_ACCEPTED = "either a WFDB record (a .hea header and its .dat signal file together), one .csv file or one .json file"
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
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


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
    source_format: str  # "wfdb" | "csv" | "json"

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


def _check_size(content: bytes, label: str, field: str) -> None:
    if len(content) == 0:
        raise IntakeError(f"The {label} file is empty.", field)
    if len(content) > MAX_UPLOAD_BYTES:
        raise IntakeError(
            f"The {label} file is {len(content) / 2**20:.1f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB per file.",
            field,
        )


def _looks_binary(content: bytes) -> bool:
    # Control characters other than tab/newline/carriage return do not occur in text exports.
    head = content[:4096]
    return any(b < 9 or 13 < b < 32 for b in head)


def _check_fs(fs: object, field: str, what: str = "The sampling rate") -> float:
    if isinstance(fs, bool) or not isinstance(fs, int | float):
        raise IntakeError(f"{what} must be a number of Hz; got {json.dumps(fs, default=str)}.", field)
    value = float(fs)
    if not math.isfinite(value) or not MIN_FS <= value <= MAX_FS:
        raise IntakeError(f"{what} must be between {MIN_FS:g} and {MAX_FS:g} Hz; got {value:g} Hz.", field)
    return value


def _canonical_names(raw_names: Sequence[str], field: str) -> list[str]:
    """Map each raw lead label to its standard spelling, refusing unknown, extra, duplicate and missing leads."""
    canon = [canonical_lead(str(n)) for n in raw_names]
    strangers = [str(raw) for raw, c in zip(raw_names, canon) if c is None]
    extra = [s for s in strangers if s.strip().lower() in _NON_STANDARD_LEADS]
    unknown = [s for s in strangers if s not in extra]
    if unknown:
        quoted = _join([f"'{s}'" for s in unknown])
        verb = "is not a recognised lead name" if len(unknown) == 1 else "are not recognised lead names"
        raise IntakeError(
            f"{quoted} {verb}; a 12-lead ECG has leads {_LEAD_LIST} (spellings such as AVR, v1 or 'Lead II' are fine).",
            field,
        )
    if extra:
        verb, pronoun = ("is", "it") if len(extra) == 1 else ("are", "them")
        raise IntakeError(
            f"{_lead_s(extra)} {verb} not part of the standard 12-lead ECG; remove {pronoun} and upload only "
            f"{_LEAD_LIST}.",
            field,
        )
    for lead in LEADS:
        spellings = [str(raw) for raw, c in zip(raw_names, canon) if c == lead]
        if len(spellings) > 1:
            raise IntakeError(
                f"Lead {lead} appears {len(spellings)} times (as {_join([repr(s) for s in spellings])}); "
                "each lead must appear once.",
                field,
            )
    missing = [lead for lead in LEADS if lead not in canon]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise IntakeError(f"{_lead_s(missing)} {verb} missing; a 12-lead ECG needs {_LEAD_LIST}.", field)
    return [c for c in canon if c is not None]


def _assemble(columns: dict[str, np.ndarray], fs: float, source_format: str, field: str) -> ParsedEcg:
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
    n = x.shape[1]
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
    too_large = (np.abs(x) > np.finfo(np.float32).max).any(axis=1)  # finite, but not as float32: not millivolts
    if too_large.any():
        names = [lead for lead, hit in zip(LEADS, too_large) if hit]
        verb = "has" if len(names) == 1 else "have"
        raise IntakeError(f"{_lead_s(names)} {verb} values far too large to be millivolts.", field)
    return ParsedEcg(signal=np.ascontiguousarray(x, dtype=np.float32), fs=float(fs), source_format=source_format)


# ---------------------------------------------------------------------------------------------------------------
# WFDB


def _basename(name: str) -> str:
    # Browsers send bare names, but some clients send a Windows or POSIX path.
    return PureWindowsPath(name).name


def _header_record_name(text: str) -> str:
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return stripped.split()[0]
    raise IntakeError("The .hea file has no record line; it is not a WFDB header.", "hea")


def parse_wfdb(hea: bytes, dat: bytes, *, hea_name: str, dat_name: str) -> ParsedEcg:
    """Read a WFDB header and its single signal file (format 16, 212, 24, 32, 61, 80 or 160) into a ParsedEcg."""
    _check_size(hea, ".hea", "hea")
    _check_size(dat, ".dat", "dat")
    hea_label, dat_label = _basename(hea_name), _basename(dat_name)
    if _looks_binary(hea):
        raise IntakeError(
            f"The header {hea_label} is not a text file; were the .hea and .dat files swapped?", "hea"
        )
    text = hea.decode("utf-8", errors="replace")
    record_name = _header_record_name(text)
    if re.fullmatch(r"[^/]+/\d+", record_name):
        raise IntakeError("Multi-segment WFDB records are not supported; upload a single-segment record.", "hea")
    if not _SAFE_NAME.match(record_name):
        raise IntakeError(f"The header's record name {record_name!r} is not a valid WFDB record name.", "hea")

    with tempfile.TemporaryDirectory(prefix="ecg-intake-") as tmp:
        base = Path(tmp) / record_name
        Path(f"{base}.hea").write_bytes(hea)
        try:
            header = wfdb.rdheader(str(base))
        except Exception as exc:  # wfdb raises HeaderSyntaxError, IndexError, ValueError... on malformed headers
            raise IntakeError(
                f"The header {hea_label} is not a valid WFDB header; its first line should be "
                "'<record> <number of signals> <sampling rate> <number of samples>'.",
                "hea",
            ) from exc
        n_sig = int(header.n_sig or 0)
        file_names = list(getattr(header, "file_name", None) or [])
        if n_sig == 0 or len(file_names) != n_sig:
            raise IntakeError(
                f"The header {hea_label} declares {n_sig} signals but describes {len(file_names)}; "
                "it is incomplete or not a WFDB header.",
                "hea",
            )
        if header.sig_len is None:
            raise IntakeError(f"The header {hea_label} does not state the number of samples.", "hea")
        fs = float(header.fs)
        if fs not in WFDB_RATES:
            rates = ", ".join(str(r) for r in WFDB_RATES[:-1]) + f" or {WFDB_RATES[-1]}"
            raise IntakeError(
                f"The header's sampling rate is {fs:g} Hz; WFDB uploads must be sampled at {rates} Hz.", "hea"
            )

        names = [str(n) for n in (header.sig_name or [])]
        if len(names) != n_sig:
            raise IntakeError(f"The header {hea_label} does not name every signal; lead names are required.", "hea")
        canon = _canonical_names(names, "hea")

        declared = sorted(set(file_names))
        if len(declared) > 1:
            raise IntakeError(
                f"The header {hea_label} spreads the leads over several signal files ({_join(declared)}); "
                "only records with one .dat file are accepted.",
                "hea",
            )
        dat_file = declared[0]
        if dat_file.lower() != dat_label.lower():
            raise IntakeError(
                f"The header {hea_label} belongs to the signal file '{dat_file}', but the uploaded signal file is "
                f"'{dat_label}'. Upload the .hea and .dat files of the same record.",
                "dat",
            )
        if not _SAFE_NAME.match(dat_file):
            raise IntakeError(f"The header's signal file name {dat_file!r} is not a plain file name.", "hea")

        fmts = sorted({str(f) for f in header.fmt})
        if len(fmts) > 1:
            raise IntakeError(f"The leads use mixed storage formats ({_join(fmts)}); one format is required.", "hea")
        fmt = fmts[0]
        if fmt not in _WFDB_BYTES_PER_SAMPLE:
            supported = ", ".join(sorted(_WFDB_BYTES_PER_SAMPLE, key=int))
            raise IntakeError(
                f"WFDB storage format {fmt} is not supported; export the record in format 16 (supported: {supported}).",
                "hea",
            )
        if any(int(s or 1) != 1 for s in (header.samps_per_frame or [])):
            raise IntakeError("Records with several samples per frame (mixed rates) are not supported.", "hea")

        sig_len = int(header.sig_len)
        offset = int((header.byte_offset or [None])[0] or 0)
        expected = offset + math.ceil(n_sig * sig_len * _WFDB_BYTES_PER_SAMPLE[fmt])
        if len(dat) != expected:
            raise IntakeError(
                f"The .dat file is {len(dat)} bytes but the header describes {expected} bytes ({n_sig} leads × "
                f"{sig_len} samples in format {fmt}); the file is truncated or does not belong to {hea_label}.",
                "dat",
            )

        factors = []
        for raw, unit in zip(names, header.units or ["mV"] * n_sig):
            key = (unit or "mV").strip().lower()
            if key not in _UNIT_TO_MV:
                raise IntakeError(f"Lead {raw} is recorded in '{unit}'; only mV or uV are accepted.", "hea")
            factors.append(_UNIT_TO_MV[key])

        (Path(tmp) / dat_file).write_bytes(dat)
        try:
            record = wfdb.rdrecord(str(base), physical=True)
        except Exception as exc:  # the pair agrees on size, so this is a corrupt file; say so rather than crash
            raise IntakeError(f"The signal file {dat_label} could not be read ({exc}).", "dat") from exc

    p_signal = np.asarray(record.p_signal, dtype=np.float64)  # (n, n_sig), header units
    columns = {lead: p_signal[:, i] * factors[i] for i, lead in enumerate(canon)}
    return _assemble(columns, fs, "wfdb", "dat")


# ---------------------------------------------------------------------------------------------------------------
# CSV


def _decode_text(data: bytes, label: str, field: str) -> str:
    if _looks_binary(data):
        raise IntakeError(f"The {label} file is not a text file.", field)
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


def parse_csv(data: bytes, *, fs: float) -> ParsedEcg:
    """Read a CSV with a header row of lead names and one row per sample (values in mV).

    Comma, semicolon or tab separated; with semicolons, decimal commas are accepted. An optional first column
    named time, t, time_s or sample is ignored. Row numbers in messages count the header as row 1, as a
    spreadsheet does.
    """
    _check_size(data, ".csv", "csv")
    if fs is None:
        raise IntakeError("Enter the sampling rate in Hz; CSV files do not store it.", "fs")
    rate = _check_fs(fs, "fs")
    text = _decode_text(data, ".csv", "csv")
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = ";" if ";" in first_line else "," if "," in first_line else "\t" if "\t" in first_line else ","
    decimal_comma = delimiter != ","

    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header: list[str] | None = None
    names: list[str] = []
    canon: list[str] = []
    header_row = 0
    values: list[list[float]] = []
    blank_at: int | None = None
    n_cols = 0
    skip_first = False
    for row in reader:
        row_no = reader.line_num
        if not any(cell.strip() for cell in row):
            blank_at = blank_at or row_no
            continue
        if header is None:
            header, header_row, blank_at = [cell.strip() for cell in row], row_no, None
            if header and header[-1] == "":
                header = header[:-1]  # a trailing delimiter, common in spreadsheet exports
            if all(_is_number(c) for c in header):
                raise IntakeError(
                    f"The first row must name the leads ({_LEAD_LIST}); it contains numbers instead.", "csv"
                )
            skip_first = header[0].lower() in _TIME_COLUMNS
            misplaced = [h for h in header[1:] if h.lower() in _TIME_COLUMNS]
            if misplaced:
                raise IntakeError(f"The time column '{misplaced[0]}' must be the first column.", "csv")
            names = header[1:] if skip_first else header
            canon = _canonical_names(names, "csv")
            n_cols = len(header)
            continue
        if blank_at is not None:
            raise IntakeError(f"Row {blank_at} is empty; every sample needs a value for each lead.", "csv")
        if len(row) == n_cols + 1 and row[-1].strip() == "":
            row = row[:-1]
        if len(row) != n_cols:
            raise IntakeError(
                f"Row {row_no} has {len(row)} values but the header row names {n_cols} columns.", "csv"
            )
        cells = row[1:] if skip_first else row
        try:
            if decimal_comma:
                values.append([float(c.replace(",", ".")) for c in cells])
            else:
                values.append([float(c) for c in cells])
        except ValueError:
            for name, cell in zip(names, cells):
                if not cell.strip():
                    raise IntakeError(f"Row {row_no}, column {name}: the cell is empty.", "csv") from None
                if not _is_number(cell) or (not decimal_comma and "," in cell):
                    message = f"Row {row_no}, column {name}: '{cell.strip()}' is not a number."
                    raise IntakeError(message, "csv") from None
            raise IntakeError(f"Row {row_no} could not be read as numbers.", "csv") from None
    if header is None:
        raise IntakeError("The .csv file has no rows.", "csv")
    if not values:
        raise IntakeError(f"The .csv file has a header (row {header_row}) but no samples.", "csv")

    matrix = np.asarray(values, dtype=np.float64)  # (n, 12) in file column order
    columns = {lead: matrix[:, i] for i, lead in enumerate(canon)}
    return _assemble(columns, rate, "csv", "csv")


# ---------------------------------------------------------------------------------------------------------------
# JSON


def _json_number_list(lead: str, values: object) -> np.ndarray:
    if not isinstance(values, list):
        raise IntakeError(f"Lead {lead} must be a list of numbers; got {type(values).__name__}.", "json")
    for i, v in enumerate(values):
        # bool is an int subclass and would silently become 0/1.
        if type(v) not in (int, float):
            shown = "null" if v is None else json.dumps(v)[:40]
            raise IntakeError(f"Lead {lead}, sample {i + 1}: {shown} is not a number.", "json")
    return np.asarray(values, dtype=np.float64)


def parse_json(data: bytes) -> ParsedEcg:
    """Read ``{"fs": 500, "units": "mV" | "uV", "leads": {"I": [...], ...}}`` (units default to mV)."""
    _check_size(data, ".json", "json")
    try:
        doc = json.loads(data)
    except UnicodeDecodeError as exc:
        raise IntakeError("The .json file is not UTF-8 text.", "json") from exc
    except json.JSONDecodeError as exc:
        raise IntakeError(
            f"The .json file is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}).", "json"
        ) from exc
    example = '{"fs": 500, "units": "mV", "leads": {"I": [...], "II": [...], ...}}'
    if not isinstance(doc, dict):
        raise IntakeError(f"The JSON document must be an object like {example}.", "json")
    if "fs" not in doc:
        raise IntakeError(f'The JSON document has no "fs" (sampling rate in Hz); expected {example}.', "json")
    fs = _check_fs(doc["fs"], "json", 'The JSON "fs" (sampling rate)')
    units = doc.get("units", "mV")
    if not isinstance(units, str) or units.strip().lower() not in ("mv", "uv", "µv", "μv"):
        raise IntakeError(f'"units" must be "mV" or "uV"; got {json.dumps(units)}.', "json")
    factor = _UNIT_TO_MV[units.strip().lower()]
    if "leads" not in doc:
        raise IntakeError(f'The JSON document has no "leads"; expected {example}.', "json")
    leads = doc["leads"]
    if not isinstance(leads, dict):
        raise IntakeError(
            f'"leads" must be an object mapping lead names to lists of numbers, like {example}.', "json"
        )
    raw_names = list(leads)
    canon = _canonical_names(raw_names, "json")
    columns = {lead: _json_number_list(raw, leads[raw]) * factor for raw, lead in zip(raw_names, canon)}
    return _assemble(columns, fs, "json", "json")


# ---------------------------------------------------------------------------------------------------------------
# Dispatch


def _extension(name: str) -> str:
    return Path(_basename(name)).suffix.lower().lstrip(".")


def parse_upload(*, files: dict[str, tuple[str, bytes]], fs: float | None) -> ParsedEcg:
    """Pick the parser from the uploaded files' extensions.

    ``files`` maps a form field to ``(file name, content)``; the file name's extension decides (the key is used
    only for a name without one). A .hea with a .dat is WFDB, one .csv is CSV (``fs`` required), one .json is
    JSON (its own "fs" is used).
    """
    by_ext: dict[str, list[tuple[str, bytes]]] = {}
    for key, (name, content) in files.items():
        ext = _extension(name) or key.lower().lstrip(".")
        by_ext.setdefault(ext, []).append((name, content))
    if not by_ext:
        raise IntakeError(f"No file was uploaded. Upload {_ACCEPTED}.")
    unsupported = sorted(e for e in by_ext if e not in ("hea", "dat", "csv", "json"))
    if unsupported:
        shown = _join([f".{e}" if e else "(no extension)" for e in unsupported])
        raise IntakeError(f"Files of type {shown} are not accepted. Upload {_ACCEPTED}.")
    counts = {e: len(v) for e, v in by_ext.items()}
    if counts == {"hea": 1, "dat": 1}:
        (hea_name, hea), (dat_name, dat) = by_ext["hea"][0], by_ext["dat"][0]
        return parse_wfdb(hea, dat, hea_name=hea_name, dat_name=dat_name)
    if counts == {"hea": 1}:
        raise IntakeError("A WFDB header (.hea) was uploaded without its signal file; upload the .dat file too.", "dat")
    if counts == {"dat": 1}:
        raise IntakeError("A WFDB signal file (.dat) was uploaded without its header; upload the .hea file too.", "hea")
    if counts == {"csv": 1}:
        return parse_csv(by_ext["csv"][0][1], fs=fs)
    if counts == {"json": 1}:
        return parse_json(by_ext["json"][0][1])
    raise IntakeError(f"Upload one ECG at a time: {_ACCEPTED}.")
