"""A corpus of malformed and malicious uploads, generated in code (nothing binary is committed).

Each :class:`Case` is what a hostile or broken client sends to the upload page: files (as ``ecg_submit`` takes
them: key -> (file name, content)) and form fields, with the refusal it must get: a fragment of the message the
user sees and the field it is shown next to. ``stage`` says where it is refused: "service" (parsed and refused by
``services.ecg_submit``, which audits the refusal as an ``ecg.upload_refused`` event) or "form" (refused by the
upload form or the API serializer before anything is read or stored, so not audited). ``direct`` is False for the
form-only cases whose message comes from Django's form machinery rather than from the intake parsers.

Over HTTP, Django drops folders, control and invisible characters from a file name (and cuts it to 255
characters) before the app sees it; run directly through the service, the raw names reach the app. The file-name
cases are built so that both give the same refusal, and the app never uses a name as a path.
"""
from __future__ import annotations

import codecs
import io
import json
import random
import struct
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import wfdb

from clinical import demo
from clinical.intake import MAX_UPLOAD_BYTES
from mlcore.preprocess import LEADS
from tests.clinical import export_fixtures as fx
from tests.clinical.hostile.multipart import Content, Payload

FS = 500
BASE_FIELDS = {"pseudonym": "PT-HOSTILE", "age": "58", "sex": "F", "fs": ""}
FORM_FIELDS = ("pseudonym", "age", "sex", "fs")
HTML_PAYLOAD = '<script>alert("pwn")</script>'
IMG_PAYLOAD = "<img src=x onerror=alert(1)>"


@dataclass(frozen=True)
class Case:
    name: str
    covers: str  # the kind of hostile input, for the report
    files: dict[str, tuple[str, Content]]
    expect: str  # a fragment of the message the user is shown
    field: str  # the service's field (hea, dat, csv, json, file, fs, pseudonym), or the form's (files)
    form: dict[str, str] = field(default_factory=dict)  # form fields other than BASE_FIELDS
    stage: str = "service"  # "service": refused and audited by ecg_submit; "form": refused before, not audited
    direct: bool = True  # also run through services.ecg_submit (False: the message is the form's own)
    forbidden: tuple[str, ...] = ()  # text that must not appear (unescaped) in the page

    @property
    def fields(self) -> dict[str, str]:
        return BASE_FIELDS | self.form

    @property
    def form_field(self) -> str:
        """The upload form's field that shows the message."""
        return self.field if self.field in FORM_FIELDS else "files"

    def submit_kwargs(self) -> dict:
        """Keyword arguments for services.ecg_submit, as the upload view would pass them."""
        f = self.fields
        fs = float(f["fs"]) if f["fs"] else None
        return {"pseudonym": f["pseudonym"], "age": int(f["age"]), "sex": f["sex"], "fs": fs,
                "files": {k: (name, bytes(c)) for k, (name, c) in self.files.items()}}


# ---------------------------------------------------------------------------------------------------------------
# Well-formed material to break


@cache
def _signal(seed: int = 1, fs: int = FS, seconds: float = 10.0) -> np.ndarray:
    return demo.synthesize(demo.CASES[0], fs=fs, seconds=seconds, seed=seed)  # (12, n) mV


