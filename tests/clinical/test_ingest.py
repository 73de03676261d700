"""Intake of uploaded ECGs: what a clinician uploading a WFDB pair, a CSV or a JSON file gets back."""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import wfdb

from clinical.intake import MAX_UPLOAD_BYTES, IntakeError, ParsedEcg, parse_upload
from clinical.intake.json_doc import parse_json
from clinical.intake.text_table import parse_csv
from clinical.intake.wfdb_record import parse_wfdb
from mlcore.preprocess import LEADS
from tests.conftest import synthetic_ecg

# The header of a shuffled record spells two leads the way PTB-XL and some carts do.
SHUFFLED = (5, 3, 0, 11, 4, 1, 7, 2, 9, 6, 10, 8)
SPELLING = {"aVR": "AVR", "aVL": "avl"}


def ecg(fs: float = 100, seconds: float = 10, seed: int = 0) -> np.ndarray:
    return synthetic_ecg(np.random.default_rng(seed), fs=fs, seconds=seconds)  # (12, n) mV


def write_wfdb(
    tmp: Path,
    signal: np.ndarray,
    fs: float,
    names: Sequence[str] = LEADS,
    *,
    record: str = "rec",
    units: str = "mV",
    fmt: str = "16",
) -> tuple[bytes, bytes]:
    """Write a record with wfdb itself and return the (.hea, .dat) bytes a browser would upload."""
    wfdb.wrsamp(record, fs=fs, units=[units] * len(names), sig_name=list(names), p_signal=np.asarray(signal).T,
                fmt=[fmt] * len(names), write_dir=str(tmp))
    return (tmp / f"{record}.hea").read_bytes(), (tmp / f"{record}.dat").read_bytes()


def csv_rows(signal: np.ndarray, names: Sequence[str] = LEADS) -> list[list[str]]:
    """Header row then one row per sample, values in mV with 6 decimals."""
    return [list(names)] + [[f"{v:.6f}" for v in column] for column in np.asarray(signal).T]


def to_csv(rows: list[list[str]], delimiter: str = ",") -> bytes:
    return ("\n".join(delimiter.join(r) for r in rows) + "\n").encode()


def to_json(signal: np.ndarray, names: Sequence[str] = LEADS, **top: object) -> bytes:
    doc: dict[str, object] = {"fs": 100, **top}
    doc["leads"] = {name: np.asarray(row).tolist() for name, row in zip(names, signal)}
    return json.dumps(doc).encode()


def assert_canonical(parsed: ParsedEcg, expected: np.ndarray, fs: float, source: str, atol: float) -> None:
    assert parsed.source_format == source
    assert parsed.fs == fs
    assert parsed.signal.dtype == np.float32 and parsed.signal.flags.c_contiguous
    assert parsed.signal.shape == expected.shape
    assert parsed.n_samples == expected.shape[1]
    assert parsed.duration_s == pytest.approx(expected.shape[1] / fs)
    np.testing.assert_allclose(parsed.signal, expected, atol=atol, rtol=0)


# --------------------------------------------------------------------------------------------------------------
# Happy paths


@pytest.mark.parametrize("fs", [100, 250, 500, 1000])
def test_wfdb_record_with_shuffled_leads_comes_back_in_standard_order(tmp_path: Path, fs: int) -> None:
    sig = ecg(fs=fs, seed=fs)
    names = [SPELLING.get(LEADS[i], LEADS[i]) for i in SHUFFLED]
    hea, dat = write_wfdb(tmp_path, sig[list(SHUFFLED)], fs, names)
    assert b"AVR" in hea and b"avl" in hea

    parsed = parse_wfdb(hea, dat, hea_name="rec.hea", dat_name="rec.dat")

    assert_canonical(parsed, sig, fs, "wfdb", atol=1e-3)  # within 1 µV


