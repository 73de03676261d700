"""CSV / TSV / whitespace text exports: optional 'key: value' preamble (rate, gain, units), optional header
row of lead names, values in mV, µV or ADC digits with a stated gain."""
from __future__ import annotations

import csv
import io
import math
import re
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from clinical.intake.encoding import looks_binary, utf16_or_32
from clinical.intake.errors import IntakeError, lead_s, shown
from clinical.intake.leads import LEAD_LIST, canonical_names, complete_leads
from clinical.intake.limits import MAX_COLUMNS, MAX_CSV_LINE_CHARS, MAX_SECONDS, MAX_TYPICAL_RANGE_MV
from clinical.intake.record import ParsedEcg, assemble, check_content_size, check_duration, check_fs, mv_per_unit
from mlcore.preprocess import LEADS

_TIME_COLUMNS = ("time", "t", "time_s", "sample")

_CSV_SHAPE = (f"a CSV or text export has one row of numbers per sample, after an optional header row of lead names "
              f"({LEAD_LIST}) and optional 'key: value' lines such as 'Sampling Rate (Hz): 500'")
_CORRECT_CELLS = "Correct the cell, or export the ECG again with a number in every cell."
# Lines of "key: value" (or "key=value") that ECG software writes above the samples.
MAX_PREAMBLE_LINES = 64
_RX_PREAMBLE = re.compile(r"^\s*([A-Za-z\u00b5\u03bc][^:=,;\t]{0,80}?)\s*[:=]\s*(.{0,200}?)\s*$")
_RX_RATE_KEY = re.compile(r"^(?:fs|sampl\w*[\s_-]*(?:rate|freq\w*)|(?:sample|sampling)?[\s_-]*frequency)\b",
                          re.IGNORECASE)
