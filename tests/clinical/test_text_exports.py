"""CSV and text exports as ECG software writes them (issue 13): a 'key: value' preamble (sampling rate, gain,
units, 'Rhythm signal' shape), a header row or none (standard order checked by Einthoven's law), ADC digits."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from clinical.intake import UPLOAD_EXTENSIONS, IntakeError, parse_upload
from mlcore.preprocess import LEADS

SAMPLES = Path("/work/shared/ecg_samples")
CSV_SAMPLE = SAMPLES / "csv" / "ECG_12L.csv"
TEXT_SAMPLE = SAMPLES / "text" / "testing_ecg.txt"


def _sample(path: Path) -> bytes:
    if not path.exists():
        pytest.skip(f"real sample {path} is not present (see ecg_samples/SOURCES.md)")
    return path.read_bytes()


def _refused(name: str, content: bytes, fs: float | None) -> IntakeError:
    with pytest.raises(IntakeError) as info:
        parse_upload(files={"file": (name, content)}, fs=fs)
    return info.value


def _limb_signal(seconds: float = 10, fs: int = 500, seed: int = 0) -> np.ndarray:
    """(n, 12) µV integers obeying III = II − I (and the augmented leads), like a cart's export."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    lead_i = 400 * np.sin(2 * np.pi * 1.2 * t) + rng.normal(0, 20, t.size)
    lead_ii = 800 * np.sin(2 * np.pi * 1.2 * t + 0.3) + rng.normal(0, 20, t.size)
    chest = [600 * np.sin(2 * np.pi * 1.2 * t + k / 3) for k in range(6)]
    cols = [lead_i, lead_ii, lead_ii - lead_i, -(lead_i + lead_ii) / 2, lead_i - lead_ii / 2, lead_ii - lead_i / 2,
            *chest]
    return np.round(np.stack(cols, axis=1))


def _text(matrix: np.ndarray, preamble: str = "", header: bool = False, sep: str = " ") -> bytes:
    buf = io.StringIO()
    buf.write(preamble)
    if header:
        buf.write(sep.join(LEADS) + "\n")
    np.savetxt(buf, matrix, fmt="%d", delimiter=sep)
    return buf.getvalue().encode()


def test_txt_is_an_accepted_single_file_extension():
    assert "txt" in UPLOAD_EXTENSIONS


def test_real_csv_export_gives_its_rate_and_gain_and_is_read_in_millivolts():
    content = _sample(CSV_SAMPLE)
    parsed = parse_upload(files={"file": ("ECG_12L.csv", content)}, fs=None)
    digits = np.loadtxt(CSV_SAMPLE, delimiter=",", skiprows=3)  # two preamble lines and the header row
    assert digits.shape == (5000, 12)
    assert parsed.fs == 500.0
    assert parsed.signal.shape == (12, 5000)
    assert np.max(np.abs(parsed.signal - (digits / 2048.0).T)) < 1e-3  # within 1 µV
    # The same rate in the form is fine; another one is refused, naming both.
    assert parse_upload(files={"file": ("ECG_12L.csv", content)}, fs=500).fs == 500.0
    err = _refused("ECG_12L.csv", content, 250)
    assert err.field == "fs" and "500 Hz" in err.message and "250 Hz" in err.message


def test_real_text_export_is_read_in_standard_order_in_microvolts_with_the_forms_rate():
    content = _sample(TEXT_SAMPLE)
    parsed = parse_upload(files={"file": ("testing_ecg.txt", content)}, fs=500)
    lines = content.decode().splitlines()
    shape_line = next(k for k, line in enumerate(lines) if line.startswith("Rhythm signal"))
    microvolts = np.loadtxt(TEXT_SAMPLE, skiprows=shape_line + 1)  # blank lines, 'Rhythm signal: 5000 X 12'
    assert microvolts.shape == (5000, 12)
    assert parsed.fs == 500.0
    assert np.max(np.abs(parsed.signal - (microvolts / 1000.0).T)) < 1e-3


