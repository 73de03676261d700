"""Compliance puts a candidate in shadow from the Models page and reads its comparison (monitoring.shadow)."""
from __future__ import annotations

from pathlib import Path

import pytest

from clinical import demo, services
from clinical.models import Prediction
from clinical.reviews import result_acknowledge
from clinical.roles import roles_ensure
from monitoring import registry, tasks
from monitoring.models import ShadowPrediction
from tests.browser.conftest import CHROMIUM, log_in, person, shot
from tests.monitoring.test_model_registry import _export

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium")
N = 30


def test_compliance_shadows_a_candidate_and_reads_the_comparison(live_server, page, tmp_path, settings, monkeypatch):
    settings.ECG_MODELS_DIR = tmp_path / "served"
    registry._materialised.cache_clear()
    roles_ensure()
    officer = person("comp-one", "compliance")
    clinician, reviewer = person("dr-one", "clinician"), person("rev-one", "reviewer")
    candidate = registry.model_version_import(path=_export(tmp_path / "export", "resnet1d-ens3-next"), actor=officer)
    # The shadow's worker, in this process: its task runs as the serving result commits (no quiet time waited for).
    settings.ECG_SHADOW_QUIET_S = 0.0
    monkeypatch.setattr(tasks.shadow_inference, "apply_async",
                        lambda args, **kw: tasks.shadow_inference.apply(args=args))
    base = live_server.url

    log_in(page, base, "comp-one")
    page.goto(f"{base}/monitoring/models/")
    page.locator(f'#model-shadow form[data-version="{candidate.version}"] button').click()
    page.wait_for_selector("#model-shadow")
    assert page.inner_text("#shadow-version") == candidate.version

    for ecg in demo.population(N):
        upload = {"csv": ("ecg.csv", demo.as_csv(ecg.signal(500)))}
        record = services.ecg_submit(actor=clinician, pseudonym=ecg.pseudonym, age=ecg.age, sex=ecg.sex,
                                     files=upload, fs=500, queue_inference=False, evidence=False)
        services.inference_run(job_id=record.job.id)
    assert ShadowPrediction.objects.filter(version=candidate).count() == N
    for p in Prediction.objects.order_by("id")[:20]:
        result_acknowledge(prediction=p, reviewer=reviewer, verdict="agree", note="Checked, agree.")

    page.reload()
    page.click("#shadow-comparison-link")
    page.wait_for_selector("#agreement")
    assert page.inner_text("#comparison-version") == candidate.version
    assert page.inner_text("#n-shadowed") == str(N)
    assert page.inner_text("#urgency-changed") == "0"
    assert "100.0%" in page.inner_text("#agreement")
    assert page.locator("#outcomes tbody tr").count() == 10  # 5 classes x 2 models
    assert page.locator("#drift tbody tr").count() == 5
    shot(page, "shadow-comparison")
    assert not page.js_errors
