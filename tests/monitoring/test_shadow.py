"""Shadow mode (issue 20): a candidate runs beside the serving model on every new ECG, on its own queue; its outputs
are stored but never shown to clinicians; compliance compares, promotes with sign-off, rolls back."""
from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from clinical import demo, services
from clinical.models import AuditEvent, EcgRecord, Prediction
from clinical.reviews import result_acknowledge
from clinical.tokens import api_token_create
from ecgapp.celery import app as celery_app
from mlcore import metrics
from monitoring import registry, shadow, tasks
from monitoring.models import ModelVersion, ShadowPrediction
from tests.monitoring.test_model_registry import (  # noqa: F401  (fixtures)
    PW,
    _export,
    _image_version,
    candidate_dir,
    models_in_tmp,
    second_officer,
)

N_UPLOADS = 50
N_REVIEWED = 30


@pytest.fixture
def shadow_eager(monkeypatch, settings):
    """The shadow task runs in this process when the serving result's transaction commits (as its worker would once
    uploads pause: no quiet time is waited for here)."""
    settings.ECG_SHADOW_QUIET_S = 0.0
    sent = []

    def apply_async(args, **kwargs):
        sent.append(args)
        return tasks.shadow_inference.apply(args=args)

    monkeypatch.setattr(tasks.shadow_inference, "apply_async", apply_async)
    return sent


def _analyse(clinician, ecg: demo.DemoEcg, django_capture_on_commit_callbacks):
    upload = {"csv": ("ecg.csv", demo.as_csv(ecg.signal(500)))}
    # No evidence: its computation (another queue, no worker here) would stay pending, and the shadow waits for it.
    record = services.ecg_submit(actor=clinician, pseudonym=ecg.pseudonym, age=ecg.age, sex=ecg.sex, files=upload,
                                 fs=500, queue_inference=False, evidence=False)
    with django_capture_on_commit_callbacks(execute=True):
        services.inference_run(job_id=record.job.id)
    return record


def test_the_shadow_queue_is_declared_routed_and_consumed_by_the_embedded_worker():
    assert "shadow" in {q.name for q in celery_app.conf.task_queues}
    assert celery_app.conf.task_routes["monitoring.tasks.shadow_inference"] == {"queue": "shadow"}
    from clinical.management.commands import serve

    assert "inference,evidence,monitoring,celery,shadow" in open(serve.__file__).read()


