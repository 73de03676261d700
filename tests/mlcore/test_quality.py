"""The signal-quality gate: what a clinician is warned about, and which ECGs are refused before inference."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mlcore.preprocess import LEADS
from mlcore.quality import QualityIssue, QualityReport, assess

IDX = {lead: i for i, lead in enumerate(LEADS)}


def clean_ecg(fs: float = 250, seconds: float = 10, seed: int = 0) -> np.ndarray:
    """(12, n) mV from one heart vector, so the limb leads obey Einthoven's law as a real recording does.

    Lead I and II are upright (normal axis, about +50°), aVR is inverted, V1 is an rS complex.
    """
    t = np.arange(int(fs * seconds)) / fs
    phase = (t % (60 / 70)) / (60 / 70)  # 70 bpm
    beat = (0.15 * np.exp(-(((phase - 0.15) / 0.03) ** 2))  # P
            + np.exp(-(((phase - 0.3) / 0.015) ** 2))  # QRS
            + 0.3 * np.exp(-(((phase - 0.6) / 0.08) ** 2)))  # T
    lead_i, lead_ii = 0.8 * beat, 1.2 * beat
    lead_iii = lead_ii - lead_i
    limb = [lead_i, lead_ii, lead_iii, -(lead_i + lead_ii) / 2, (lead_i - lead_iii) / 2, (lead_ii + lead_iii) / 2]
    chest = [g * beat for g in (-0.8, -0.4, 0.5, 1.0, 1.2, 0.9)]
    rng = np.random.default_rng(seed)
    return np.stack(limb + chest) + 0.01 * rng.standard_normal((12, len(t)))


def codes(report: QualityReport) -> list[tuple[str, str, str | None]]:
    return [(i.code, i.severity, i.lead) for i in report.issues]


@pytest.mark.parametrize("fs", [100, 250, 500, 1000])
def test_clean_ecg_is_usable_without_any_issue(fs: float) -> None:
    report = assess(clean_ecg(fs=fs), fs)
    assert report.usable
    assert report.issues == ()


def test_one_flat_lead_is_a_warning_naming_the_lead() -> None:
    sig = clean_ecg()
    sig[IDX["V3"]] = 0.002 * np.random.default_rng(1).standard_normal(sig.shape[1])  # electrode off, amplifier noise

    report = assess(sig, 250)

    assert report.usable
    assert codes(report) == [("flat_line", "warn", "V3")]
    assert report.warnings()[0].message == "Lead V3 is flat (lead off?)."
    assert report.refusals() == []


def test_four_flat_leads_make_the_record_unusable() -> None:
    sig = clean_ecg()
    for lead in ("V1", "V2", "V3", "V4"):
        sig[IDX[lead]] = 0.0

    report = assess(sig, 250)

    assert not report.usable
    assert sorted(i.lead for i in report.refusals()) == ["V1", "V2", "V3", "V4"]
    assert {i.code for i in report.refusals()} == {"flat_line"}


def test_clipped_lead_is_detected() -> None:
    sig = clean_ecg()
    sig[IDX["V5"]] = np.clip(sig[IDX["V5"]], None, 0.6)  # R waves of 1.2 mV cut at the amplifier's rail

    report = assess(sig, 250)

    assert report.usable
    assert codes(report) == [("clipping", "warn", "V5")]
    assert "clipped at its maximum" in report.issues[0].message


def test_three_clipped_or_flat_leads_are_refused() -> None:
    sig = clean_ecg()
    sig[IDX["V4"]] = np.clip(sig[IDX["V4"]], None, 0.5)
    sig[IDX["V5"]] = np.clip(sig[IDX["V5"]], None, 0.5)
    sig[IDX["V6"]] = 0.0

    report = assess(sig, 250)

    assert not report.usable
    assert sorted((i.code, i.lead) for i in report.refusals()) == [
        ("clipping", "V4"), ("clipping", "V5"), ("flat_line", "V6")]


@pytest.mark.parametrize(("fs", "hz"), [(250, 45.0), (100, 45.0), (500, 50.0)])
def test_high_frequency_noise_is_flagged_on_the_noisy_leads(fs: float, hz: float) -> None:
    sig = clean_ecg(fs=fs)
    t = np.arange(sig.shape[1]) / fs
    for lead in ("V2", "aVL"):
        sig[IDX[lead]] += 0.3 * np.sin(2 * np.pi * hz * t)

    report = assess(sig, fs)

    assert report.usable
    assert sorted((i.code, i.lead) for i in report.issues) == [
        ("high_frequency_noise", "V2"), ("high_frequency_noise", "aVL")]
    assert "high-frequency noise" in report.issues[0].message


def test_noise_in_most_leads_makes_the_record_unusable() -> None:
    sig = clean_ecg()
    t = np.arange(sig.shape[1]) / 250
    sig += 1.0 * np.sin(2 * np.pi * 45 * t) + 0.3 * np.random.default_rng(2).standard_normal(sig.shape)

    report = assess(sig, 250)

    assert not report.usable
    assert len([i for i in report.refusals() if i.code == "high_frequency_noise"]) >= 6


def test_baseline_wander_is_a_warning() -> None:
    sig = clean_ecg()
    t = np.arange(sig.shape[1]) / 250
    sig[IDX["V4"]] += 1.0 * np.sin(2 * np.pi * 0.2 * t)  # breathing: 0.2 Hz, 2 mV peak to peak

    report = assess(sig, 250)

    assert report.usable
    assert codes(report) == [("baseline_wander", "warn", "V4")]
    assert "baseline wander of 2.0 mV" in report.issues[0].message


def test_left_right_arm_reversal_is_suspected() -> None:
    sig = clean_ecg()
    swapped = sig.copy()
    swapped[IDX["I"]] = -sig[IDX["I"]]
    swapped[IDX["II"]], swapped[IDX["III"]] = sig[IDX["III"]], sig[IDX["II"]]
    swapped[IDX["aVR"]], swapped[IDX["aVL"]] = sig[IDX["aVL"]], sig[IDX["aVR"]]

    report = assess(swapped, 250)

    assert report.usable
    assert codes(report) == [("limb_lead_reversal", "warn", None)]
    assert "arm electrodes may be swapped" in report.issues[0].message


def test_limb_leads_that_break_einthovens_law_are_flagged() -> None:
    sig = clean_ecg()
    sig[[IDX["III"], IDX["V5"]]] = sig[[IDX["V5"], IDX["III"]]]  # two columns mislabelled in an export

    report = assess(sig, 250)

    assert codes(report) == [("limb_lead_reversal", "warn", None)]
    assert "I + III does not equal II" in report.issues[0].message


def test_report_round_trips_through_json() -> None:
    sig = clean_ecg()
    sig[IDX["V3"]] = 0.0
    sig[IDX["V4"]] += np.sin(2 * np.pi * 0.2 * np.arange(sig.shape[1]) / 250)
    report = assess(sig, 250)
    assert len(report.issues) == 2

    restored = QualityReport.from_dict(json.loads(json.dumps(report.to_dict())))

    assert restored == report
    assert restored.warnings() == report.warnings()
    assert restored.issues[0] == QualityIssue("flat_line", "warn", "V3", "Lead V3 is flat (lead off?).")


def test_wrong_shape_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="12, n"):
        assess(np.zeros((8, 1000)), 100)
