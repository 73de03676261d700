"""WFDB records as hospitals and PhysioNet databases have them (issue 13): any rate from 100 to 2000 Hz, extra
signals ignored by name (PTB's Frank leads in a second .xyz file), CinC 2020/2021 .hea + .mat pairs (format 16+24).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb

from clinical import demo
from clinical.intake import UPLOAD_EXTENSIONS, IntakeError, parse_upload
from mlcore.preprocess import LEADS, to_model_rate

SAMPLES = Path("/work/shared/ecg_samples/wfdb")
UV = 1e-3  # 1 µV in mV
_UNIT = {"mv": 1.0, "uv": 1e-3, "v": 1e3}


def _sample(*names: str) -> dict[str, tuple[str, bytes]]:
    missing = [n for n in names if not (SAMPLES / n).exists()]
    if missing:
        pytest.skip(f"sample record files absent: {', '.join(missing)} (see /work/shared/ecg_samples/SOURCES.md)")
    return {n: (n, (SAMPLES / n).read_bytes()) for n in names}


def _reference(record: str) -> np.ndarray:
    """wfdb.rdrecord's p_signal for the 12 standard leads, in mV, standard lead order."""
    rec = wfdb.rdrecord(str(SAMPLES / record), channels=list(range(12)) if record == "s0010_re" else None)
    from mlcore.preprocess import canonical_lead
    rows = {canonical_lead(n): rec.p_signal[:, i] * _UNIT[(u or "mV").lower()]
            for i, (n, u) in enumerate(zip(rec.sig_name, rec.units))}
    return np.stack([rows[lead] for lead in LEADS])


@pytest.mark.parametrize("names", [("s0010_re.hea", "s0010_re.dat"),
                                   ("s0010_re.hea", "s0010_re.dat", "s0010_re.xyz")], ids=["dat-only", "with-xyz"])
def test_ptb_record_with_frank_leads(names):
    parsed = parse_upload(files=_sample(*names), fs=None)
    assert parsed.fs == 1000 and parsed.signal.shape == (12, 38400)
    assert np.abs(parsed.signal - _reference("s0010_re")).max() < UV
    assert any("vx, vy and vz" in note and "ignored" in note for note in parsed.notes)


def test_ptb_header_without_the_dat_names_the_file_to_add():
    with pytest.raises(IntakeError) as exc:
        parse_upload(files=_sample("s0010_re.hea", "s0010_re.xyz"), fs=None)
    assert "'s0010_re.dat'" in exc.value.message and "not uploaded" in exc.value.message


def test_cinc_mat_pair():
    parsed = parse_upload(files=_sample("JS00001.hea", "JS00001.mat"), fs=None)
    assert parsed.fs == 500 and parsed.signal.shape == (12, 5000)
    assert np.abs(parsed.signal - _reference("JS00001")).max() < UV
    assert parsed.notes == []


def test_mat_is_an_accepted_extension():
    assert "mat" in UPLOAD_EXTENSIONS


def _record(tmp_path, fs: int, **kw) -> tuple[np.ndarray, dict[str, tuple[str, bytes]]]:
    sig = demo.synthesize(demo.CASES[0], fs=500, seed=3)
    n = int(round(sig.shape[1] * fs / 500))
    sig = np.stack([np.interp(np.linspace(0, sig.shape[1] - 1, n), np.arange(sig.shape[1]), row) for row in sig])
    wfdb.wrsamp(f"r{fs}", fs=fs, units=["mV"] * 12, sig_name=list(LEADS), p_signal=sig.T, fmt=["16"] * 12,
                adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(tmp_path), **kw)
    return sig, {e: (f"r{fs}.{e}", (tmp_path / f"r{fs}.{e}").read_bytes()) for e in ("hea", "dat")}


@pytest.mark.parametrize("fs", [240, 257, 360, 2000])
def test_any_rate_in_range(tmp_path, fs):
    sig, files = _record(tmp_path, fs)
    parsed = parse_upload(files=files, fs=None)
    assert parsed.fs == fs
    assert np.abs(parsed.signal - sig).max() <= 0.5e-3 + 1e-6  # ADC rounding at 1000/mV
    assert to_model_rate(parsed.signal, parsed.fs).shape == (12, 1000)


def test_99_hz_refused_with_the_range(tmp_path):
    _, files = _record(tmp_path, 99)
    with pytest.raises(IntakeError) as exc:
        parse_upload(files=files, fs=None)
    assert "99 Hz" in exc.value.message and "100 to 2000 Hz" in exc.value.message


def test_standard_lead_in_a_file_not_uploaded(tmp_path):
    _, files = _record(tmp_path, 500)
    text = files["hea"][1].decode()
    lines = text.splitlines()
    lines[-1] = lines[-1].replace("r500.dat", "r500_v6.dat", 1)  # V6 said to live in a second file
    hea = ("\n".join(lines) + "\n").encode()
    with pytest.raises(IntakeError) as exc:
        parse_upload(files={"hea": ("r500.hea", hea), "dat": files["dat"]}, fs=None)
    assert "Lead V6" in exc.value.message and "'r500_v6.dat'" in exc.value.message


def test_byte_offset_honoured_for_a_dat(tmp_path):
    sig, files = _record(tmp_path, 500)
    hea = files["hea"][1].decode().replace(".dat 16 ", ".dat 16+24 ").encode()
    parsed = parse_upload(files={"hea": ("r500.hea", hea), "dat": ("r500.dat", b"\0" * 24 + files["dat"][1])},
                          fs=None)
    assert np.abs(parsed.signal - sig).max() <= 0.5e-3 + 1e-6


@pytest.mark.django_db
def test_257_hz_end_to_end_through_ecg_submit(tmp_path, clinician):
    from clinical.services import ecg_submit

    sig, files = _record(tmp_path, 257)
    record = ecg_submit(actor=clinician, pseudonym="PT-257", age=60, sex="F", files=files, fs=None)
    assert record.fs == 257
    stored = record.signal_array()  # as stored (compact, lossless: clinical.compact)
    assert stored.shape[1] == record.n_samples == sig.shape[1]
    x = to_model_rate(stored, record.fs)
    assert x.shape == (12, 1000) and np.isfinite(x).all()