_RX_RATE_VALUE = re.compile(r"^(\d{1,6}(?:[.,]\d{0,6})?)\s*(hz|khz|samples?/s|sps)?$", re.IGNORECASE)
_RX_NUMBER = r"([-+]?\d{1,12}(?:[.,]\d{0,12})?(?:e[-+]?\d{1,3})?)"
_RX_SHAPE_LINE = re.compile(r"^\s*rhythm\s+signal\s*:\s*(\d{1,9})\s*[x×]\s*(\d{1,4})\s*$", re.IGNORECASE)
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
            pre.fs = check_fs(rate, "csv", f"The sampling rate in the {label} file")
        elif lowered.startswith("gain"):
            found = re.match(_RX_NUMBER + r"\s*(?:(?:digits?|units?|counts?)?\s*(?:/|per)\s*(\S+))?$", value,
                             re.IGNORECASE)
            per = re.search(r"/\s*([A-Za-z\u00b5\u03bc]+)\s*\)", key)
            per_unit = mv_per_unit(found.group(2)) if found and found.group(2) else (
                mv_per_unit(per.group(1)) if per else 1.0)
            try:
                number = float(found.group(1).replace(",", ".")) if found else math.nan
            except ValueError:
                number = math.nan
            if not math.isfinite(number) or number <= 0 or per_unit is None:
                raise IntakeError(
                    f"Line {k + 1} of the {label} file, '{shown(line.strip(), 60)}', must give a positive gain in "
                    "digits per millivolt. Correct it to read like 'Gain (digit/millivolt): 2048'.", "csv")
            gain = (number, per_unit, shown(line.strip(), 60))
        elif lowered in ("unit", "units", "amplitude unit", "amplitude units", "signal unit", "signal units"):
            factor = mv_per_unit(value)
            if factor is None:
                raise IntakeError(
                    f"Line {k + 1} of the {label} file says the units are '{shown(value, 20)}'; only mV or uV "
                    "(µV) are accepted. Export the samples in mV or uV and say which on that line.", "csv")
            units = (factor, shown(line.strip(), 60))
        elif "resolution" in lowered:
            found = re.match(_RX_NUMBER + r"\s*([A-Za-z\u00b5\u03bc]+)(?:\s*(?:/|per)\s*\w+)?$", value, re.IGNORECASE)
            factor = mv_per_unit(found.group(2)) if found else None
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
    encoding = utf16_or_32(data)
    if encoding:
        raise IntakeError(
            f"The {label} file is {encoding} text; save it as UTF-8 (in Excel: 'CSV UTF-8') and upload it again.",
            field,
        )
    if looks_binary(data):
        raise IntakeError(f"The {label} file is not a text file (a spreadsheet, archive or other binary file?). "
                          f"Save or export the ECG as CSV UTF-8 text: {_CSV_SHAPE}.", field)
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
            f"Line {longest + 1} of the {label} file is {len(lines[longest]):,} characters long, but a row of a CSV "
            f"ECG is one sample of each lead (at most {MAX_CSV_LINE_CHARS:,} characters). Export the ECG with one "
            "row per sample and one column per lead.",
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
        f"({LEAD_LIST}): column 3 is not column 2 minus column 1, as lead III = II − I would be. Add a header row "
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
    check_content_size(data, label, "csv")
    text = _decode_text(data, label, "csv")
    _first_line(text, label)
    all_lines = text.splitlines(keepends=True)
    pre = _read_preamble([line.rstrip("\r\n") for line in all_lines], label)
    if pre.fs is not None and fs is not None:
        form_rate = check_fs(fs, "fs")
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
    rate = pre.fs if pre.fs is not None else check_fs(fs, "fs")
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
            raise IntakeError(f"Row {row} of the {label} file cannot be read: {problem}. Export the ECG again as "
                              f"CSV: {_CSV_SHAPE}.", "csv") from None
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
                    f"({LEAD_LIST}), optionally after a time column. Remove the other columns.",
                    "csv",
                )
            n_cols = len(header)
            if all(_is_number(c) for c in header):
                if n_cols != 12:
                    raise IntakeError(
                        f"The {label} file has no header row naming the leads, and its rows have {n_cols} values; "
                        f"a file without a header must have exactly 12 columns in the order {LEAD_LIST}. Add a "
                        "header row naming the lead of each column.",
                        "csv",
                    )
                headerless, names, canon = True, list(LEADS), list(LEADS)
            else:
                skip_first = header[0].lower() in _TIME_COLUMNS
                misplaced = [h for h in header[1:] if h.lower() in _TIME_COLUMNS]
                if misplaced:
                    raise IntakeError(f"The time column '{shown(misplaced[0])}' must be the first column. Move it "
                                      "there, or remove it.", "csv")
                names = header[1:] if skip_first else header
                canon = canonical_names(names, "csv", what=f"the {label} file")
                continue
        if blank_at is not None:
            raise IntakeError(f"Row {blank_at} is empty; every sample needs a value for each lead. Remove the empty "
                              "row.", "csv")
        if len(row) == n_cols + 1 and row[-1].strip() == "":
            row = row[:-1]
        if len(row) != n_cols:
            against = "the first row has" if headerless else "the header row names"
            raise IntakeError(f"Row {row_no} has {len(row)} values but {against} {n_cols} columns. Correct the "
                              "row, or export the ECG again with one value per column in every row.", "csv")
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
                    raise IntakeError(f"Row {row_no}, column {shown(name)}: the cell is empty. Export the ECG "
                                      "again without gaps.", "csv") from None
                if not _is_number(cell) or (not decimal_comma and "," in cell):
                    message = (f"Row {row_no}, column {shown(name)}: '{shown(cell.strip())}' is not a number. "
                               f"{_CORRECT_CELLS}")
                    raise IntakeError(message, "csv") from None
            raise IntakeError(f"Row {row_no} could not be read as numbers. {_CORRECT_CELLS}", "csv") from None
    if header is None:
        raise IntakeError(f"The {label} file has no rows. Upload the complete export: {_CSV_SHAPE}.", "csv")
    if not n_rows:
        raise IntakeError(f"The {label} file has a header (row {header_row}) but no samples. Upload the complete "
                          "export.", "csv")
    if pre.shape is not None and pre.shape != (n_rows, len(names)):
        raise IntakeError(
            f"The {label} file says 'Rhythm signal: {pre.shape[0]} X {pre.shape[1]}' ({pre.shape[0]} rows of "
            f"{pre.shape[1]} leads) but has {n_rows} rows of {len(names)} values; it may be cut short. Upload the "
            "complete export.",
            "csv",
        )
    if n_rows > max_rows:
        check_duration(n_rows, rate, "csv")

    matrix = np.frombuffer(values, dtype=np.float64).reshape(n_rows, len(names))  # (n, 12) in file column order
    factor = pre.factor if pre.factor is not None else 1.0
    if headerless:
        _check_einthoven(matrix, factor, label)
    if pre.factor is None:
        _check_stated_units(matrix, canon, label)
    columns = {lead: matrix[:, i] * factor for i, lead in enumerate(canon)}
    notes = complete_leads(columns, what=f"the {label} file", labels=names, field="csv")
    return assemble(columns, rate, "csv", "csv", notes=notes)


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
        f"{lead_s(names)} {verb} about {float(typical[wide].max()):,.0f} units, but an ECG spans a few mV. The "
        f"values look like {what}, and the {label} file does not say which; add a 'Gain (digit/millivolt): N' "
        "line (or 'Units: uV') above the samples, or export in mV.",
        "csv",
    )


# ---------------------------------------------------------------------------------------------------------------
# JSON
