"""Property-based fuzzing of the intake parsers: whatever the bytes, the answer is a clean 12-lead ECG or an
IntakeError with a short message, never another exception, a numpy warning or a long stall.

A few hundred examples per property keep this file to seconds in CI; for a longer hunt run it with
ECG_FUZZ_EXAMPLES=20000 (and --hypothesis-show-statistics to see which checks the examples reached).
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import wfdb
from hypothesis import HealthCheck, assume, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from clinical.intake import MAX_FS, MAX_SECONDS, MIN_FS, MIN_SECONDS, IntakeError, ParsedEcg, parse_upload
from clinical.intake.json_doc import parse_json
from clinical.intake.limits import WFDB_RATES
from clinical.intake.text_table import parse_csv
from clinical.intake.wfdb_record import parse_wfdb
from mlcore.preprocess import LEADS
from tests.conftest import synthetic_ecg

FUZZ = settings(max_examples=int(os.environ.get("ECG_FUZZ_EXAMPLES", 200)), deadline=3000, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FIELDS = {"hea", "dat", "csv", "json", "file", "fs"}

# Well-formed inputs to mutate: 10 s at 100 Hz, so every example stays small.
SIGNAL = synthetic_ecg(np.random.default_rng(3), fs=100, seconds=10)  # (12, 1000) mV
with tempfile.TemporaryDirectory() as _tmp:
    wfdb.wrsamp("rec", fs=100, units=["mV"] * 12, sig_name=list(LEADS), p_signal=SIGNAL.T, fmt=["16"] * 12,
                write_dir=_tmp)
    HEA, DAT = (Path(_tmp) / "rec.hea").read_bytes(), (Path(_tmp) / "rec.dat").read_bytes()
CSV_LINES = [",".join(LEADS)] + [",".join(f"{v:.4f}" for v in row) for row in SIGNAL.T]
JSON_DOC = {"fs": 100, "units": "mV", "leads": {lead: np.round(SIGNAL[i], 4).tolist() for i, lead in enumerate(LEADS)}}

NASTY_TEXT = ["", " ", "nan", "NaN", "inf", "-inf", "Infinity", "1e308", "-1e308", "1e999", "1" + "0" * 400, "0x10",
              "1,5", "abc", "\u202e", "\u0406", "\ud83d", "\x00", "\x85", '"', "'", "=1+1", "<b>", "V1", "I", "#",
              "time", "-", "/", "..", "../x", "16x4", "16+99999999999", "0(0)/mV", "-500", "0", "13", "1000000000000"]
nasty = st.sampled_from(NASTY_TEXT) | st.text(max_size=20)


def check(parse, *args, **kwargs) -> ParsedEcg | None:
    """Run a parser with every warning an error; an accepted result must be a sane ECG."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            parsed = parse(*args, **kwargs)
        except IntakeError as exc:
            assert exc.field in FIELDS and exc.message and len(exc.message) < 700, exc.message
            exc.message.encode("utf-8")  # no lone surrogate: it is stored in the audit trail and rendered
            if currently_in_test_context():  # --hypothesis-show-statistics tells what the examples reached
                event(f"refused ({exc.field}): {' '.join(exc.message.split()[:4])}")
            return None
    assert isinstance(parsed, ParsedEcg)
    assert parsed.signal.dtype == np.float32 and parsed.signal.ndim == 2 and parsed.signal.shape[0] == 12
    assert np.isfinite(parsed.signal).all()
    assert MIN_FS <= parsed.fs <= MAX_FS and np.isfinite(parsed.fs)
    assert MIN_SECONDS <= parsed.duration_s <= MAX_SECONDS
    if parsed.source_format == "wfdb":
        assert parsed.fs in WFDB_RATES
    if currently_in_test_context():
        event("accepted")
    return parsed


def test_the_unmutated_inputs_are_accepted():
    assert check(parse_wfdb, HEA, DAT, hea_name="rec.hea", dat_name="rec.dat") is not None
    assert check(parse_csv, ("\n".join(CSV_LINES) + "\n").encode(), fs=100) is not None
    assert check(parse_json, json.dumps(JSON_DOC).encode()) is not None


# ---------------------------------------------------------------------------------------------------------------
# Arbitrary bytes


@FUZZ
@given(data=st.binary(max_size=4096), fs=st.sampled_from([100.0, 500.0]) | st.none() | st.floats() | st.integers())
def test_csv_from_arbitrary_bytes(data, fs):
    check(parse_csv, data, fs=fs)


@FUZZ
@given(data=st.binary(max_size=4096))
def test_json_from_arbitrary_bytes(data):
    check(parse_json, data)