def test_shadow_fifty_uploads_compare_promote_and_roll_back(
        candidate_dir, compliance_officer, second_officer, clinician, reviewer, client,  # noqa: F811
        shadow_eager, django_capture_on_commit_callbacks):
    image = _image_version()
    candidate = registry.model_version_import(path=candidate_dir, actor=compliance_officer)

    # Only compliance starts a shadow; one at a time; a serving version cannot be one.
    with pytest.raises(Exception, match="Only compliance"):
        registry.model_shadow_start(version=candidate, user=clinician)
    with pytest.raises(Exception, match="only a candidate or a retired"):
        registry.model_shadow_start(version=ModelVersion.objects.get(version=image), user=compliance_officer)
    client.force_login(compliance_officer)
    assert client.post(f"/monitoring/models/{candidate.pk}/shadow/start/").status_code == 302
    candidate.refresh_from_db()
    assert candidate.state == "shadow" and registry.shadow_version() == candidate
    other = registry.model_version_import(path=_export(candidate_dir.parent / "other", "resnet1d-ens3-other"),
                                          actor=compliance_officer)
    with pytest.raises(Exception, match="already in shadow"):
        registry.model_shadow_start(version=other, user=compliance_officer)
    page = client.get("/monitoring/models/").content.decode()
    assert f'id="shadow-version">{candidate.version}<' in page and 'id="stop-shadow"' in page

    # 50 uploads: each analysed by the serving model (stored, shown) and by the shadow (stored beside it).
    records = [_analyse(clinician, ecg, django_capture_on_commit_callbacks) for ecg in demo.population(N_UPLOADS)]
    assert len(shadow_eager) == N_UPLOADS
    predictions = list(Prediction.objects.filter(record__in=records).order_by("id"))
    assert len(predictions) == N_UPLOADS and {p.model_version for p in predictions} == {image}
    rows = {sp.prediction_id: sp for sp in ShadowPrediction.objects.filter(version=candidate)}
    assert set(rows) == {p.pk for p in predictions}
    for p in predictions:  # the same weights under another name: the same code path gives the same outputs
        sp = rows[p.pk]
        assert sp.superclass == pytest.approx(p.superclass, abs=1e-4)
        assert set(sp.flagged) == {f.overlay_key for f in p.findings.all() if f.head != "measurement"}
        assert sp.top_urgency == p.top_urgency and sp.rule_ids == list(
            p.recommendations.order_by("rank").values_list("rule_id", flat=True))
        assert sp.inference_ms > 0
    # Idempotent: a second delivery stores nothing more.
    assert tasks.shadow_inference.apply(args=(candidate.pk, predictions[0].pk)).get() == "stored"
    assert ShadowPrediction.objects.count() == N_UPLOADS

    # Clinicians see only the serving result: page and API carry nothing of the shadow.
    shown = records[0]
    client.force_login(clinician)
    html = client.get(f"/ecgs/{shown.public_id}/").content.decode()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=clinician, name='ehr')[1]}")
    body = api.get(f"/api/v1/ecgs/{shown.public_id}/result/").content.decode()
    assert image in body
    for text in (html, body):
        assert candidate.version not in text and "shadow" not in text.lower().replace("box-shadow", "")
    assert api.get(f"/api/v1/models/{candidate.version}/comparison/").status_code == 403

    # A reviewer acknowledges 30 results; one shadow row is made to differ, to see the counts follow.
    for p in predictions[:N_REVIEWED]:
        result_acknowledge(prediction=p, reviewer=reviewer, verdict="agree", note="Checked, agree.")
    odd = rows[predictions[-1].pk]
    serving_odd = set(odd.flagged)
    odd.flagged = sorted(serving_odd ^ {"superclass:HYP"})
    odd.top_urgency = "immediate" if predictions[-1].top_urgency != "immediate" else "routine"
    odd.save()

    c = shadow.comparison(candidate)
    assert c["n_shadowed"] == N_UPLOADS and c["serving_versions"] == [image]
    agreement = {r["label"]: r for r in c["agreement"]}
    hyp = agreement["superclass:HYP"]
    assert hyp["only_shadow"] + hyp["only_serving"] == 1 and hyp["agreement_pct"] == pytest.approx(98.0)
    assert sum(hyp[k] for k in ("both", "neither", "only_serving", "only_shadow")) == N_UPLOADS
    for label, r in agreement.items():
        if label != "superclass:HYP":
            assert r["only_serving"] == r["only_shadow"] == 0 and r["agreement_pct"] == 100.0
            assert r["both"] == sum(1 for p in predictions if label in {f.overlay_key for f in p.findings.all()})
    assert c["urgency_changes"]["changed"] == 1
    assert sum(sum(r["counts"]) for r in c["urgency_changes"]["rows"]) == N_UPLOADS

    outcomes = c["outcomes"]
    assert outcomes["n_reviewed"] == N_REVIEWED
    reviewed = predictions[:N_REVIEWED]
    for row in outcomes["labels"]:
        code = row["label"]
        y = np.array([1 if f"superclass:{code}" in {f.overlay_key for f in p.findings.all()} else 0
                      for p in reviewed])  # "agree" everywhere: flagged = positive, unflagged = negative
        for side in ("serving", "shadow"):
            m = row[side]
            assert (m["n_positive"], m["n_negative"]) == (int(y.sum()), int(len(y) - y.sum()))
            if min(y.sum(), len(y) - y.sum()) < shadow.MIN_OUTCOMES:
                assert m["too_few"] and m["auc"] is None
            else:
                expected = metrics.auc(y, np.array([p.superclass[code] for p in reviewed]))
                assert m["auc"] == pytest.approx(expected, abs=2e-3)
                assert m["auc_ci"][0] <= m["auc"] <= m["auc_ci"][1]
                assert m["sensitivity"] == m["specificity"] == 1.0  # the serving model's own calls, agreed
    assert any(not row["serving"]["too_few"] for row in outcomes["labels"])

    drift = {r["label"]: r for r in c["drift"]["labels"]}
    assert set(drift) == {"NORM", "MI", "STTC", "CD", "HYP"}
    assert all(r["n"] == N_UPLOADS and sum(r["current"]) == N_UPLOADS and 0 <= r["p_value"] <= 1
               for r in drift.values())
    assert c["latency_ms"]["shadow"]["n"] == N_UPLOADS and c["latency_ms"]["serving"]["p95"] > 0

    # The page and the API say the same, to compliance (session) and to a monitoring token.
    client.force_login(compliance_officer)
    page = client.get(f"/monitoring/models/{candidate.pk}/comparison/").content.decode()
    assert f'id="n-shadowed">{N_UPLOADS}<' in page and 'id="urgency-changed">1<' in page
    assert 'data-label="superclass:HYP"' in page and 'id="drift"' in page and 'id="latency"' in page
    assert f"/monitoring/models/{candidate.pk}/comparison/" in client.get("/monitoring/models/").content.decode()
    token = api_token_create(user=compliance_officer, name="compliance-dash")[1]
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = api.get(f"/api/v1/models/{candidate.version}/comparison/")
    assert response.status_code == 200
    got = response.json()
    assert got["n_shadowed"] == N_UPLOADS and got["urgency_changes"]["changed"] == 1
    assert got["agreement"] == c["agreement"]
    assert api.get("/api/v1/models/no-such-version/comparison/").status_code == 404

    # Promote the shadow with two signatures: it leaves shadow when it serves; new ECGs carry its version.
    change = registry.model_promote(version=candidate, user=compliance_officer, password=PW,
                                    reason="Agrees with serving on 50 live ECGs; same AUC on reviewed outcomes.")
    registry.model_change_approve(change=change, user=second_officer, password=PW)
    candidate.refresh_from_db()
    assert candidate.state == "serving" and registry.shadow_version() is None
    after = _analyse(clinician, demo.population(1)[0], django_capture_on_commit_callbacks)
    assert Prediction.objects.get(record=after).model_version == candidate.version
    assert len(shadow_eager) == N_UPLOADS  # no shadow any more: nothing sent

    # Roll back in one step; the image's version serves again.
    registry.model_rollback(user=compliance_officer, password=PW, reason="Back to the approved model for now.")
    back = _analyse(clinician, demo.population(2)[1], django_capture_on_commit_callbacks)
    assert Prediction.objects.get(record=back).model_version == image
    candidate.refresh_from_db()
    assert candidate.state == "retired"

    # Every step audited, in order.
    steps = [(e.action, e.object_id) for e in AuditEvent.objects.filter(action__startswith="model.").order_by("id")]
    assert steps == [
        (registry.IMPORTED, image), (registry.IMPORTED, candidate.version),
        (registry.SHADOW_STARTED, candidate.version), (registry.IMPORTED, other.version),
        (registry.REQUESTED, candidate.version), (registry.PROMOTED, candidate.version),
        (registry.REQUESTED, image), (registry.ROLLED_BACK, image)]
    completes = AuditEvent.objects.filter(action="inference.complete").order_by("id")
    assert [e.details["model_version"] for e in completes] == [image] * N_UPLOADS + [candidate.version, image]