def test_wfdb_in_microvolts_is_converted_to_millivolts(tmp_path: Path) -> None:
    sig = ecg(fs=500)
    hea, dat = write_wfdb(tmp_path, sig * 1000, 500, units="uV")
    assert b"/uV" in hea

    parsed = parse_wfdb(hea, dat, hea_name="rec.hea", dat_name="rec.dat")

    assert_canonical(parsed, sig, 500, "wfdb", atol=1e-3)


def test_wfdb_format_212_is_read(tmp_path: Path) -> None:
    sig = ecg(fs=250)
    hea, dat = write_wfdb(tmp_path, sig, 250, fmt="212")
    parsed = parse_wfdb(hea, dat, hea_name="rec.hea", dat_name="rec.dat")
    # 12-bit storage: about 1/2000 of the lead's range per step.
    assert_canonical(parsed, sig, 250, "wfdb", atol=2e-3)


def test_csv_with_aliases_time_column_and_semicolons(tmp_path: Path) -> None:
    sig = ecg(fs=250)
    aliases = ["Lead I", "lead ii", "DIII", "AVR", "avl", "AVF", "v1", "v2", "V3", "v4", "V5", "v6"]
    order = list(SHUFFLED)
    rows = csv_rows(sig[order], [aliases[i] for i in order])
    rows = [["time"] + rows[0]] + [[f"{k / 250:.3f}"] + r for k, r in enumerate(rows[1:])]

    parsed = parse_csv(to_csv(rows, ";"), fs=250)

    assert_canonical(parsed, sig, 250, "csv", atol=1e-5)


def test_csv_with_semicolons_accepts_decimal_commas() -> None:
    sig = ecg()
    rows = [r if k == 0 else [c.replace(".", ",") for c in r] for k, r in enumerate(csv_rows(sig))]
    parsed = parse_csv(to_csv(rows, ";"), fs=100)
    assert_canonical(parsed, sig, 100, "csv", atol=1e-5)


def test_json_in_millivolts() -> None:
    sig = ecg(fs=500)
    parsed = parse_json(to_json(sig, fs=500, units="mV"))
    assert_canonical(parsed, sig, 500, "json", atol=1e-5)


def test_json_in_microvolts_with_units_defaulting_to_mv_otherwise() -> None:
    sig = ecg(fs=500)
    parsed = parse_json(to_json(sig * 1000, [n.upper() for n in LEADS], fs=500, units="uV"))
    assert_canonical(parsed, sig, 500, "json", atol=1e-5)
    assert_canonical(parse_json(to_json(sig, fs=500)), sig, 500, "json", atol=1e-5)


def test_upload_dispatches_on_file_extension(tmp_path: Path) -> None:
    sig = ecg()
    hea, dat = write_wfdb(tmp_path, sig, 100)
    wfdb_files = {"hea": ("rec.hea", hea), "dat": ("rec.dat", dat)}
    assert parse_upload(files=wfdb_files, fs=None).source_format == "wfdb"
    assert parse_upload(files={"file": ("ecg.CSV", to_csv(csv_rows(sig)))}, fs=100).source_format == "csv"
    parsed = parse_upload(files={"file": ("ecg.json", to_json(sig, fs=100))}, fs=None)
    assert parsed.source_format == "json"
    np.testing.assert_allclose(parsed.signal, sig, atol=1e-5)


# --------------------------------------------------------------------------------------------------------------
# Refused uploads: each case is (what the user uploads, the form field blamed, a fragment of the message).


def _wfdb(tmp: Path, signal: np.ndarray | None = None) -> tuple[bytes, bytes]:
    return write_wfdb(tmp, ecg() if signal is None else signal, 100)


def _csv(tamper: Callable[[list[list[str]]], object] | None = None, fs: float = 100, seconds: float = 10,
         names: Sequence[str] = LEADS) -> bytes:
    sig = ecg(fs=fs, seconds=seconds)
    if len(names) != len(LEADS):
        sig = np.vstack([sig, sig])[: len(names)]
    rows = csv_rows(sig, names)
    if tamper is not None:
        tamper(rows)
    return to_csv(rows)