@FUZZ
@given(hea=st.binary(max_size=2048), dat=st.binary(max_size=2048))
def test_wfdb_from_arbitrary_bytes(hea, dat):
    check(parse_wfdb, hea, dat, hea_name="rec.hea", dat_name="rec.dat")


@FUZZ
@given(files=st.dictionaries(st.text(max_size=8), st.tuples(nasty | st.sampled_from(
    ["a.csv", "a.json", "rec.hea", "rec.dat", "a.CSV", "x", "../../a.hea", "C:\\a\\rec.dat"]), st.binary(max_size=512)),
    max_size=3), fs=st.none() | st.floats(min_value=0, max_value=5000))
def test_upload_dispatch_from_arbitrary_files(files, fs):
    check(parse_upload, files=files, fs=fs)


# ---------------------------------------------------------------------------------------------------------------
# Structured inputs: a good record with one or two of its parts broken (or none, so the accepted path is fuzzed too)

mutation = st.tuples(st.integers(0, 10**6), nasty)


@FUZZ
@given(mutations=st.lists(st.tuples(st.sampled_from(["record", "signal", "cut", "extend", "flip"]), mutation),
                          max_size=2))
def test_wfdb_with_mutated_header_and_signal_file(mutations):
    lines = [line.split(" ") for line in HEA.decode().splitlines()]
    dat = bytearray(DAT)
    for kind, (where, text) in mutations:
        if kind == "record":
            lines[0][where % len(lines[0])] = text
        elif kind == "signal":
            parts = lines[1 + where % 12]
            parts[(where // 12) % len(parts)] = text
        elif kind == "cut":
            del dat[where % (len(dat) + 1):]
        elif kind == "extend":
            dat += text.encode("utf-8", "surrogatepass")
        elif dat:
            dat[where % len(dat)] ^= 0xFF
    hea = "\n".join(" ".join(p) for p in lines).encode("utf-8", "surrogatepass") + b"\n"
    check(parse_wfdb, hea, bytes(dat), hea_name="rec.hea", dat_name="rec.dat")


@FUZZ
@given(mutations=st.lists(st.tuples(st.sampled_from(["cell", "header", "drop", "keep", "delimiter", "blank"]),
                                    mutation), max_size=2),
       fs=st.sampled_from([100, 100.0, 50, 2000, 99.5]))
def test_csv_with_mutated_cells(mutations, fs):
    rows = [line.split(",") for line in CSV_LINES]
    delimiter = ","
    for kind, (where, text) in mutations:
        if kind == "cell":
            row = rows[1 + where % (len(rows) - 1) if len(rows) > 1 else 0]
            row[where % len(row)] = text
        elif kind == "header":
            rows[0][where % len(rows[0])] = text
        elif kind == "drop" and len(rows) > 1:
            del rows[1 + where % (len(rows) - 1)]
        elif kind == "keep":
            del rows[1 + where % len(rows):]
        elif kind == "delimiter":
            delimiter = ";" if where % 2 else "\t"
        elif kind == "blank":
            rows.insert(where % (len(rows) + 1), [""])
    text = "\n".join(delimiter.join(r) for r in rows) + "\n"
    check(parse_csv, text.encode("utf-8", "surrogatepass"), fs=fs)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                                        max_size=4), max_leaves=12)
json_numbers = st.sampled_from([float("nan"), float("inf"), -float("inf"), 10**400, 1e308, 0, -1, 1e38, True])


@FUZZ
@given(mutations=st.lists(st.tuples(st.sampled_from(["fs", "units", "sample", "rename", "trim", "leads", "drop"]),
                                    st.integers(0, 10**6), json_values | json_numbers | nasty), max_size=2))
def test_json_with_mutated_document(mutations):
    doc = json.loads(json.dumps(JSON_DOC))
    for kind, where, value in mutations:
        leads = doc.get("leads")
        lead = LEADS[where % 12]
        if kind in ("fs", "units"):
            doc[kind] = value
        elif kind == "drop":
            doc.pop(["fs", "units", "leads"][where % 3], None)
        elif kind == "leads":
            doc["leads"] = value
        elif not isinstance(leads, dict) or not isinstance(leads.get(lead), list):
            continue
        elif kind == "sample" and leads[lead]:
            leads[lead][where % len(leads[lead])] = value
        elif kind == "rename":
            leads[str(value)] = leads.pop(lead)
        elif kind == "trim":
            del leads[lead][where % 1001:]
    try:
        data = json.dumps(doc).encode("utf-8", "surrogatepass")
    except (ValueError, TypeError):  # keys json cannot write, for instance
        assume(False)
    check(parse_json, data)


@pytest.mark.parametrize("depth", [10, 1000, 100_000])
def test_deep_json_nesting_is_refused(depth):
    assert check(parse_json, b"[" * depth + b"]" * depth) is None
