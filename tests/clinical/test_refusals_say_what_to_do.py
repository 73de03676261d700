"""Every refusal says what to do next (issue 13): "A refusal always says what to do next (which export to choose on
the device, or which file to add)." Every broken file the tests generate — the hostile corpus, the intake cases of
test_ingest, every reader's failure modes — goes through clinical.intake.parse_upload, and unusable signals through
the quality gate and ecg_submit; each message must hold a next step (tests/clinical/next_step.py says what counts).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clinical import demo, services
from clinical.errors import ApplicationError
from clinical.intake import IntakeError, parse_upload
from mlcore.preprocess import LEADS
from mlcore.quality import assess
from tests.clinical import test_ingest
from tests.clinical.hostile import corpus
from tests.clinical.next_step import says_what_to_do
from tests.clinical.test_reader_failure_modes import FAILURES


def _check(message: str) -> None:
    if says_what_to_do(message):
        return
    raise AssertionError(f"the refusal does not say what to do next: {message!r}")


def test_the_check_tells_a_next_step_from_a_description():
    assert says_what_to_do("The header is UTF-16 text. Save it as ASCII, or export the record again.")
    assert says_what_to_do("A WFDB header was uploaded without its signal file; upload the .dat file too.")
    assert says_what_to_do("The values look like microvolts: upload millivolts, or say they are microvolts.")
    assert not says_what_to_do("The uploaded signal file is 'rec.dat'; the record was exported by MUSE.")
    assert not says_what_to_do("Lead II appears 2 times; each lead must appear once.")


# ---------------------------------------------------------------------------------------------------------------
# Intake


def _fs(case: corpus.Case) -> float | None:
    return float(case.fields["fs"]) if case.fields["fs"] else None


# Refused by the intake parser (not by the patient fields, the form or the size limit before reading).
CORPUS = [c for c in corpus.build() if c.direct and c.field not in ("pseudonym", "age", "sex", "files")]


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.name)
def test_every_hostile_file_is_refused_with_a_next_step(case):
    files = {k: (name, bytes(content)) for k, (name, content) in case.files.items()}
    with pytest.raises(IntakeError) as refused:
        parse_upload(files=files, fs=_fs(case))
    _check(refused.value.message)


@pytest.mark.parametrize(("upload", "field", "fragment"), test_ingest.BAD)
def test_every_intake_case_of_test_ingest_is_refused_with_a_next_step(upload, field, fragment, tmp_path: Path):
    with pytest.raises(IntakeError) as refused:
        upload(tmp_path)
    _check(refused.value.message)


def test_the_reader_failure_modes_are_checked_too():
    # test_reader_failure_modes asserts a next step for each of its cases; here only that they exist.
    assert len(FAILURES) > 100


# ---------------------------------------------------------------------------------------------------------------
# Quality gate


def _unusable(kind: str) -> np.ndarray:
    sig = demo.synthesize(demo.CASES[0], fs=500, seed=1).astype(np.float64)
    chest = [LEADS.index(lead) for lead in ("V1", "V2", "V3", "V4")]
    if kind == "flat":
        sig[chest] = 0.0
    elif kind == "clipped":
        for i in chest:
            sig[i] = np.clip(sig[i], None, np.percentile(sig[i], 90))
    elif kind == "noisy":
        t = np.arange(sig.shape[1]) / 500
        sig += 1.0 * np.sin(2 * np.pi * 45 * t) + 0.3 * np.random.default_rng(2).standard_normal(sig.shape)
    return sig


@pytest.mark.parametrize("kind", ["flat", "clipped", "noisy"])
def test_a_record_the_quality_gate_refuses_is_refused_with_what_to_do(kind, clinician):
    sig = _unusable(kind)
    report = assess(sig, 500)
    assert not report.usable and report.next_step()
    assert {i.code for i in report.refusals()} == {{"flat": "flat_line", "clipped": "clipping",
                                                     "noisy": "high_frequency_noise"}[kind]}
    with pytest.raises(ApplicationError) as refused:
        services.ecg_submit(actor=clinician, pseudonym="PT-QUALITY", age=60, sex="F",
                            files={"json": ("x.json", demo.as_json(sig, 500))}, fs=None)
    message = refused.value.message
    assert message.startswith("This ECG cannot be analysed: ") and message.endswith(" the ECG again.")
    assert report.next_step() in message
    _check(message)


def test_a_usable_record_has_no_next_step():
    assert assess(demo.synthesize(demo.CASES[0], fs=500, seed=1), 500).next_step() == ""