def _set(row: int, col: int, value: str) -> Callable[[list[list[str]]], None]:
    def tamper(rows: list[list[str]]) -> None:
        rows[row - 1][col] = value  # row counts the header as 1, as the error message does

    return tamper


def _nan_lead(tmp: Path) -> None:
    sig = ecg()
    sig[LEADS.index("V5"), 300:310] = np.nan
    hea, dat = _wfdb(tmp, sig)
    parse_wfdb(hea, dat, hea_name="rec.hea", dat_name="rec.dat")


def _json_doc(*, drop: str | None = None, **changes: object) -> bytes:
    doc = json.loads(to_json(ecg()))
    doc.update(changes)
    doc.pop(drop, None)
    return json.dumps(doc).encode()


def _json_leads(mutate: Callable[[dict[str, list]], None]) -> bytes:
    doc = json.loads(to_json(ecg()))
    mutate(doc["leads"])
    return json.dumps(doc).encode()


def _wfdb_pair(
    tmp: Path,
    *,
    hea: bytes | None = None,
    dat: bytes | None = None,
    dat_name: str = "rec.dat",
    fs: float = 100,
    names: Sequence[str] = LEADS,
    units: str = "mV",
) -> None:
    """Upload a WFDB pair written by wfdb, with either file or the .dat name replaced."""
    written_hea, written_dat = write_wfdb(tmp, ecg(fs=fs)[: len(names)], fs, names, units=units)
    parse_wfdb(hea or written_hea, written_dat if dat is None else dat, hea_name="rec.hea", dat_name=dat_name)