def test_stop_shadow_and_a_retired_version_can_shadow_again(candidate_dir, compliance_officer, client):  # noqa: F811
    candidate = registry.model_version_import(path=candidate_dir, actor=compliance_officer)
    registry.model_shadow_start(version=candidate, user=compliance_officer)
    client.force_login(compliance_officer)
    assert client.post(f"/monitoring/models/{candidate.pk}/shadow/stop/").status_code == 302
    candidate.refresh_from_db()
    assert candidate.state == "candidate" and registry.shadow_version() is None
    assert AuditEvent.objects.filter(action=registry.SHADOW_STOPPED, object_id=candidate.version).exists()
    with pytest.raises(Exception, match="not in shadow"):
        registry.model_shadow_stop(version=candidate, user=compliance_officer)
    candidate.state = "retired"
    candidate.save()
    assert registry.model_shadow_start(version=candidate, user=compliance_officer).state == "shadow"


def test_a_failing_shadow_never_touches_the_serving_result(
        candidate_dir, compliance_officer, clinician, monkeypatch, shadow_eager,  # noqa: F811
        django_capture_on_commit_callbacks):
    candidate = registry.model_version_import(path=candidate_dir, actor=compliance_officer)
    registry.model_shadow_start(version=candidate, user=compliance_officer)

    def broken(version):
        raise RuntimeError("shadow weights unreadable")

    monkeypatch.setattr(shadow, "shadow_ensemble", broken)
    ecg = demo.population(1)[0]
    record = _analyse(clinician, ecg, django_capture_on_commit_callbacks)
    record.job.refresh_from_db()
    assert record.job.state == "done" and Prediction.objects.filter(record=record).exists()
    assert not ShadowPrediction.objects.exists() and len(shadow_eager) == 1

    # Nor does a broker that refuses the shadow's message.
    def refused(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.shadow_inference, "apply_async", refused)
    record2 = _analyse(clinician, ecg, django_capture_on_commit_callbacks)
    record2.job.refresh_from_db()
    assert record2.job.state == "done" and Prediction.objects.filter(record=record2).exists()


