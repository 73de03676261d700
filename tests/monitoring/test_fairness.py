"""The daily fairness report: rates with CIs per group, disparities judged with their CIs, small groups named."""
from __future__ import annotations

import math

import numpy as np
import pytest
from django.conf import settings

from clinical.models import AuditEvent
from mlcore import metrics as scores
from mlcore.reference import Reference
from monitoring.fairness import UNKNOWN_AGE_BAND, age_bands, band_of, fairness_report_create, fairness_report_run
from monitoring.models import FairnessComparison, FairnessMetric, MonitoringAlert
from tests.monitoring.factories import reference_sample, seed_predictions, seed_reviews


@pytest.fixture(scope="module")
def reference() -> Reference:
    return Reference.load(settings.ECG_WEIGHTS_DIR)


def _cohort(reference, n: int, sex: str, age: float, seed: int) -> dict:
    cols = reference_sample(reference, n, seed=seed)
    cols["sex"] = np.array([sex] * n, dtype=object)
    cols["age"] = np.full(n, age)
    return cols


def _seed_group(reference, uploader, reviewer, *, n: int, sex: str, age: float, urgent_share: float,
                reviewed: int, tpr: float, seed: int) -> None:
    """n predictions, the first urgent_share urgent; `reviewed` of them reviewed with MI found at rate tpr."""
    urgency = ["urgent" if i < round(n * urgent_share) else "routine" for i in range(n)]
    predictions = seed_predictions(_cohort(reference, n, sex, age, seed), uploader=uploader, urgency=urgency)
    # Each reviewed result had MI present: the model found it (tp) or missed it (fn); NORM was correctly absent.
    outcomes = [{"MI": "tp" if i < round(reviewed * tpr) else "fn", "NORM": "tn"} for i in range(reviewed)]
    seed_reviews(predictions[:reviewed], outcomes, reviewer)


def _run():
    return fairness_report_run(report_id=fairness_report_create().pk)


def test_biased_outcomes_raise_parity_and_equal_opportunity_alerts_with_cis(
        db, clinician, reviewer, compliance_officer, reference, django_capture_on_commit_callbacks, settings):
    settings.ECG_METRICS_TOKEN = "fairness-test-token"  # Prometheus scrapes with its bearer token
    compliance_officer.email = "compliance@example.org"
    compliance_officer.save()
    # Women get urgent recommendations less often, and their reviewed MIs are found less often.
    _seed_group(reference, clinician, reviewer, n=200, sex="F", age=55, urgent_share=0.10, reviewed=120, tpr=0.55,
                seed=1)
    _seed_group(reference, clinician, reviewer, n=200, sex="M", age=55, urgent_share=0.30, reviewed=120, tpr=0.90,
                seed=2)
    _seed_group(reference, clinician, reviewer, n=5, sex="U", age=55, urgent_share=0.2, reviewed=0, tpr=0, seed=3)
    with django_capture_on_commit_callbacks(execute=True):
        report = _run()
    assert report.state == "done" and report.outcome == "breach"
    assert report.n_predictions == 405 and report.n_reviewed == 240

    female = FairnessMetric.objects.get(report=report, dimension="sex", group="Female", metric="urgent_rate")
    assert (female.events, female.n) == (20, 200) and female.value == pytest.approx(0.10)
    assert (female.ci_low, female.ci_high) == pytest.approx(scores.wilson(20, 200))
    assert female.ci_low < 0.10 < female.ci_high

    parity = FairnessComparison.objects.get(report=report, dimension="sex", metric="demographic_parity_ratio")
    assert parity.value == pytest.approx(0.10 / 0.30) and parity.breached
    assert parity.ci_high < 1.0 and (parity.lowest_group, parity.highest_group) == ("Female", "Male")
    eo = FairnessComparison.objects.get(report=report, dimension="sex", metric="equal_opportunity_difference")
    assert eo.value == pytest.approx(108 / 120 - 66 / 120) and eo.breached and eo.ci_low > 0

    # The tiny group is reported as too small, with its size, and is not judged.
    tiny = FairnessMetric.objects.get(report=report, dimension="sex", group="Unknown", metric="urgent_rate")
    assert tiny.status == "too_small" and tiny.n == 5 and tiny.value is None

    alerts = {a.metric: a for a in MonitoringAlert.objects.filter(fairness_report=report)}
    assert {"demographic_parity_ratio:sex", "equal_opportunity_difference:sex"} <= set(alerts)
    assert "95% CI" in alerts["demographic_parity_ratio:sex"].message
    assert alerts["demographic_parity_ratio:sex"].emailed_to == ["compliance@example.org"]
    assert AuditEvent.objects.filter(action="monitoring.alert", object_type="FairnessReport").count() == len(alerts)

    # The latest disparities are Prometheus gauges (bounded labels: the dimension).
    from django.test import Client
    exposition = Client(HTTP_AUTHORIZATION="Bearer fairness-test-token").get("/metrics").content.decode()
    assert f'ecg_fairness_parity_ratio{{dimension="sex"}} {parity.value}' in exposition
    assert 'ecg_fairness_equal_opportunity_difference{dimension="sex"}' in exposition