BAD = [
    # Leads, in every format.
    pytest.param(lambda tmp: parse_csv(_csv(names=[*LEADS[:9], "V3b", *LEADS[10:]]), fs=100), "csv",
                 "'V3b' is not a recognised lead name", id="csv-unknown-lead"),
    pytest.param(lambda tmp: parse_csv(_csv(names=[*LEADS[:9], *LEADS[10:]]), fs=100), "csv",
                 "Lead V4 is missing from the .csv file; a 12-lead ECG needs all six chest leads (V1–V6), which "
                 "cannot be derived from the other leads.", id="csv-missing-lead"),
    pytest.param(lambda tmp: parse_csv(_csv(names=[*LEADS, "V7"]), fs=100), "csv",
                 "Lead V7 is not part of the standard 12-lead ECG", id="csv-extra-lead"),
    pytest.param(lambda tmp: parse_csv(_csv(names=[*LEADS, "Lead II"]), fs=100), "csv",
                 "Lead II appears 2 times", id="csv-duplicate-lead"),
    pytest.param(lambda tmp: parse_json(_json_leads(lambda leads: leads.pop("V2"))), "json",
                 "Lead V2 is missing from the .json file", id="json-missing-lead"),
    pytest.param(lambda tmp: parse_json(_json_leads(lambda leads: leads.update(X=leads["I"]))), "json",
                 "Lead X is not part of the standard 12-lead ECG", id="json-extra-lead"),
    pytest.param(lambda tmp: parse_json(_json_leads(lambda leads: leads.update(AVR=leads["aVR"]))), "json",
                 "Lead aVR appears 2 times", id="json-duplicate-lead"),
    pytest.param(lambda tmp: _wfdb_pair(tmp, names=[*LEADS[:9], "ABP", *LEADS[10:]]), "hea",
                 "Lead V4 is missing from the header rec.hea ('ABP' is not a recognised lead name)",
                 id="wfdb-unknown-lead"),
    pytest.param(lambda tmp: _wfdb_pair(tmp, names=LEADS[:11]), "hea", "Lead V6 is missing", id="wfdb-missing-lead"),
    # Values.
    pytest.param(lambda tmp: parse_json(_json_leads(lambda leads: leads["V2"].pop())), "json",
                 "V2 has 999", id="json-different-lengths"),
    pytest.param(lambda tmp: parse_csv(_csv(_set(17, 7, "abc")), fs=100), "csv",
                 "Row 17, column V2: 'abc' is not a number.", id="csv-non-numeric-cell"),
    pytest.param(lambda tmp: parse_csv(_csv(_set(40, 3, "")), fs=100), "csv",
                 "Row 40, column aVR: the cell is empty.", id="csv-empty-cell"),
    pytest.param(lambda tmp: parse_csv(_csv(_set(30, 8, "nan")), fs=100), "csv",
                 "Lead V3 contains missing (NaN) values (first at 0.280 s)", id="csv-nan"),
    pytest.param(lambda tmp: parse_csv(_csv(_set(30, 9, "-inf")), fs=100), "csv",
                 "Lead V4 contains infinite values", id="csv-inf"),
    pytest.param(lambda tmp: parse_csv(_csv(lambda rows: rows[22].pop()), fs=100), "csv",
                 "Row 23 has 11 values but the header row names 12 columns", id="csv-ragged-row"),
    pytest.param(lambda tmp: parse_json(_json_leads(lambda leads: leads["II"].__setitem__(4, None))), "json",
                 "Lead II, sample 5: null is not a number.", id="json-null-value"),
    pytest.param(lambda tmp: parse_json(_json_leads(lambda leads: leads["III"].__setitem__(0, float("nan")))),
                 "json", "Lead III contains missing (NaN) values", id="json-nan"),
    pytest.param(_nan_lead, "dat", "Lead V5 contains missing (NaN) values (first at 3.000 s)", id="wfdb-nan"),
    # Duration and sampling rate.
    pytest.param(lambda tmp: parse_csv(_csv(seconds=5), fs=100), "csv",
                 "The recording is 5.0 s long (500 samples at 100 Hz); at least 8 s is needed.", id="csv-too-short"),
    pytest.param(lambda tmp: parse_csv(_csv(seconds=301), fs=100), "csv",
                 "The recording is 301.0 s long; at most 300 s is accepted.", id="csv-too-long"),
    pytest.param(lambda tmp: parse_csv(_csv(), fs=20), "fs",
                 "The sampling rate must be between 50 and 2000 Hz; got 20 Hz.", id="csv-fs-out-of-range"),
    pytest.param(lambda tmp: parse_upload(files={"file": ("ecg.csv", _csv())}, fs=None), "fs",
                 "Enter the sampling rate in Hz; this .csv file does not state it", id="csv-without-fs"),
    pytest.param(lambda tmp: _wfdb_pair(tmp, fs=99), "hea",
                 "sampling rate is 99 Hz; WFDB uploads must be sampled at 100 to 2000 Hz", id="wfdb-99-hz"),
    pytest.param(lambda tmp: parse_json(_json_doc(fs=5000)), "json",
                 'The JSON "fs" (sampling rate) must be between 50 and 2000 Hz; got 5000 Hz.',
                 id="json-fs-out-of-range"),
    pytest.param(lambda tmp: parse_json(_json_doc(fs="500")), "json",
                 'The JSON "fs" (sampling rate) must be a number of Hz; got "500".', id="json-fs-not-a-number"),
    # Files.
    pytest.param(lambda tmp: parse_csv(b"", fs=100), "csv", "The .csv file is empty (0 bytes).", id="csv-empty-file"),
    pytest.param(lambda tmp: parse_csv(b"I" * (MAX_UPLOAD_BYTES + 1), fs=100), "csv",
                 "The .csv file is 32.0 MB; the limit is 32 MB per file.", id="csv-oversize"),
    pytest.param(lambda tmp: _wfdb_pair(tmp, dat=b"\0" * (MAX_UPLOAD_BYTES + 1)), "dat",
                 "The .dat file is 32.0 MB; the limit is 32 MB per file.", id="wfdb-oversize-dat"),
    pytest.param(lambda tmp: _wfdb_pair(tmp, dat=b""), "dat", "The .dat file is empty (0 bytes).", id="wfdb-empty-dat"),
    pytest.param(lambda tmp: parse_csv(_csv(lambda rows: rows.__setitem__(0, rows[1][:8])), fs=100), "csv",
                 "The .csv file has no header row naming the leads, and its rows have 8 values",
                 id="csv-no-header-row"),
    pytest.param(lambda tmp: parse_json(b'{"fs": 100, "leads": {"I": [1, 2,]}}'), "json",
                 "The .json file is not valid JSON (line 1, column", id="json-invalid"),
    pytest.param(lambda tmp: parse_json(_json_doc(drop="fs")), "json",
                 'The JSON document has no "fs" (sampling rate in Hz)', id="json-missing-fs"),
    pytest.param(lambda tmp: parse_json(_json_doc(leads=[[0.1] * 1000] * 12)), "json",
                 '"leads" must be an object mapping lead names to lists of numbers', id="json-leads-not-a-dict"),
    pytest.param(lambda tmp: parse_json(_json_doc(units="mmHg")), "json",
                 '"units" must be "mV" or "uV"; got "mmHg".', id="json-bad-units"),
    pytest.param(lambda tmp: _wfdb_pair(tmp, dat_name="other.dat"), "dat",
                 "The header rec.hea belongs to the signal file 'rec.dat', but the uploaded signal file is "
                 "'other.dat'.",
                 id="wfdb-mismatched-pair"),
    pytest.param(lambda tmp: _wfdb_pair(tmp, dat=(_wfdb(tmp)[1])[:-500]), "dat",
                 "The .dat file is 23500 bytes but the header describes 24000 bytes (12 leads × 1000 samples in "
                 "format 16)", id="wfdb-truncated-dat"),
    pytest.param(lambda tmp: _wfdb_pair(tmp, hea=b"this is not a header\nat all\n"), "hea",
                 "The header rec.hea is not a valid WFDB header", id="wfdb-garbage-header"),
    pytest.param(lambda tmp: _wfdb_pair(tmp, hea=_wfdb(tmp)[1]), "hea",
                 "is not a text file; were the .hea and .dat files swapped?", id="wfdb-binary-header"),
    pytest.param(lambda tmp: _wfdb_pair(tmp, units="mmHg"), "hea",
                 "Lead I is recorded in 'mmHg'; only mV or uV are accepted.", id="wfdb-bad-units"),
    pytest.param(lambda tmp: parse_upload(files={"file": ("ecg.rtf", b"I,II\n")}, fs=100), "file",
                 "Files of type .rtf are not accepted. Upload either a WFDB record", id="upload-rtf"),
    pytest.param(lambda tmp: parse_upload(files={"file": ("ecg.xml", b"<AnnotatedECG/>")}, fs=None), "file",
                 "This HL7 aECG file has no rhythm waveform", id="upload-xml"),
    pytest.param(lambda tmp: parse_upload(files={"hea": ("rec.hea", _wfdb(tmp)[0])}, fs=None), "dat",
                 "A WFDB header (.hea) was uploaded without its signal file; upload the .dat file too.",
                 id="upload-only-hea"),
    pytest.param(lambda tmp: parse_upload(files={"dat": ("rec.dat", _wfdb(tmp)[1])}, fs=None), "hea",
                 "A WFDB signal file (.dat) was uploaded without its header; upload the .hea file too.",
                 id="upload-only-dat"),
    pytest.param(lambda tmp: parse_upload(files={"a": ("a.csv", _csv()), "b": ("b.json", _json_doc())}, fs=100),
                 "file", "Upload one ECG at a time: either a WFDB record", id="upload-csv-and-json"),
    pytest.param(lambda tmp: parse_upload(files={}, fs=None), "file", "No file was uploaded.", id="upload-nothing"),
]


@pytest.mark.parametrize(("upload", "field", "fragment"), BAD)
def test_bad_upload_is_refused_with_a_specific_message(
    upload: Callable[[Path], object], field: str, fragment: str, tmp_path: Path
) -> None:
    with pytest.raises(IntakeError) as caught:
        upload(tmp_path)
    assert fragment in caught.value.message
    assert caught.value.field == field
    assert str(caught.value) == caught.value.message