def test_the_shadow_waits_while_serving_work_is_in_hand_then_runs(
        candidate_dir, compliance_officer, clinician, monkeypatch, settings,  # noqa: F811
        django_capture_on_commit_callbacks):
    """An ECG queued (or a result's evidence being made) sends the shadow's analysis back to its queue for later,
    waits doubling from 5 s to 60 s, without computing anything; once the serving work is done it runs; after
    ECG_SHADOW_DEFER_MAX_S of waiting it runs regardless (a row a dead worker left behind holds nothing for good)."""
    from clinical.models import InferenceJob

    candidate = registry.model_version_import(path=candidate_dir, actor=compliance_officer)
    registry.model_shadow_start(version=candidate, user=compliance_officer)
    done = _analyse(clinician, demo.population(1)[0], django_capture_on_commit_callbacks)
    prediction = Prediction.objects.get(record=done)
    # Traffic flowing: an ECG uploaded within the quiet time is serving work, though its analysis is done.
    assert shadow.serving_busy()
    EcgRecord.objects.update(uploaded_at=timezone.now() - timedelta(seconds=settings.ECG_SHADOW_QUIET_S + 1))
    assert not shadow.serving_busy()
    settings.ECG_SHADOW_QUIET_S = 0.0  # from here on, the other kinds of serving work
    waiting = services.ecg_submit(actor=clinician, pseudonym="PT-WAIT", age=50, sex="F", fs=500,
                                  files={"csv": ("ecg.csv", demo.as_csv(demo.population(2)[1].signal(500)))},
                                  queue_inference=False)
    assert waiting.job.state == InferenceJob.State.QUEUED and shadow.serving_busy()

    resent = []
    monkeypatch.setattr(tasks.shadow_inference, "apply_async", lambda args, kwargs=None, **kw: resent.append(
        (args, kwargs, kw["countdown"])))
    monkeypatch.setattr(shadow, "shadow_ensemble", lambda version: pytest.fail("computed while serving was busy"))
    waited = 0.0
    for expected in (5, 5, 10, 20, 40, 60, 60):
        assert tasks.shadow_inference.apply(args=(candidate.pk, prediction.pk),
                                            kwargs={"deferred_s": waited}).get() == "deferred"
        args, kwargs, countdown = resent[-1]
        assert args == (candidate.pk, prediction.pk) and countdown == expected
        assert kwargs == {"deferred_s": waited + expected}
        waited = kwargs["deferred_s"]
    assert not ShadowPrediction.objects.exists()

    # Running jobs count as busy too; a finished one does not.
    InferenceJob.objects.filter(pk=waiting.job.pk).update(state=InferenceJob.State.RUNNING)
    assert shadow.serving_busy()
    InferenceJob.objects.filter(pk=waiting.job.pk).update(state=InferenceJob.State.DONE)
    assert not shadow.serving_busy()
    # Evidence being computed for a recent result is serving work; one pending since before the longest wait is not.
    Prediction.objects.filter(pk=prediction.pk).update(evidence_state=Prediction.EvidenceState.PENDING)
    assert shadow.serving_busy()
    settings.ECG_SHADOW_DEFER_MAX_S = 0.0
    assert not shadow.serving_busy()
    settings.ECG_SHADOW_DEFER_MAX_S = 1800.0
    Prediction.objects.filter(pk=prediction.pk).update(evidence_state=Prediction.EvidenceState.READY)

    monkeypatch.undo()
    assert tasks.shadow_inference.apply(args=(candidate.pk, prediction.pk), kwargs={"deferred_s": waited}).get() \
        == "stored"

    # Waited its longest: it runs even though an ECG is queued.
    InferenceJob.objects.filter(pk=waiting.job.pk).update(state=InferenceJob.State.QUEUED)
    ShadowPrediction.objects.all().delete()
    assert tasks.shadow_inference.apply(args=(candidate.pk, prediction.pk), kwargs={"deferred_s": 1800.0}).get() \
        == "stored"

    # A worker of the shadow queue alone waits in the task instead, looking again every second, then runs.
    ShadowPrediction.objects.all().delete()
    assert not shadow.dedicated_worker(celery_app)  # here, outside a worker, Celery lists every queue
    monkeypatch.setattr(shadow, "dedicated_worker", lambda app: True)
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        if len(slept) == 3:  # the queued ECG is analysed meanwhile
            InferenceJob.objects.filter(pk=waiting.job.pk).update(state=InferenceJob.State.DONE)

    monkeypatch.setattr(shadow.time, "sleep", sleep)
    monkeypatch.setattr(tasks.shadow_inference, "apply_async", lambda *a, **kw: pytest.fail("sent again"))
    assert tasks.shadow_inference.apply(args=(candidate.pk, prediction.pk)).get() == "stored"
    assert slept == [shadow.POLL_S] * 3
    # and gives up waiting after the longest wait.
    InferenceJob.objects.filter(pk=waiting.job.pk).update(state=InferenceJob.State.QUEUED)
    ShadowPrediction.objects.all().delete()
    settings.ECG_SHADOW_DEFER_MAX_S = 4.0
    slept.clear()
    monkeypatch.setattr(shadow.time, "sleep", slept.append)  # the ECG stays queued
    assert tasks.shadow_inference.apply(args=(candidate.pk, prediction.pk)).get() == "stored"
    assert slept == [shadow.POLL_S] * 4