def _wfdb(sig: np.ndarray, fs: int = FS, name: str = "rec", gain: float = 1000.0) -> tuple[bytes, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        wfdb.wrsamp(name, fs=fs, units=["mV"] * 12, sig_name=list(LEADS), p_signal=sig.T.astype(np.float64),
                    fmt=["16"] * 12, adc_gain=[gain] * 12, baseline=[0] * 12, write_dir=tmp)
        return (Path(tmp) / f"{name}.hea").read_bytes(), (Path(tmp) / f"{name}.dat").read_bytes()


@cache
def _pair() -> tuple[bytes, bytes]:
    return _wfdb(_signal())


def _header(edit_record: Callable[[list[str]], list[str]] | None = None,
            edit_signal: Callable[[list[str], int], list[str] | None] | None = None,
            extra_lines: list[str] | None = None) -> bytes:
    """The good header with its record line's and/or each signal line's fields edited (None drops a line)."""
    lines = _pair()[0].decode().splitlines()
    record = lines[0].split()
    if edit_record:
        record = edit_record(record)
    out = [" ".join(record)]
    for i, line in enumerate(lines[1:]):
        parts = line.split()
        if edit_signal:
            parts = edit_signal(parts, i)
        if parts is not None:
            out.append(" ".join(parts))
    return ("\n".join(out + (extra_lines or [])) + "\n").encode()


def _set(index: int, value: str, only: int | None = None) -> Callable[[list[str], int], list[str]]:
    def edit(parts: list[str], i: int) -> list[str]:
        if only is None or i == only:
            parts = parts.copy()
            parts[index] = value
        return parts

    return edit


def _record(**changes: str) -> Callable[[list[str]], list[str]]:
    keys = {"name": 0, "n_sig": 1, "fs": 2, "sig_len": 3}

    def edit(record: list[str]) -> list[str]:
        record = record.copy()
        for key, value in changes.items():
            if value is None:
                del record[keys[key]:]
            else:
                record[keys[key]] = value
        return record

    return edit


def _wfdb_files(hea: bytes, dat: bytes | Payload | None = None, hea_name: str = "rec.hea",
                dat_name: str = "rec.dat") -> dict[str, tuple[str, Content]]:
    return {"hea": (hea_name, hea), "dat": (dat_name, _pair()[1] if dat is None else dat)}


def _csv(names: list[str] | None = None, sig: np.ndarray | None = None, cell: Callable[[str], str] | None = None,
         row: int = 100, col: int = 3) -> bytes:
    """A CSV of the good ECG with optional other lead names and one cell replaced."""
    lines = (_good_csv() if sig is None else demo.as_csv(sig).decode()).splitlines()
    if names is not None:
        lines[0] = ",".join(names)
    if cell is not None:
        cells = lines[row].split(",")
        cells[col] = cell(cells[col])
        lines[row] = ",".join(cells)
    return ("\n".join(lines) + "\n").encode()


@cache
def _good_csv() -> str:
    return demo.as_csv(_signal()).decode()


def _json(leads: dict | None = None, **top: object) -> bytes:
    doc = json.loads(demo.as_json(_signal(), FS))
    if leads is not None:
        doc["leads"] = leads
    doc.update(top)
    return json.dumps(doc, separators=(",", ":")).encode()


def _good_leads() -> dict[str, list[float]]:
    return json.loads(demo.as_json(_signal(), FS))["leads"]


def _csv_case(name: str, covers: str, content: bytes, expect: str, *, file_name: str = "ecg.csv",
              fs: str = str(FS), **kwargs) -> Case:
    form = {"fs": fs} | kwargs.pop("form", {})
    return Case(name, covers, {"csv": (file_name, content)}, expect, kwargs.pop("field", "csv"), form=form, **kwargs)


def _json_case(name: str, covers: str, content: bytes, expect: str, *, file_name: str = "ecg.json", **kw) -> Case:
    return Case(name, covers, {"json": (file_name, content)}, expect, kw.pop("field", "json"), **kw)


def _zip_of(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------------------------
# The corpus


def _wfdb_cases() -> list[Case]:
    hea, dat = _pair()
    other_dat = _wfdb(_signal(seed=99))[1]  # another record of the same shape: only the checksums tell
    microvolts_hea, microvolts_dat = _wfdb(_signal() * 1000, gain=1)  # microvolt values labelled mV
    thirteen = _header(extra_lines=[hea.decode().splitlines()[-1].replace(" V6", " V7")])
    thirteen = thirteen.replace(b"rec 12 ", b"rec 13 ", 1)
    return [
        Case("wfdb-truncated-to-one-byte", "truncated .dat", _wfdb_files(hea, dat[:1]),
             "The .dat file is 1 bytes but the header describes 120000 bytes", "dat"),
        Case("wfdb-truncated-odd-length", "truncated .dat", _wfdb_files(hea, dat[:-3]),
             "the file is truncated or does not belong to rec.hea", "dat"),
        Case("wfdb-dat-longer-than-header", "oversized .dat (beyond the header)",
             _wfdb_files(hea, dat + bytes(range(256)) * 64), "is 136384 bytes but the header describes 120000", "dat"),
        Case("wfdb-dat-over-32mb", "oversized .dat (beyond 32 MB)", _wfdb_files(hea, dat * 300),
             "The .dat file is 34.3 MB; the limit is 32 MB per file.", "dat", stage="form"),
        Case("wfdb-dat-100mb", "100 MB upload (streamed)", _wfdb_files(hea, Payload(100 * 2**20)),
             "The .dat file is 100.0 MB; the limit is 32 MB per file.", "dat", stage="form", direct=False),
        Case("wfdb-format-mismatch", "header/data mismatch (format)", _wfdb_files(_header(edit_signal=_set(1, "32"))),
             "the header describes 240000 bytes (12 leads × 5000 samples in format 32)", "dat"),
        Case("wfdb-format-unsupported", "header/data mismatch (format)",
             _wfdb_files(_header(edit_signal=_set(1, "8"))), "WFDB storage format 8 is not supported", "hea"),
        Case("wfdb-sample-count-mismatch", "header/data mismatch (sample count)",
             _wfdb_files(_header(_record(sig_len="4000"))), "the header describes 96000 bytes", "dat"),
        Case("wfdb-signal-count-mismatch", "header/data mismatch (signal count)",
             _wfdb_files(_header(_record(n_sig="13"))), "declares 13 signals but describes 12", "hea"),
        Case("wfdb-dat-of-another-record", "a valid .hea with the .dat of another record",
             _wfdb_files(hea, other_dat), "does not match its header: the samples of lead I add up to checksum", "dat"),
        Case("wfdb-checksum-not-a-number", "header/data mismatch (checksum field)",
             _wfdb_files(_header(edit_signal=_set(6, "0x1F", only=4))),
             "on line 6 the checksum '0x1F' is not a whole number", "hea"),
        Case("wfdb-adc-gain-zero", "header/data mismatch (ADC fields)",
             _wfdb_files(_header(edit_signal=_set(2, "0/mV"))), "Lead I has an ADC gain of 0 in the header", "hea"),
        Case("wfdb-adc-gain-not-a-number", "non-numeric header fields",
             _wfdb_files(_header(edit_signal=_set(2, "nan(0)/mV", only=2))),
             "on line 4 the ADC gain 'nan(0)/mV' is not a gain", "hea"),
        Case("wfdb-adc-resolution-text", "non-numeric header fields",
             _wfdb_files(_header(edit_signal=_set(3, "sixteen"))), "the ADC resolution 'sixteen' is not a whole number",
             "hea"),
        Case("wfdb-fs-zero", "absurd sampling rate", _wfdb_files(_header(_record(fs="0"))),
             "The header's sampling rate is 0 Hz; WFDB uploads must be sampled at 100 to 2000 Hz.", "hea"),
        Case("wfdb-fs-negative", "absurd sampling rate", _wfdb_files(_header(_record(fs="-500"))),
             "The header's sampling rate '-500' is not a number of Hz", "hea"),
        Case("wfdb-fs-1e9", "absurd sampling rate", _wfdb_files(_header(_record(fs="1e9"))),
             "The header's sampling rate '1e9' is not a number of Hz", "hea"),
        Case("wfdb-fs-a-billion", "absurd sampling rate", _wfdb_files(_header(_record(fs="1000000000"))),
             "The header's sampling rate is 1e+09 Hz", "hea"),
        Case("wfdb-fs-nan-text", "absurd sampling rate", _wfdb_files(_header(_record(fs="NaN"))),
             "The header's sampling rate 'NaN' is not a number of Hz", "hea"),
        Case("wfdb-fs-missing", "absurd sampling rate (WFDB would default to 250 Hz)",
             _wfdb_files(_header(_record(fs=None))), "does not state the sampling rate (WFDB would assume 250 Hz)",
             "hea"),
        Case("wfdb-samples-10e12", "absurd sample count", _wfdb_files(_header(_record(sig_len="1000000000000"))),
             "describes a recording of 2,000,000,000.0 s (1,000,000,000,000 samples at 500 Hz); at most 300 s", "hea"),
        Case("wfdb-samples-zero", "absurd sample count", _wfdb_files(_header(_record(sig_len="0"))),
             "states 0 samples per lead", "hea"),
        Case("wfdb-samples-negative", "absurd sample count", _wfdb_files(_header(_record(sig_len="-5000"))),
             "The header's number of samples '-5000' is not a whole number", "hea"),
        Case("wfdb-signals-10e12", "absurd signal count", _wfdb_files(_header(_record(n_sig="1000000000000"))),
             "declares 1000000000000 signals but describes 12", "hea"),
        Case("wfdb-signals-not-a-number", "non-numeric header fields", _wfdb_files(_header(_record(n_sig="twelve"))),
             "the number of signals should be a whole number, but the first line has 'twelve'", "hea"),
        Case("wfdb-13-signals", "header claiming 13 signals", _wfdb_files(thirteen),
             "header describes 130000 bytes (13 leads × 5000 samples", "dat"),
        Case("wfdb-1-signal", "header claiming 1 signal",
             _wfdb_files(_header(_record(n_sig="1"), edit_signal=lambda p, i: p if i == 0 else None)),
             "This is a 1-lead recording (I), such as a Holter or monitor strip", "hea"),
        Case("wfdb-duplicate-lead", "duplicate leads", _wfdb_files(_header(edit_signal=_set(8, "V5", only=11))),
             "Lead V5 appears 2 times", "hea"),
        Case("wfdb-lead-names-missing", "missing leads (unnamed signals)",
             _wfdb_files(_header(edit_signal=lambda p, i: p[:8])),
             "does not name every signal; lead names are required", "hea"),
        Case("wfdb-microvolts-as-millivolts", "wrong units", _wfdb_files(microvolts_hea, microvolts_dat),
             "The values look like microvolts", "dat"),
        Case("wfdb-header-points-to-another-file", "header pointing the signal file to another name",
             _wfdb_files(_header(edit_signal=_set(0, "other.dat"))),
             "belongs to the signal file 'other.dat', but the uploaded signal file is 'rec.dat'", "dat"),
        Case("wfdb-header-signal-file-traversal", "path traversal (in the header)",
             _wfdb_files(_header(edit_signal=_set(0, "../../etc/passwd"))),
             "signal file name '../../etc/passwd' is not a plain file name", "hea"),
        Case("wfdb-record-name-traversal", "path traversal (in the header)",
             _wfdb_files(_header(_record(name="../../tmp/evil"))),
             "record name '../../tmp/evil' is not a valid WFDB record name", "hea"),
        Case("wfdb-record-name-300-chars", "absurd header fields", _wfdb_files(_header(_record(name="r" * 300))),
             "is not a valid WFDB record name", "hea"),
        Case("wfdb-file-names-traversal", "path traversal in file names",
             _wfdb_files(hea, hea_name="../../etc/passwd.hea", dat_name="../../etc/passwd.dat"),
             "belongs to the signal file 'rec.dat', but the uploaded signal file is 'passwd.dat'", "dat",
             forbidden=("../../etc",)),
        Case("wfdb-file-names-windows-paths", "path traversal in file names (Windows)",
             _wfdb_files(hea, hea_name="C:\\Users\\ward\\rec.hea", dat_name="..\\..\\Windows\\win.dat"),
             "but the uploaded signal file is 'win.dat'", "dat"),
        Case("wfdb-file-name-300-chars", "absurd file names (Django cuts them to 255 characters)",
             _wfdb_files(hea, dat_name="d" * 300 + ".dat"),
             "but the uploaded signal file is 'dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
             "dddddddd…'", "dat"),
        Case("wfdb-file-names-nfd-vs-nfc", "odd unicode in file names (NFC / NFD)",
             _wfdb_files(hea, hea_name="re\u0301c.hea", dat_name="r\u00e9c.dat"),
             "belongs to the signal file 'rec.dat', but the uploaded signal file is 'r\u00e9c.dat'", "dat"),
        Case("wfdb-homoglyph-lead-name", "odd unicode in lead names (Cyrillic I)",
             _wfdb_files(_header(edit_signal=_set(8, "\u0406", only=0))),
             "contains the non-ASCII character '\u0406' (U+0406)", "hea"),
        Case("wfdb-html-lead-name", "HTML in lead names",
             _wfdb_files(_header(edit_signal=_set(8, IMG_PAYLOAD, only=6))),
             "is not a recognised lead name", "hea", forbidden=(IMG_PAYLOAD,)),
        Case("wfdb-header-utf16", "UTF-16 text", _wfdb_files(codecs.BOM_UTF16_LE + hea.decode().encode("utf-16-le")),
             "is UTF-16 text; WFDB headers are plain ASCII text", "hea"),
        Case("wfdb-header-of-1mb-comments", "oversized header", _wfdb_files(hea + b"# padding\n" * 100_000),
             "is 977 KB; a WFDB header is a short text file (at most 64 KB)", "hea"),
    ]


def _csv_cases() -> list[Case]:
    rng = random.Random(7)
    junk = rng.randbytes(200_000)
    row_of_zeros = ",".join(["0"] * 12) + "\n"
    microvolts = _signal() * 1000
    return [
        _csv_case("csv-binary-junk", "binary junk with a .csv name", junk, "The .csv file is not a text file"),
        _csv_case("csv-zip-renamed", "compressed file with a .csv name", _zip_of("ecg.csv", _csv()),
                  "The .csv file is not a text file"),
        _csv_case("csv-utf16-bom", "UTF-16 / BOM text", codecs.BOM_UTF16_LE + _csv().decode().encode("utf-16-le"),
                  "The .csv file is UTF-16 text; save it as UTF-8"),
        _csv_case("csv-utf16-no-bom", "UTF-16 / BOM text", _csv().decode().encode("utf-16-be"),
                  "The .csv file is UTF-16 text"),
        _csv_case("csv-utf32-bom", "UTF-16 / BOM text", _csv().decode().encode("utf-32"), "is UTF-32 text"),
        _csv_case("csv-one-line-millions-of-columns", "zip-bomb-like CSV (one line, millions of columns)",
                  ",".join(LEADS).encode() + b"\n" + b"0," * 2_400_000 + b"0\n",
                  "Line 2 of the .csv file is 4,800,001 characters long"),
        _csv_case("csv-header-of-2-million-leads", "zip-bomb-like CSV (millions of columns)",
                  b"I," * 2_400_000 + b"\n", "Line 1 of the .csv file is 4,800,000 characters long"),
        _csv_case("csv-million-short-rows", "zip-bomb-like CSV (millions of rows)",
                  ",".join(LEADS).encode() + b"\n" + row_of_zeros.encode() * 200_000,
                  "The recording is 400.0 s long; at most 300 s is accepted."),
        _csv_case("csv-1e308-everywhere", "4.9 MB of 1e308", ",".join(LEADS).encode() + b"\n"
                  + (",".join(["1e308"] * 12) + "\n").encode() * 68_000, "far too large to be millivolts", fs="2000"),
        _csv_case("csv-unterminated-quote", "extremely long lines (a quoted cell running on)",
                  ",".join(LEADS).encode() + b'\n"' + b"1\n" * 200_000,
                  "cannot be read: a cell is longer than 131,072 characters (is a quote left open?)"),
        _csv_case("csv-33mb", "oversized CSV (above the per-file limit)",
                  ",".join(LEADS).encode() + b"\n" + row_of_zeros.encode() * 1_450_000,
                  "The .csv file is 33.2 MB; the limit is 32 MB per file.", stage="form"),
        _csv_case("csv-nan", "NaN / inf / empty cells", _csv(cell=lambda c: "NaN"),
                  "Lead aVR contains missing (NaN) values (first at 0.198 s)"),
        _csv_case("csv-minus-inf", "NaN / inf / empty cells", _csv(cell=lambda c: "-inf", col=7),
                  "Lead V2 contains infinite values"),
        _csv_case("csv-empty-cell", "NaN / inf / empty cells", _csv(cell=lambda c: "", col=11),
                  "Row 101, column V6: the cell is empty."),
        _csv_case("csv-microvolts-as-millivolts", "wrong units", _csv(sig=microvolts),
                  "The values look like microvolts"),
        _csv_case("csv-duplicate-lead", "duplicate leads", _csv(names=[*LEADS[:11], "v1"]),
                  "Lead V1 appears 2 times (as 'V1' and 'v1')"),
        _csv_case("csv-missing-lead", "missing leads",
                  _csv(names=[n for n in LEADS if n != "V5"], sig=np.delete(_signal(), LEADS.index("V5"), axis=0)),
                  "Lead V5 is missing"),
        _csv_case("csv-rtl-override-lead", "odd unicode in lead names (RTL override)",
                  _csv(names=[*LEADS[:6], "V\u202e1", *LEADS[7:]]),
                  "'V\\u202e1' is not a recognised lead name", forbidden=("\u202e",)),
        _csv_case("csv-homoglyph-leads", "odd unicode in lead names (Cyrillic homoglyphs)",
                  _csv(names=["\u0406", "\u0406\u0406", *LEADS[2:3], "\u0430VR", *LEADS[4:]]),
                  "'\u0406', '\u0406\u0406' and '\u0430VR' are not recognised lead names"),
        _csv_case("csv-emoji-lead", "odd unicode in lead names (emoji)", _csv(names=[*LEADS[:11], "\U0001fac0"]),
                  "'\U0001fac0' is not a recognised lead name"),
        _csv_case("csv-html-lead-name", "HTML in lead names", _csv(names=[*LEADS[:11], HTML_PAYLOAD]),
                  "is not a recognised lead name", forbidden=(HTML_PAYLOAD,)),
        _csv_case("csv-formula-file-name", "formula injection (file name in the audit trail)", b"I,II\n1,2\n",
                  "This is a 2-lead recording (I and II)", file_name="=cmd|' -c calc'!A0.csv"),
        _csv_case("csv-at-formula-file-name", "formula injection (file name in the audit trail)", b"I,II\n1,2\n",
                  "This is a 2-lead recording (I and II)", file_name="@SUM(1+1)*cmd.csv"),
        _csv_case("csv-nul-in-file-name", "NUL byte in a file name", junk, "The .csv file is not a text file",
                  file_name="evil.exe\x00.csv"),
        _csv_case("csv-newline-in-file-name", "newline in a file name", b"1,2,3\n4,5,6\n",
                  "has no header row naming the leads", file_name="ecg\nX-Injected: 1.csv"),
        _csv_case("csv-fs-nan", "absurd sampling rate (form)", _csv(), "Enter the sampling rate as a number of Hz",
                  fs="nan", field="fs", stage="form", direct=False),
        _csv_case("csv-fs-a-billion", "absurd sampling rate (form)", _csv(),
                  "Enter the sampling rate as a number of Hz between 50 and 2000.", fs="1e9", field="fs", stage="form",
                  direct=False),
        _csv_case("csv-html-pseudonym", "HTML / script in the pseudonym", _csv(),
                  "Use 2-64 letters, digits, '.', '_' or '-'", field="pseudonym", form={"pseudonym": HTML_PAYLOAD},
                  forbidden=(HTML_PAYLOAD,)),
        _csv_case("csv-formula-pseudonym", "formula injection in the pseudonym", _csv(),
                  "Use 2-64 letters, digits, '.', '_' or '-'", field="pseudonym",
                  form={"pseudonym": '=HYPERLINK("http://x")'}),
        Case("many-files", "more files than one ECG has", {f"f{i}": (f"part{i}.csv", b"I\n1\n") for i in range(6)},
             "6 files were uploaded", "files", form={"fs": "500"}, stage="form", direct=False),
    ]


def _json_cases() -> list[Case]:
    leads = _good_leads()
    long_leads = {lead: [0] * 200_000 for lead in LEADS}
    return [
        _json_case("json-nested-100k-deep", "deeply nested JSON", b"[" * 100_000 + b"]" * 100_000,
                   "The .json file is nested too deeply"),
        _json_case("json-2.4-million-samples", "JSON with millions of array elements within 32 MB",
                   _json(leads=long_leads), "The recording is 400.0 s long; at most 300 s is accepted."),
        _json_case("json-100k-leads", "JSON with 100,000 leads", _json(leads={f"L{i}": [] for i in range(100_000)}),
                   '"leads" has 100,000 entries'),
        _json_case("json-minus-infinity", "NaN / inf in JSON",
                   _json(leads=leads | {"V4": leads["V4"][:10] + [float("-inf")] + leads["V4"][11:]}),
                   "Lead V4 contains infinite values"),
        _json_case("json-nan", "NaN / inf in JSON",
                   _json(leads=leads | {"II": [float("nan")] + leads["II"][1:]}), "Lead II contains missing (NaN)"),
        _json_case("json-null-sample", "empty cells in JSON", _json(leads=leads | {"aVL": leads["aVL"][:5] + [None]}),
                   "Lead aVL, sample 6: null is not a number."),
        _json_case("json-fs-400-digits", "absurd sampling rate (JSON)", _json().replace(b'"fs":500', b'"fs":1'
                   + b"0" * 400), 'The JSON "fs" (sampling rate) must be between 50 and 2000 Hz; got inf Hz.'),
        _json_case("json-sample-400-digits", "absurd numbers in JSON", _json().replace(b"[", b"[1" + b"0" * 400 + b", ",
                                                                                         1),
                   "a 401-digit number is far too large to be millivolts"),
        _json_case("json-sample-5000-digits", "absurd numbers in JSON", _json().replace(b"[", b"[1" + b"0" * 5000
                                                                                           + b", ", 1),
                   "The .json file cannot be read: it has a number thousands of digits long"),
        _json_case("json-lone-surrogate-lead", "odd unicode in lead names (lone surrogate)",
                   _json().replace(b'"I":', b'"\\ud800":', 1), "'\\ud800' is not a recognised lead name"),
        _json_case("json-units-4mb-string", "extremely long strings", _json(units="u" * 4_000_000),
                   '"units" must be "mV" or "uV"; got "uuuuuuuuuu'),
        _json_case("json-microvolts-as-millivolts", "wrong units",
                   _json(leads={k: [round(v * 1000, 1) for v in vs] for k, vs in leads.items()}),
                   "The values look like microvolts"),
        _json_case("json-binary-junk", "binary junk with a .json name", bytes(range(128, 256)) * 100,
                   "The .json file is not UTF-8 text"),
        _json_case("json-rtl-override-file-name", "odd unicode in file names (RTL override)", b"{not json",
                   "The .json file is not valid JSON", file_name="ecg\u202enosj.json"),
        _json_case("json-emoji-file-name", "odd unicode in file names (emoji)",
                   _json(fs=None).replace(b'"fs":null,', b""),
                   'The JSON document has no "fs"', file_name="\u2764\ufe0f\U0001fac0.json"),
    ]


def _export(name: str, covers: str, content: bytes, expect: str, **kwargs) -> Case:
    """A single export file, named ecg.<the case name's first word> (xml, dcm, edf, scp)."""
    return Case(name, covers, {"file": (f"ecg.{name.split('-')[0]}", content)}, expect, "file", **kwargs)


def _edf_records(content: bytes, records: str) -> bytes:
    return content[:236] + records.encode().ljust(8) + content[244:]


def _edf_samples_per_record(content: bytes, samples: str) -> bytes:
    ns = int(content[252:256])
    out = bytearray(content)
    for i in range(ns):  # the field for signal i lies at 256 + 216 * ns + 8 * i (EDF specification)
        out[256 + 216 * ns + 8 * i:256 + 216 * ns + 8 * (i + 1)] = samples.encode().ljust(8)
    return bytes(out)


def _scp_section_beyond_file() -> bytes:
    record = bytearray(fx.scp_bytes())
    (length0,) = struct.unpack_from("<I", record, 10)
    for at in range(22, 6 + length0 - 9, 10):
        if struct.unpack_from("<H", record, at)[0] == 6:  # section 6 (the rhythm data) said to be 1 GB long
            struct.pack_into("<I", record, at + 2, 2**30)
    # Fresh section 0 and record CRCs, so that only the length lies.
    struct.pack_into("<H", record, 6, fx.scp_ecg.crc_ccitt(bytes(record[8:6 + length0])))
    struct.pack_into("<H", record, 0, fx.scp_ecg.crc_ccitt(bytes(record[2:])))
    return bytes(record)


def _muse_lead_of(samples: int) -> bytes:
    """A MUSE file whose lead I holds ``samples`` samples (and says so) while the other leads hold 10 s."""
    return fx.muse_xml(lengths={"I": samples})


_OVER_MB = f"{(MAX_UPLOAD_BYTES + 1) / 2**20:.1f}"  # how the message writes a file one byte over the limit


def _just_over_the_limit(content: bytes, pad: bytes) -> bytes:
    return content + pad * ((MAX_UPLOAD_BYTES + 1 - len(content)) // len(pad) + 1)


LAUGHS = "".join(f'<!ENTITY lol{k} "{f"&lol{k - 1};" * 10}">' for k in range(1, 10))


def _export_cases() -> list[Case]:
    """The device exports (GE MUSE, Philips and HL7 aECG XML, DICOM, EDF, SCP-ECG) of issue 13."""
    dicom_over = fx.dicom_dataset()
    dicom_over.WaveformSequence[0].NumberOfWaveformSamples = 2**31 - 1
    dicom_channels = fx.dicom_dataset()
    dicom_channels.WaveformSequence[0].NumberOfWaveformChannels = 65535
    return [
        _export("xml-billion-laughs", "XML billion laughs", (
            f'<?xml version="1.0"?><!DOCTYPE RestingECG [<!ENTITY lol0 "lol">{LAUGHS}]><RestingECG>&lol9;'
            "</RestingECG>").encode(), "declares entities"),
        _export("xml-external-entity", "XML external entity (XXE)",
                b'<?xml version="1.0"?><!DOCTYPE RestingECG [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                b"<RestingECG>&x;</RestingECG>", "refused unread", forbidden=("root:",)),
        _export("xml-external-parameter-entity", "XML external entity (XXE, parameter entity)",
                b'<?xml version="1.0"?><!DOCTYPE RestingECG [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]>'
                b"<RestingECG/>", "refused unread"),
        _export("xml-external-dtd", "XML external DTD (not fetched)",
                b'<?xml version="1.0"?><!DOCTYPE RestingECG SYSTEM "http://127.0.0.1:9/x.dtd"><RestingECG/>',
                "This GE MUSE file has no rhythm waveform"),
        _export("xml-nested-100k-deep", "XML 100k-deep nesting",
                b"<RestingECG>" + b"<a>" * 100_000 + b"</a>" * 100_000 + b"</RestingECG>",
                "This GE MUSE file has no rhythm waveform"),
        _export("xml-utf32", "UTF-32 XML", fx.muse_xml().decode("iso-8859-1").encode("utf-32"), "is UTF-32 text"),
        _export("xml-muse-claims-5-million-samples", "GE MUSE lead claiming millions of samples",
                fx.muse_xml(sample_count=5_000_000), "holds 5,000 samples but the file states 5,000,000"),
        _export("xml-muse-lead-of-1.5-million-samples", "GE MUSE lead holding millions of samples",
                _muse_lead_of(1_500_000), "Leads I and II have different lengths (1,500,000 and 5,000 samples)"),
        _export("dcm-claims-2-billion-samples", "DICOM claiming huge NumberOfWaveformSamples",
                fx.dicom_bytes(dicom_over), "The DICOM waveform data are cut short"),
        _export("dcm-claims-65535-channels", "DICOM claiming huge NumberOfWaveformChannels",
                fx.dicom_bytes(dicom_channels), "has 65535 channels but defines 12"),
        _export("edf-claims-99999999-records", "EDF header lying about the number of records",
                _edf_records(fx.edf_ecg(), "99999999"), "announces 99999999 data records but it holds 10"),
        _export("edf-claims-99999999-samples-per-record", "EDF header lying about samples per record",
                _edf_samples_per_record(fx.edf_ecg(), "99999999"), "announces 10 data records but it holds 0"),
        _export("scp-section-beyond-file", "SCP-ECG section length beyond the file", _scp_section_beyond_file(),
                "Section 6 of the SCP-ECG record is said to lie at bytes"),
        _export("scp-record-claims-4-gb", "SCP-ECG record length beyond the file",
                fx.scp_bytes()[:2] + struct.pack("<I", 4_000_000_000) + fx.scp_bytes()[6:],
                "says it is 4,000,000,000 bytes long"),
        _export("xml-over-limit", "each type just over the size limit", _just_over_the_limit(fx.aecg_xml(), b" "),
                f"The .xml file is {_OVER_MB} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB per file.", stage="form"),
        _export("dcm-over-limit", "each type just over the size limit", _just_over_the_limit(fx.dicom_bytes(), b"\0"),
                f"The .dcm file is {_OVER_MB} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB per file.", stage="form"),
        _export("edf-over-limit", "each type just over the size limit", _just_over_the_limit(fx.edf_ecg(), b"\0"),
                f"The .edf file is {_OVER_MB} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB per file.", stage="form"),
        _export("scp-over-limit", "each type just over the size limit", _just_over_the_limit(fx.scp_bytes(), b"\0"),
                f"The .scp file is {_OVER_MB} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB per file.", stage="form"),
        _json_case("json-over-limit", "each type just over the size limit",
                   _just_over_the_limit(demo.as_json(_signal(), FS), b" "),
                   f"The .json file is {_OVER_MB} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB per file.",
                   stage="form"),
        _export("dcm-that-is-xml", "wrong extension for the content (.dcm holding XML)", fx.muse_xml(),
                "The .dcm file is not a DICOM file"),
        _export("xml-that-is-dicom", "wrong extension for the content (.xml holding DICOM)", fx.dicom_bytes(),
                "The file is not well-formed XML"),
        _export("edf-that-is-scp", "wrong extension for the content (.edf holding SCP-ECG)", fx.scp_bytes(),
                "The .edf file is not a readable EDF file"),
        _export("scp-that-is-edf", "wrong extension for the content (.scp holding EDF)", fx.edf_ecg(),
                "The .scp file is not an SCP-ECG record"),
    ]


def _other_cases() -> list[Case]:
    return [
        Case("absolute-path-no-extension", "path traversal (absolute path)", {"": ("/etc/passwd", b"root:x:0:0")},
             "Files of type (no extension) are not accepted", "file"),
        Case("windows-path-exe", "path traversal (Windows path)",
             {"exe": ("C:\\Windows\\System32\\calc.exe", b"MZ\x90\x00")}, "Files of type .exe are not accepted",
             "file"),
    ]


@cache
def build() -> tuple[Case, ...]:
    cases = (*_wfdb_cases(), *_csv_cases(), *_json_cases(), *_export_cases(), *_other_cases())
    names = [c.name for c in cases]
    assert len(set(names)) == len(names), "case names must be unique"
    return cases
