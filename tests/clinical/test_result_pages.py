"""Result, status, retry and list pages, and who may see them."""
from __future__ import annotations

import json

from django.urls import reverse

from clinical import services
from clinical.models import AuditEvent, Recommendation
from tests.clinical.conftest import make_result


def upload(user, files):
    return services.ecg_submit(actor=user, pseudonym="PT-9", age=70, sex="F", files=files, fs=None)


def test_result_page_shows_plot_findings_and_ranked_actions(client, clinician, wfdb_pair, weights_dir):
    record = upload(clinician, wfdb_pair)
    services.inference_run(job_id=record.job.id)
    client.force_login(clinician)
    page = client.get(reverse("clinical:ecg-detail", args=[record.public_id]))
    html = page.content.decode()
    assert page.status_code == 200 and "Analysis complete" in html
    assert 'id="actions"' in html
    assert any(f'class="action u-{u}"' in html for u in ("immediate", "urgent", "routine"))
    plot = json.loads(html.split('id="ecg-plot-data" type="application/json">')[1].split("</script>")[0])
    assert len(plot["figure"]["data"]) >= 14
    for f in record.prediction.findings.exclude(head="measurement")[: services.MAX_EXPLAINED]:
        assert f.overlay_key in plot["overlay_traces"]
    assert AuditEvent.objects.filter(action="ecg.view", actor=clinician).count() == 1


def test_caveats_are_shown_apart_from_the_ranked_actions(client, clinician, wfdb_pair):
    record = upload(clinician, wfdb_pair)
    pred = make_result(record, "urgent")
    Recommendation.objects.create(prediction=pred, rank=1, action="Models disagree about AFIB: over-read",
                                  kind="caveat", urgency="routine", reasoning="r", source="s",
                                  triggered_by="statement:AFIB", confidence=0.5, table_version="t",
                                  rule_id="caveat:MODELS_DISAGREE")
    client.force_login(clinician)
    html = client.get(reverse("clinical:ecg-detail", args=[record.public_id])).content.decode()
    actions = html.split('<ol class="actions">')[1].split("</ol>")[0]
    caveats = html.split('<ul class="caveats"')[1].split("</ul>")[0]
    assert "Act now" in actions and "Models disagree" not in actions
    assert "Models disagree about AFIB" in caveats and "u-routine" not in caveats


def test_pending_page_polls_status_until_done(client, clinician, wfdb_pair):
    record = upload(clinician, wfdb_pair)
    client.force_login(clinician)
    html = client.get(reverse("clinical:ecg-detail", args=[record.public_id])).content.decode()
    assert 'data-state="queued"' in html and "job-progress" in html
    status = client.get(reverse("clinical:ecg-status", args=[record.public_id])).json()
    assert status["state"] == "queued" and status["progress"] == 0


def test_failed_job_shows_reason_and_retry_requeues(client, clinician, wfdb_pair, django_capture_on_commit_callbacks):
    record = upload(clinician, wfdb_pair)
    services.inference_fail(job_id=record.job.id, error="Worker lost the model file")
    client.force_login(clinician)
    html = client.get(reverse("clinical:ecg-detail", args=[record.public_id])).content.decode()
    assert "Worker lost the model file" in html and 'id="retry"' in html
    with django_capture_on_commit_callbacks() as callbacks:
        resp = client.post(reverse("clinical:ecg-retry", args=[record.public_id]))
    assert resp.status_code == 302 and len(callbacks) == 1
    record.job.refresh_from_db()
    assert record.job.state == "queued"


def test_a_clinician_cannot_see_another_clinicians_ecg_but_a_reviewer_can(client, clinician, other_clinician,
                                                                          reviewer, wfdb_pair):
    record = upload(clinician, wfdb_pair)
    url = reverse("clinical:ecg-detail", args=[record.public_id])
    client.force_login(other_clinician)
    assert client.get(url).status_code == 404
    assert "PT-9" not in client.get(reverse("clinical:ecg-list")).content.decode()
    client.force_login(reviewer)
    assert client.get(url).status_code == 200


def test_health_endpoints(client, weights_dir, db):
    from django.utils import timezone

    from monitoring.models import WorkerHeartbeat

    assert client.get("/health/live").status_code == 200
    WorkerHeartbeat.objects.create(hostname="w@h", pid=1, queues=["inference"], started_at=timezone.now(),
                                   seen_at=timezone.now())
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["problems"] == []
    assert ready.json()["model_version"]


def test_ready_names_missing_weights(client, settings, tmp_path, db):
    settings.ECG_WEIGHTS_DIR = str(tmp_path)
    ready = client.get("/health/ready")
    assert ready.status_code == 503 and any("model weights" in p for p in ready.json()["problems"])


def test_not_assessed_is_listed_on_the_result_page_before_and_after_the_analysis(client, clinician, wfdb_pair,
                                                                                weights_dir):
    record = upload(clinician, wfdb_pair)
    client.force_login(clinician)
    url = reverse("clinical:ecg-detail", args=[record.public_id])
    pending = client.get(url).content.decode()
    section = pending.split('id="not-assessed"')[1].split("</section>")[0]
    assert "Not assessed by this system" in section
    for text in ("Pacemaker function", "earlier ECGs", "outside the analysed 10 s", "children"):
        assert text in section
    services.inference_run(job_id=record.job.id)
    done = client.get(url).content.decode().split('id="not-assessed"')[1].split("</section>")[0]
    assert "Statements without a validated operating point" in done and "3AVB" in done
