"""The demo's seed: synthetic ECGs enough for real drift and fairness reports, through the real analysis path."""
from __future__ import annotations

from collections import Counter

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError

from clinical import demo, services
from clinical.models import EcgRecord, InferenceJob, Patient
from monitoring.fairness import age_bands, band_of
from monitoring.models import DriftFeature, DriftReport, FairnessMetric, FairnessReport


@pytest.fixture
def demo_dir(settings, tmp_path):
    """The demo's data folder (example uploads, report files) in a throwaway place."""
    settings.ECG_DATA_DIR = tmp_path
    settings.MEDIA_ROOT = tmp_path / "media"
    return tmp_path


def _cells(pairs) -> Counter:
    bands = age_bands(django_settings.ECG_FAIRNESS_AGE_BANDS)
    return Counter((sex, band_of(age, bands)) for sex, age in pairs)


def test_population_starts_with_the_showcase_and_fills_every_fairness_group():
    ecgs = demo.population()
    assert len(ecgs) == demo.POPULATION_SIZE == 200
    assert [e.pseudonym for e in ecgs[:6]] == [c.pseudonym for c in demo.CASES]
    assert [(e.age, e.sex, e.case) for e in ecgs[:6]] == [(c.age, c.sex, c) for c in demo.CASES]
    assert len({e.pseudonym for e in ecgs}) == 200 and ecgs[-1].pseudonym == "DEMO-0200"
    assert all("synthetic" in e.file_name for e in ecgs)
    cells = _cells((e.sex, e.age) for e in ecgs)
    # Every sex x age-band group (so every sex and every band) is over the report's 30.
    assert set(cells) == {(s, b) for s in "FM" for b in ("<40", "40–65", ">65")}
    assert min(cells.values()) >= 33
    assert Counter(e.sex for e in ecgs) == {"F": 99, "M": 101}
    # Per-record variation: not 194 copies of six tracings.
    assert len({(e.case.heart_rate, e.amplitude, e.noise_mv, e.seed) for e in ecgs}) == 200
    assert len({e.case.name for e in ecgs[6:]}) == len(demo.CASES)
    assert demo.population() == ecgs  # the same demo every time


def test_seed_refuses_outside_demo_mode(db, settings, demo_dir):
    settings.DEMO_MODE = False
    with pytest.raises(CommandError, match="demo mode"):
        call_command("seed_demo", count=2)
    assert not Patient.objects.exists()


def test_reset_deletes_nothing_but_the_demos_own_database(db, settings, demo_dir):
    # The test database is not an SQLite file in the demo's data folder: reset must refuse and keep it.
    call_command("seed_demo", count=1)
    with pytest.raises(CommandError, match="nothing was deleted"):
        call_command("seed_demo", reset=True, count=1)
    assert Patient.objects.filter(pseudonym="DEMO-0001").exists()
    settings.DEMO_MODE = False
    with pytest.raises(CommandError, match="demo mode"):
        call_command("seed_demo", reset=True)


def test_seed_analyses_200_ecgs_then_the_first_reports_run_by_themselves(
        db, settings, demo_dir, weights_dir, django_capture_on_commit_callbacks, monkeypatch):
    # Eager Celery: the same tasks and services as the worker, run in this process when their message is sent.
    settings.CELERY_TASK_ALWAYS_EAGER = True
    # Not the evidence: nothing here reads it (tests/clinical/test_evidence_after_result.py does), and its backward
    # passes were a fifth of this test's time.
    monkeypatch.setattr(services, "_send_evidence", lambda prediction_id: None)
    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo")

    records = EcgRecord.objects.select_related("patient")
    assert records.count() == 200
    assert all(r.source_files[0].startswith(f"{r.patient.pseudonym}-synthetic-") for r in records)
    assert _cells((r.patient.sex, r.age_at_ecg) for r in records) == _cells((e.sex, e.age)
                                                                            for e in demo.population())
    assert set(InferenceJob.objects.values_list("state", flat=True)) == {InferenceJob.State.DONE}

    drift = DriftReport.objects.get()
    assert drift.state == "done" and drift.outcome in ("drift", "no_drift") and drift.n_current == 200
    assert drift.n_features > 0 and DriftFeature.objects.filter(report=drift, p_value__isnull=False).exists()
    assert drift.html.name
    fairness = FairnessReport.objects.get()
    assert fairness.state == "done" and fairness.outcome in ("ok", "breach") and fairness.n_predictions == 200
    urgent = FairnessMetric.objects.filter(report=fairness, metric="urgent_rate")
    assert {m.group for m in urgent.filter(dimension="age_band")} == {"<40", "40–65", ">65"}
    assert all(m.status == "ok" and m.n >= 30 for m in urgent)

    # A second seed adds nothing: no ECG, no job, no report.
    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo")
    assert EcgRecord.objects.count() == 200
    assert DriftReport.objects.count() == 1 and FairnessReport.objects.count() == 1