def test_real_text_export_without_a_rate_in_the_form_is_refused_asking_for_it():
    err = _refused("testing_ecg.txt", _sample(TEXT_SAMPLE), None)
    assert err.field == "fs"
    assert "Enter the sampling rate in Hz" in err.message and "does not state it" in err.message


def test_real_csv_export_without_its_gain_line_is_refused_asking_for_the_gain_not_called_microvolts():
    content = _sample(CSV_SAMPLE).replace(b"Gain (digit/millivolt): 2048", b"")
    err = _refused("ECG_12L.csv", content, None)
    assert "ADC digits (e.g. 2048 per mV)" in err.message
    assert "'Gain (digit/millivolt): N'" in err.message and "export in mV" in err.message


@pytest.mark.parametrize("gain", ["0", "-2048", "abc"])
def test_a_gain_that_is_zero_negative_or_not_a_number_is_refused(gain):
    content = _text(_limb_signal(), f"Sampling Rate (Hz): 500\nGain (digit/millivolt): {gain}\n", header=True,
                    sep=",")
    err = _refused("ecg.csv", content, None)
    assert "positive gain" in err.message and "Gain (digit/millivolt): 2048" in err.message


@pytest.mark.parametrize("line", ["Sampling frequency: 250 Hz", "fs=250", "Sampling Rate (Hz): 250"])
def test_a_preamble_rate_is_read_and_one_that_disagrees_with_the_form_is_refused(line):
    content = _text(_limb_signal(fs=250), f"{line}\nUnits: uV\n", header=True, sep="\t")
    parsed = parse_upload(files={"file": ("ecg.txt", content)}, fs=None)
    assert parsed.fs == 250.0
    assert parsed.signal.shape == (12, 2500)
    err = _refused("ecg.txt", content, 500)
    assert err.field == "fs" and "250 Hz" in err.message and "500 Hz" in err.message


@pytest.mark.parametrize("units", ["uV", "µV", "μV"])
def test_units_line_in_microvolts_is_converted(units):
    signal = _limb_signal()
    content = _text(signal, f"Units: {units}\n", header=True, sep=";")
    parsed = parse_upload(files={"file": ("ecg.csv", content)}, fs=500)
    assert np.max(np.abs(parsed.signal - (signal / 1000.0).T)) < 1e-6


def test_headerless_twelve_columns_obeying_einthoven_are_read_in_standard_order():
    signal = _limb_signal()
    parsed = parse_upload(files={"file": ("ecg.txt", _text(signal, "Units: uV\n"))}, fs=500)
    assert np.max(np.abs(parsed.signal - (signal / 1000.0).T)) < 1e-6


def test_headerless_twelve_columns_violating_einthoven_are_refused_asking_for_a_header():
    signal = _limb_signal()[:, [0, 6, 2, 3, 4, 5, 1, 7, 8, 9, 10, 11]]  # II and V1 swapped
    err = _refused("ecg.txt", _text(signal, "Units: uV\n"), 500)
    assert "no header row" in err.message and "Add a header row" in err.message
    assert "III = II − I" in err.message
    assert not any(str(int(v)) in err.message.split("'") for v in signal[0])  # no numbers quoted as lead names


def test_headerless_file_with_eight_columns_is_refused():
    err = _refused("ecg.csv", _text(_limb_signal()[:, [0, 1, 6, 7, 8, 9, 10, 11]], "Units: uV\n", sep=","), 500)
    assert "8 values" in err.message and "exactly 12 columns" in err.message
    assert "Add a header row" in err.message
    assert "is not a recognised lead name" not in err.message


def test_rhythm_signal_shape_that_does_not_match_the_rows_is_refused():
    content = _sample(TEXT_SAMPLE)
    cut = b"\n".join(content.splitlines()[:-10]) + b"\n"
    err = _refused("testing_ecg.txt", cut, 500)
    assert "Rhythm signal: 5000 X 12" in err.message and "4990 rows" in err.message
