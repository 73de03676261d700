"""Compliance staff read drift and fairness reports, run one on demand and watch its progress; reviewers see alerts."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from clinical.roles import roles_ensure
from mlcore.reference import Reference
from monitoring.drift import drift_report_create, drift_report_run
from monitoring.fairness import fairness_report_create, fairness_report_run
from monitoring.models import FairnessReport
from tests.browser.conftest import CHROMIUM, log_in, person, shot
from tests.monitoring.factories import embeddings_for, reference_sample, seed_predictions, seed_reviews

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium")
def seed_population(uploader: User, reviewer: User) -> None:
    """A month of results in which women aged over 65 get urgent actions less often and have MIs missed more."""
    ref = Reference.load(settings.ECG_WEIGHTS_DIR)
    groups = [("F", 30, 0.18, 0.85), ("F", 52, 0.17, 0.8), ("F", 74, 0.07, 0.5),
              ("M", 30, 0.2, 0.85), ("M", 52, 0.22, 0.85), ("M", 74, 0.26, 0.9)]
    for g, (sex, age, urgent_share, tpr) in enumerate(groups):
        n = 150
        cols = reference_sample(ref, n, seed=g)
        cols["sex"] = np.array([sex] * n, dtype=object)
        cols["age"] = np.full(n, float(age)) + np.random.default_rng(g).integers(-8, 9, n)
        if age > 65:
            cols["noise"] = cols["noise"] * 2.5  # an older ward with noisier recordings: drift in "noise" and "age"
        urgency = ["urgent" if i < n * urgent_share else "routine" for i in range(n)]
        predictions = seed_predictions(cols, uploader=uploader, urgency=urgency,
                                       embeddings=embeddings_for(ref, cols, seed=g))
        reviewed = 60
        seed_reviews(predictions[:reviewed], [{"MI": "tp" if i < reviewed * tpr else "fn", "NORM": "tn"}
                                              for i in range(reviewed)], reviewer)


def test_compliance_reads_reports_runs_one_and_reviewers_see_the_alert(live_server, celery_worker_thread, page,
                                                                        settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    roles_ensure()
    uploader = person("dr-up", "clinician")
    reviewer = person("rev-mon", "reviewer")
    person("comp-mon", "compliance")
    seed_population(uploader, reviewer)
    # Two earlier daily reports, for the trend chart.
    for days in (2, 1):
        earlier = fairness_report_run(report_id=fairness_report_create().pk)
        FairnessReport.objects.filter(pk=earlier.pk).update(created_at=timezone.now() - timedelta(days=days))
    fairness = fairness_report_run(report_id=fairness_report_create().pk)
    drift = drift_report_run(report_id=drift_report_create().pk)
    assert fairness.outcome == "breach" and drift.outcome == "drift"
    base = live_server.url

    log_in(page, base, "comp-mon")
    page.click("#nav-monitoring")
    page.wait_for_selector("#monitoring-alerts")
    assert "Demographic parity ratio" in page.inner_text("#monitoring-alerts") or \
        "parity ratio" in page.inner_text("#monitoring-alerts")
    shot(page, "monitoring-overview")

    page.goto(f"{base}/monitoring/fairness/{fairness.pk}/")
    page.wait_for_selector("#chart-urgent_rate .main-svg")
    page.wait_for_selector("#chart-auc .main-svg")
    assert "Breached" in page.inner_text("#fairness-comparisons")
    shot(page, "fairness-report")
    page.goto(f"{base}/monitoring/fairness/")
    page.wait_for_selector("#trend-demographic_parity_ratio .main-svg")
    shot(page, "fairness-trend")

    page.goto(f"{base}/monitoring/drift/{drift.pk}/")
    page.wait_for_selector("#drift-features")
    drifted = page.locator("#drift-features tr.drifted td:first-child").all_inner_texts()
    assert set(drifted) >= {"age", "noise"}
    shot(page, "drift-report")

    page.goto(f"{base}/monitoring/model-card/")
    page.wait_for_selector(".main-svg")
    shot(page, "model-card")

    # On demand: the report is queued, the page shows its progress, then its result.
    page.goto(f"{base}/monitoring/drift/")
    page.click("#run-drift")
    page.wait_for_selector("#report-progress, #drift-summary")
    page.wait_for_selector("#drift-summary", timeout=120_000)
    assert "features drifted" in page.inner_text("#drift-summary")
    assert page.js_errors == []

    page.context.clear_cookies()
    log_in(page, base, "rev-mon")
    page.wait_for_selector("#monitoring-banner")
    assert "Compliance staff have been told" in page.inner_text("#monitoring-banner")
    shot(page, "reviewer-monitoring-banner")
