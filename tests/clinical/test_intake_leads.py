"""Fewer than 12 leads (issue 13): the limb leads derived from any two that a WFDB, CSV or JSON upload holds, with
V1–V6; a Holter or monitor strip, missing chest leads and flat chest leads refused saying so. The export formats'
own cases are in test_readers_xml.py, test_readers_dicom_edf.py and test_readers_scp.py."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from clinical.intake import IntakeError, ParsedEcg, parse_upload
from clinical.intake.leads import IN_I_AND_II, complete_leads
from mlcore.preprocess import LEADS
from tests.clinical.test_ingest import csv_rows, to_csv, write_wfdb
from tests.conftest import synthetic_ecg

LIMB = LEADS[:6]
CHEST = LEADS[6:]
EIGHT = ("I", "II", *CHEST)
HOLTER = "This is a 2-lead recording (MLII and V5), such as a Holter or monitor strip, not a 12-lead ECG"
FLAT = ("The chest leads V1–V6 are flat: the chest electrodes were not connected, or the export holds only the limb "
        "leads")


def twelve(fs: float = 500, seconds: float = 10, seed: int = 3) -> np.ndarray:
    """(12, n) mV whose limb leads obey Einthoven's and Goldberger's relations, as a cart's do."""
    sig = synthetic_ecg(np.random.default_rng(seed), fs=fs, seconds=seconds)
    lead_i, lead_ii = sig[0], sig[1]
    for k, lead in enumerate(LIMB):
        a, b = IN_I_AND_II[lead]
        sig[k] = a * lead_i + b * lead_ii
    return sig


