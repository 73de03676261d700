"""The hourly drift job flags exactly the features that moved, and says so when there is too little data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core import mail

from clinical.models import AuditEvent
from mlcore.reference import FEATURES, Reference
from monitoring.drift import drift_report_create, drift_report_run
from monitoring.models import DriftReport, MonitoringAlert
from tests.monitoring.factories import embeddings_for, reference_sample, seed_predictions

N = 400


@pytest.fixture(scope="module")
def reference() -> Reference:
    return Reference.load(settings.ECG_WEIGHTS_DIR)


def _run() -> DriftReport:
    return drift_report_run(report_id=drift_report_create().pk)


def test_unshifted_population_flags_no_feature(db, clinician, reference):
    cols = reference_sample(reference, N, seed=11)
    seed_predictions(cols, uploader=clinician, embeddings=embeddings_for(reference, cols, seed=11))
    report = _run()
    assert report.state == "done" and report.outcome == "no_drift"
    assert report.n_current == N and report.n_compared == N and report.n_reference == len(reference)
    assert report.n_features == len(FEATURES)  # every feature, the embedding included, was tested
    assert report.features.filter(drifted=True).count() == 0
    assert report.drift_share == 0
    assert not MonitoringAlert.objects.exists()
    # The Evidently HTML report is stored as a file; the summary numbers are rows.
    assert Path(report.html.path).stat().st_size > 100_000
    assert report.features.count() == len(FEATURES)
    assert all(f.p_value is not None and 0 <= f.p_value <= 1 for f in report.features.all())


def test_older_noisier_population_flags_exactly_age_and_noise(db, clinician, compliance_officer, reference,
                                                              django_capture_on_commit_callbacks):
    compliance_officer.email = "compliance@example.org"
    compliance_officer.save()
    cols = reference_sample(reference, N, seed=12)
    cols["age"] = cols["age"] + 15  # an older population
    cols["noise"] = cols["noise"] * 3  # noisier recordings
    seed_predictions(cols, uploader=clinician, embeddings=embeddings_for(reference, cols, seed=12))
    with django_capture_on_commit_callbacks(execute=True):
        report = _run()
    assert report.outcome == "drift"
    assert set(report.features.filter(drifted=True).values_list("feature", flat=True)) == {"age", "noise"}
    assert report.n_drifted == 2 and report.drift_share == pytest.approx(2 / len(FEATURES))
    age = report.features.get(feature="age")
    assert age.p_value < age.threshold and age.statistic > 0.2  # KS D: a large effect, not a tiny one
    # One alert, audited and emailed to compliance staff.
    alert = MonitoringAlert.objects.get()
    assert alert.drift_report == report and alert.metric == "drifted_features" and "age" in alert.message
    assert alert.emailed_to == ["compliance@example.org"]
    assert len(mail.outbox) == 1 and "Drift alert" in mail.outbox[0].subject
    assert AuditEvent.objects.filter(action="monitoring.alert", object_id=str(report.pk)).exists()


def test_too_few_predictions_is_reported_as_insufficient_with_the_counts(db, clinician, reference):
    cols = reference_sample(reference, 20, seed=13)
    seed_predictions(cols, uploader=clinician)
    report = _run()
    assert report.state == "done" and report.outcome == "insufficient"
    assert report.n_current == 20
    assert "20 predictions" in report.stage and str(settings.ECG_DRIFT_MIN_ROWS) in report.stage
    assert not report.features.exists() and not MonitoringAlert.objects.exists()


def test_empty_window_does_not_crash(db):
    report = _run()
    assert report.outcome == "insufficient" and report.n_current == 0


def test_records_without_intake_features_still_test_the_other_features(db, clinician, reference):
    """Records stored before intake features existed (or without an embedding) leave those features untested."""
    cols = reference_sample(reference, N, seed=14)
    seed_predictions(cols, uploader=clinician, with_features=False)
    report = _run()
    assert report.outcome == "no_drift"
    untested = set(report.features.filter(p_value__isnull=True).values_list("feature", flat=True))
    assert "heart_rate" in untested and "emb_distance" in untested and "age" not in untested
    assert report.n_features == len(FEATURES) - len(untested)


def test_a_second_run_of_the_same_report_changes_nothing(db, clinician, reference):
    cols = reference_sample(reference, N, seed=12)
    cols["age"] = cols["age"] + 15
    seed_predictions(cols, uploader=clinician)
    report = _run()
    again = drift_report_run(report_id=report.pk)  # a redelivered task message
    assert again.pk == report.pk and MonitoringAlert.objects.count() == 1


def test_window_above_the_cap_is_sampled(db, clinician, reference, settings):
    settings.ECG_DRIFT_MAX_ROWS = 150
    settings.ECG_DRIFT_MIN_ROWS = 100
    cols = reference_sample(reference, 300, seed=15)
    seed_predictions(cols, uploader=clinician)
    report = _run()
    assert report.n_current == 300 and report.n_compared == 150


def test_a_production_window_can_be_the_reference(db, clinician, reference, settings):
    """ECGAPP_DRIFT_REFERENCE=production:7: last week's predictions are the reference for today's."""
    from datetime import timedelta

    from django.utils import timezone

    from clinical.models import Prediction

    settings.ECG_DRIFT_REFERENCE = "production:7"
    last_week = seed_predictions(reference_sample(reference, 300, seed=16), uploader=clinician)
    Prediction.objects.filter(pk__in=[p.pk for p in last_week]).update(created_at=timezone.now() - timedelta(days=3))
    cols = reference_sample(reference, 300, seed=17)
    cols["age"] = np.clip(cols["age"] - 20, 0, None)  # a younger population today
    seed_predictions(cols, uploader=clinician)
    report = _run()
    assert report.reference == "production:7" and report.n_reference == 300 and report.n_current == 300
    assert set(report.features.filter(drifted=True).values_list("feature", flat=True)) == {"age"}


def test_ecgs_of_unknown_age_leave_the_age_test_to_the_others(db, clinician, reference):
    """An unknown age is no age: those rows are dropped from the age feature only, not counted as age 0."""
    cols = reference_sample(reference, N, seed=15)
    cols["age"] = cols["age"].astype(float)
    cols["age"][: N // 4] = np.nan
    seed_predictions(cols, uploader=clinician, embeddings=embeddings_for(reference, cols, seed=15))
    report = _run()
    assert report.state == "done" and report.outcome == "no_drift", report.stage
    age = report.features.get(feature="age")
    assert age.n_current == N - N // 4 and age.p_value is not None and not age.drifted
    assert report.features.get(feature="sex").n_current == N
