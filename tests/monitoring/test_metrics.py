"""/metrics exposes the pipeline's own metrics, merged across processes, with bounded labels."""
from __future__ import annotations

import re

from clinical import services
from clinical.reviews import alerts_escalate
from tests.clinical.conftest import make_result


def _value(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)}\s+([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_metrics_count_results_failures_and_waiting_urgent_results(client, clinician, wfdb_pair, weights_dir,
                                                                   django_capture_on_commit_callbacks, settings):
    import ipaddress

    settings.ECG_METRICS_ALLOW = [ipaddress.ip_network("127.0.0.1")]  # Prometheus's address, allow-listed
    before = client.get("/metrics").content.decode()
    record = services.ecg_submit(actor=clinician, pseudonym="PT-MET", age=50, sex="F", files=wfdb_pair, fs=None)
    with django_capture_on_commit_callbacks(execute=True):
        services.inference_run(job_id=record.job.id)
    other = services.ecg_submit(actor=clinician, pseudonym="PT-MET2", age=51, sex="F", files=wfdb_pair, fs=None)
    with django_capture_on_commit_callbacks(execute=True):
        services.inference_fail(job_id=other.job.id, error="boom")
    urgent = services.ecg_submit(actor=clinician, pseudonym="PT-MET3", age=52, sex="F", files=wfdb_pair, fs=None)
    make_result(urgent, "immediate")
    alerts_escalate()
    after = client.get("/metrics").content.decode()
    assert _value(after, "ecg_inference_seconds_count") == _value(before, "ecg_inference_seconds_count") + 1
    assert _value(after, "ecg_queue_wait_seconds_count") >= _value(before, "ecg_queue_wait_seconds_count") + 1
    assert _value(after, "ecg_job_failures_total") == _value(before, "ecg_job_failures_total") + 1
    assert _value(after, "ecg_unacknowledged_urgent_results") >= 1
    urgency = record.prediction.top_urgency
    top = max(record.prediction.superclass, key=record.prediction.superclass.get)
    label = f'{{superclass="{top}",urgency="{urgency}"}}'
    assert _value(after, "ecg_predictions_total", label) == _value(before, "ecg_predictions_total", label) + 1
    assert "django_http_requests_latency_seconds_by_view_method" in after
    # Labels are bounded: no record ids anywhere in the exposition.
    assert str(record.public_id) not in after