def test_balanced_outcomes_raise_no_alert(db, clinician, reviewer, reference):
    _seed_group(reference, clinician, reviewer, n=200, sex="F", age=55, urgent_share=0.20, reviewed=100, tpr=0.8,
                seed=4)
    _seed_group(reference, clinician, reviewer, n=200, sex="M", age=55, urgent_share=0.21, reviewed=100, tpr=0.82,
                seed=5)
    report = _run()
    assert report.outcome == "ok"
    assert not FairnessComparison.objects.filter(report=report, breached=True).exists()
    assert not MonitoringAlert.objects.exists()
    parity = FairnessComparison.objects.get(report=report, dimension="sex", metric="demographic_parity_ratio")
    assert parity.value == pytest.approx(40 / 42) and parity.ci_low < 1 < parity.ci_high


def test_a_large_gap_in_small_groups_is_not_judged_without_evidence(db, clinician, reviewer, reference, settings):
    """Past the threshold by estimate, but the CI includes parity: reported, not alerted."""
    settings.ECG_FAIRNESS_MIN_GROUP = 10
    _seed_group(reference, clinician, reviewer, n=12, sex="F", age=55, urgent_share=2 / 12, reviewed=0, tpr=0,
                seed=6)
    _seed_group(reference, clinician, reviewer, n=12, sex="M", age=55, urgent_share=4 / 12, reviewed=0, tpr=0,
                seed=7)
    report = _run()
    parity = FairnessComparison.objects.get(report=report, dimension="sex", metric="demographic_parity_ratio")
    assert parity.value == pytest.approx(0.5) and parity.ci_high > 1 and not parity.breached
    assert not MonitoringAlert.objects.exists()


def test_groups_by_age_band_and_intersection(db, clinician, reviewer, reference):
    _seed_group(reference, clinician, reviewer, n=40, sex="F", age=30, urgent_share=0.1, reviewed=0, tpr=0, seed=8)
    _seed_group(reference, clinician, reviewer, n=40, sex="M", age=70, urgent_share=0.1, reviewed=0, tpr=0, seed=9)
    report = _run()
    groups = set(FairnessMetric.objects.filter(report=report, metric="urgent_rate").values_list("dimension", "group"))
    assert {("age_band", "<40"), ("age_band", ">65"), ("sex_age", "Female · <40"), ("sex_age", "Male · >65")} <= groups


def test_patients_of_unknown_age_form_an_unknown_band_not_a_gap(db, clinician, reviewer, reference):
    """Left out, ECGs uploaded with "Age unknown" would vanish from every age comparison unseen."""
    _seed_group(reference, clinician, reviewer, n=40, sex="F", age=math.nan, urgent_share=0.5, reviewed=20, tpr=0.5,
                seed=12)
    _seed_group(reference, clinician, reviewer, n=40, sex="M", age=70, urgent_share=0.1, reviewed=0, tpr=0, seed=13)
    report = _run()
    rows = FairnessMetric.objects.filter(report=report, group__contains=UNKNOWN_AGE_BAND)
    urgent = rows.get(dimension="age_band", group="Unknown", metric="urgent_rate")
    assert urgent.n == 40 and urgent.events == 20
    assert rows.get(dimension="sex_age", group="Female · Unknown", metric="tpr").n == 20
    assert report.n_predictions == 80


def test_validation_auc_per_group_has_bootstrap_cis(db, reference):
    report = _run()
    auc = FairnessMetric.objects.get(report=report, dimension="sex", group="Female", metric="auc")
    assert auc.status == "ok" and 0.85 < auc.value < 0.99 and auc.ci_low < auc.value < auc.ci_high
    assert auc.n == int(((reference.columns["sex"] == "F") & reference.has_label).sum())


def test_empty_window_is_insufficient_not_a_crash(db):
    report = _run()
    assert report.state == "done" and report.outcome == "insufficient" and "0 predictions" in report.stage


def test_age_bands_follow_the_configured_edges():
    bands = age_bands([40, 65])
    assert [b[0] for b in bands] == ["<40", "40–65", ">65"]
    assert [band_of(a, bands) for a in (39, 40, 65, 66, 90.0)] == ["<40", "40–65", "40–65", ">65", ">65"]
    assert band_of(None, bands) == "Unknown" and band_of(math.nan, bands) == "Unknown"
    assert [b[0] for b in age_bands([30, 50, 70])] == ["<30", "30–50", "51–70", ">70"]


def test_wilson_interval_matches_a_published_value():
    # Newcombe (1998), Table I: 81/263 -> 0.2553 to 0.3662.
    assert scores.wilson(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    # Newcombe (1998), difference example: 56/70 vs 48/80 -> 0.0524 to 0.3339.
    assert scores.newcombe_difference(56, 70, 48, 80) == pytest.approx((0.0524, 0.3339), abs=1e-4)
