"""Fuzzing the export readers (clinical.intake) from the real files in ../shared/ecg_samples and from the files
tests/clinical/export_fixtures.py generates (so that every reader is fuzzed where the samples are absent): a file cut
short, with bytes flipped or spliced, is read as a clean 12-lead ECG or refused with an IntakeError that has a short
message, never another exception or a numpy warning. Bounded for CI; ECG_FUZZ_EXAMPLES raises the count for a
longer hunt."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinical.intake import IntakeError, ParsedEcg, parse_upload
from tests.clinical import export_fixtures as fx

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "ecg_samples"
FILES = ["ge-muse-xml/braveheart_example1.xml", "philips-xml/129DYPRG.XML",
         "philips-xml/3191723_ZZDEMOPTONLY_1-04_orig.xml", "hl7-aecg/Example_aECG.xml", "dicom/waveform_ecg.dcm",
         "scp-ecg/Example.scp", "edf/0000050.ECG.edf"]
FUZZ = settings(max_examples=int(os.environ.get("ECG_FUZZ_EXAMPLES", 40)), deadline=10_000, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason="../shared/ecg_samples is not beside the checkout")
# Written once: a DICOM file's UIDs differ in length from one writing to the next, which hypothesis would not replay.
GENERATED = {name: write() for name, write in (("muse.xml", fx.muse_xml), ("philips.xml", fx.philips_xml),
                                               ("aecg.xml", fx.aecg_xml), ("ecg.dcm", fx.dicom_bytes),
                                               ("ecg.edf", fx.edf_ecg), ("ecg.scp", fx.scp_bytes))}


def _read(name: str, content: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a numpy overflow or invalid value is a bug here
        try:
            parsed = parse_upload(files={"file": (Path(name).name, content)}, fs=None)
        except IntakeError as exc:
            assert exc.message and len(exc.message) <= 700, exc.message
            return
    assert isinstance(parsed, ParsedEcg) and parsed.signal.shape[0] == 12


@needs_samples
@pytest.mark.parametrize("name", FILES)
def test_every_sample_is_read(name):
    """The unmutated files: read, or (EDF, chest electrodes off) refused for that stated reason."""
    content = (SAMPLES / name).read_bytes()
    if name.startswith("edf/"):
        with pytest.raises(IntakeError, match="V1–V6 are flat"):
            parse_upload(files={"file": (Path(name).name, content)}, fs=None)
    else:
        assert parse_upload(files={"file": (Path(name).name, content)}, fs=None).signal.shape[0] == 12


def _damage(content: bytearray, data) -> bytes:
    """The file cut short, with up to 8 bytes changed, or with up to 64 bytes inserted."""
    how = data.draw(st.sampled_from(["truncate", "flip", "splice"]))
    if how == "truncate":
        content = content[:data.draw(st.integers(0, len(content) - 1))]
    elif how == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(content) - 1))
            content[i] = data.draw(st.integers(0, 255))
    else:
        i = data.draw(st.integers(0, len(content)))
        content[i:i] = data.draw(st.binary(min_size=1, max_size=64))
    return bytes(content)


@needs_samples
@pytest.mark.parametrize("name", FILES)
@FUZZ
@given(data=st.data())
def test_a_damaged_export_is_read_or_refused_cleanly(name, data):
    _read(name, _damage(bytearray((SAMPLES / name).read_bytes()), data))


@pytest.mark.parametrize("name", GENERATED)
@FUZZ
@given(data=st.data())
def test_a_damaged_generated_export_is_read_or_refused_cleanly(name, data):
    _read(name, _damage(bytearray(GENERATED[name]), data))