def only(sig: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    return sig[[LEADS.index(n) for n in names]]


def row(ecg: ParsedEcg, lead: str) -> np.ndarray:
    return ecg.signal[LEADS.index(lead)].astype(np.float64)


def refusal(files: dict[str, tuple[str, bytes]], fs: float | None = None) -> IntakeError:
    with pytest.raises(IntakeError) as caught:
        parse_upload(files=files, fs=fs)
    return caught.value


# ---------------------------------------------------------------------------------------------------------------
# complete_leads itself


@pytest.mark.parametrize("pair", list(itertools.combinations(LIMB, 2)), ids="+".join)
def test_any_two_limb_leads_with_v1_v6_give_all_six(pair):
    sig = twelve()
    columns = {lead: sig[LEADS.index(lead)].copy() for lead in (*pair, *CHEST)}
    recorded = {lead: columns[lead] for lead in columns}
    notes = complete_leads(columns, what="the test file")
    assert sorted(columns) == sorted(LEADS)
    for lead in LIMB:
        np.testing.assert_allclose(columns[lead], sig[LEADS.index(lead)], rtol=0, atol=1e-12)
    for lead, values in recorded.items():  # the leads found are the very arrays the reader gave
        assert columns[lead] is values
    derived = [lead for lead in LIMB if lead not in pair]
    assert notes == [f"{', '.join(derived[:-1])} and {derived[-1]} derived from {pair[0]} and {pair[1]}"]


def test_derived_leads_obey_einthoven_and_goldberger_exactly():
    sig = synthetic_ecg(np.random.default_rng(5), fs=500)  # I and II independent noise: nothing cancels by luck
    columns = {lead: sig[LEADS.index(lead)] for lead in EIGHT}
    assert complete_leads(columns, what="the test file") == ["III, aVR, aVL and aVF derived from I and II"]
    i, ii = columns["I"], columns["II"]
    np.testing.assert_array_equal(columns["III"], ii - i)  # Einthoven 1913
    np.testing.assert_array_equal(columns["aVR"], -(i + ii) / 2)  # Goldberger 1942
    np.testing.assert_array_equal(columns["aVL"], i - ii / 2)
    np.testing.assert_array_equal(columns["aVF"], ii - i / 2)


def test_i_and_ii_are_preferred_and_other_recorded_limb_leads_kept():
    sig = twelve()
    avl = sig[LEADS.index("aVL")] + 0.01  # a recorded lead is kept as recorded, even where it disagrees
    columns = {"aVL": avl, "I": sig[0], "II": sig[1], **{v: sig[LEADS.index(v)] for v in CHEST}}
    assert complete_leads(columns, what="the test file") == ["III, aVR and aVF derived from I and II"]
    assert columns["aVL"] is avl


# ---------------------------------------------------------------------------------------------------------------
# WFDB


def wfdb_files(tmp: Path, sig: np.ndarray, names, fs: float = 500, record: str = "rec") -> dict:
    tmp.mkdir(exist_ok=True)
    hea, dat = write_wfdb(tmp, sig, fs, names, record=record)
    return {"hea": (f"{record}.hea", hea), "dat": (f"{record}.dat", dat)}


def test_wfdb_with_i_ii_and_v1_v6_is_read_with_the_limb_leads_derived(tmp_path):
    sig = twelve()
    eight = parse_upload(files=wfdb_files(tmp_path, only(sig, EIGHT), EIGHT), fs=None)
    full = parse_upload(files=wfdb_files(tmp_path / "full", sig, LEADS), fs=None)
    assert eight.notes == ["III, aVR, aVL and aVF derived from I and II"]
    for lead in EIGHT:  # the recorded leads are stored bit for bit as a 12-lead record's are
        np.testing.assert_array_equal(eight.signal[LEADS.index(lead)], full.signal[LEADS.index(lead)])
    # The derived leads obey Einthoven's law on the stored (float32) signal, to float32 rounding.
    np.testing.assert_allclose(row(eight, "III"), row(eight, "II") - row(eight, "I"), rtol=0, atol=1e-6)
    np.testing.assert_allclose(row(eight, "aVR") + row(eight, "aVL") + row(eight, "aVF"), 0, rtol=0, atol=1e-6)
    np.testing.assert_allclose(eight.signal, full.signal, rtol=0, atol=1e-3)  # within the records' ADC steps


def test_wfdb_with_ii_and_avl_reconstructs_i_and_ii(tmp_path):
    sig = twelve()
    names = ("II", "aVL", *CHEST)
    parsed = parse_upload(files=wfdb_files(tmp_path, only(sig, names), names), fs=None)
    assert parsed.notes == ["I, III, aVR and aVF derived from II and aVL"]
    np.testing.assert_allclose(row(parsed, "I"), row(parsed, "aVL") + row(parsed, "II") / 2, rtol=0, atol=1e-6)
    np.testing.assert_allclose(row(parsed, "I"), sig[0], rtol=0, atol=1e-3)
    np.testing.assert_allclose(row(parsed, "II"), sig[1], rtol=0, atol=1e-3)


def test_a_two_lead_holter_record_is_refused_as_one(tmp_path):
    sig = twelve(fs=360)
    error = refusal(wfdb_files(tmp_path, only(sig, ("II", "V5")), ("MLII", "V5"), fs=360, record="100"))
    assert error.field == "hea"
    assert error.message.startswith(HOLTER)
    assert "Upload the resting 12-lead ECG from the cart" in error.message


def test_a_thirty_minute_holter_record_is_refused_as_a_holter_not_for_its_length(tmp_path):
    sig = synthetic_ecg(np.random.default_rng(1), fs=360, seconds=1805)[:2]  # MIT-BIH: 650,000 samples
    assert refusal(wfdb_files(tmp_path, sig, ("MLII", "V5"), fs=360, record="100")).message.startswith(HOLTER)


def test_wfdb_without_v3_is_refused_naming_it(tmp_path):
    names = tuple(n for n in LEADS if n != "V3")
    error = refusal(wfdb_files(tmp_path, only(twelve(), names), names))
    assert error.message.startswith("Lead V3 is missing from the header rec.hea; a 12-lead ECG needs all six chest "
                                    "leads (V1–V6), which cannot be derived from the other leads.")


def test_wfdb_with_flat_chest_leads_is_refused_saying_so(tmp_path):
    sig = twelve()
    sig[6:] = 0.0
    error = refusal(wfdb_files(tmp_path, sig, LEADS))
    assert error.message.startswith(FLAT)


# ---------------------------------------------------------------------------------------------------------------
# CSV / text


def csv_file(sig: np.ndarray, names) -> dict:
    return {"csv": ("ecg.csv", to_csv(csv_rows(sig, names)))}


def test_csv_with_i_ii_and_v1_v6_is_read_with_the_limb_leads_derived():
    sig = twelve()
    parsed = parse_upload(files=csv_file(only(sig, EIGHT), EIGHT), fs=500)
    assert parsed.notes == ["III, aVR, aVL and aVF derived from I and II"]
    full = parse_upload(files=csv_file(sig, LEADS), fs=500)
    for lead in EIGHT:
        np.testing.assert_array_equal(parsed.signal[LEADS.index(lead)], full.signal[LEADS.index(lead)])
    np.testing.assert_allclose(row(parsed, "III"), row(parsed, "II") - row(parsed, "I"), rtol=0, atol=1e-6)


def test_csv_with_i_and_avf_reconstructs_ii():
    sig = twelve()
    names = ("I", "aVF", *CHEST)
    parsed = parse_upload(files=csv_file(only(sig, names), names), fs=500)
    assert parsed.notes == ["II, III, aVR and aVL derived from I and aVF"]
    np.testing.assert_allclose(row(parsed, "II"), sig[1], rtol=0, atol=1e-5)  # 6 decimals in the file
    np.testing.assert_allclose(row(parsed, "I"), sig[0], rtol=0, atol=1e-6)


def test_csv_of_a_holter_export_is_refused_as_one_not_for_its_monitoring_lead():
    sig = twelve()
    error = refusal(csv_file(only(sig, ("II", "V5")), ("MLII", "V5")), fs=500)
    assert error.message.startswith(HOLTER) and "not part of the standard" not in error.message


def test_csv_without_v3_and_csv_with_one_limb_lead_are_refused_naming_what_is_missing():
    sig = twelve()
    names = tuple(n for n in EIGHT if n != "V3")
    assert refusal(csv_file(only(sig, names), names), fs=500).message.startswith(
        "Lead V3 is missing from the .csv file")
    names = ("II", *CHEST)
    assert refusal(csv_file(only(sig, names), names), fs=500).message.startswith(
        "The .csv file has only one limb lead (II); the six limb leads are derived from any two")


def test_csv_with_flat_chest_leads_is_refused_saying_so():
    sig = twelve()
    sig[6:] = 0.02  # a constant offset, as a cart writes an unconnected lead
    assert refusal(csv_file(sig, LEADS), fs=500).message.startswith(FLAT)


# ---------------------------------------------------------------------------------------------------------------
# JSON


def json_file(sig: np.ndarray, names) -> dict:
    doc = {"fs": 500, "leads": {name: values.tolist() for name, values in zip(names, sig)}}
    return {"json": ("ecg.json", json.dumps(doc).encode())}


def test_json_with_i_ii_and_v1_v6_is_read_with_the_limb_leads_derived():
    sig = twelve()
    parsed = parse_upload(files=json_file(only(sig, EIGHT), EIGHT), fs=None)
    assert parsed.notes == ["III, aVR, aVL and aVF derived from I and II"]
    for lead in EIGHT:  # JSON numbers are doubles: the stored rows are the file's values as float32
        np.testing.assert_array_equal(parsed.signal[LEADS.index(lead)], sig[LEADS.index(lead)].astype(np.float32))
    np.testing.assert_allclose(parsed.signal, sig, rtol=0, atol=1e-6)


def test_json_with_ii_and_avl_reconstructs_i():
    sig = twelve()
    names = ("aVL", "II", *CHEST)
    parsed = parse_upload(files=json_file(only(sig, names), names), fs=None)
    assert parsed.notes == ["I, III, aVR and aVF derived from II and aVL"]
    np.testing.assert_allclose(parsed.signal, sig, rtol=0, atol=1e-6)


def test_json_holter_missing_v3_and_flat_chest_leads_are_refused_saying_so():
    sig = twelve()
    assert refusal(json_file(only(sig, ("II", "V5")), ("MLII", "V5"))).message.startswith(HOLTER)
    names = tuple(n for n in LEADS if n != "V3")
    assert refusal(json_file(only(sig, names), names)).message.startswith("Lead V3 is missing from the .json file")
    sig[6:] = 0.0
    assert refusal(json_file(sig, LEADS)).message.startswith(FLAT)


# ---------------------------------------------------------------------------------------------------------------
# Stored and shown


def test_an_eight_lead_upload_is_stored_with_its_note_and_the_result_page_says_how(client, clinician):
    from django.urls import reverse

    from clinical import services

    sig = twelve()
    record = services.ecg_submit(actor=clinician, pseudonym="PT-8LEAD", age=60, sex="M",
                                 files=csv_file(only(sig, EIGHT), EIGHT), fs=500)
    record.refresh_from_db()
    assert record.intake_notes == ["III, aVR, aVL and aVF derived from I and II"]
    stored = record.signal_array().astype(np.float64)
    np.testing.assert_allclose(stored[2], stored[1] - stored[0], rtol=0, atol=1e-6)
    client.force_login(clinician)
    page = client.get(reverse("clinical:ecg-detail", args=[record.public_id])).content.decode()
    assert "How the 12 leads were read" in page and "III, aVR, aVL and aVF derived from I and II" in page
