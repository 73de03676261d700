"""Readiness sees the workers through their heartbeat rows (either broker)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from clinical.models import InferenceJob
from monitoring import workers
from monitoring.models import WorkerHeartbeat

pytestmark = pytest.mark.django_db


@pytest.fixture
def make_record():
    from django.contrib.auth.models import User

    from clinical import demo
    from clinical.services import ecg_submit

    user = User.objects.create_user("worker-test")

    def make():
        sig = demo.synthesize(demo.CASES[0], fs=500, seed=1)
        return ecg_submit(actor=user, pseudonym="PT-W1", age=50, sex="F",
                          files={"csv": ("a.csv", demo.as_csv(sig))}, fs=500)
    return make


def beat(seconds_ago: float, queues=("inference",), task_seconds_ago: float | None = None, name="w1@host"):
    now = timezone.now()
    return WorkerHeartbeat.objects.create(
        hostname=name, pid=1, queues=list(queues), started_at=now - timedelta(hours=1),
        seen_at=now - timedelta(seconds=seconds_ago),
        last_task_at=None if task_seconds_ago is None else now - timedelta(seconds=task_seconds_ago))


def queued_job(record, waited_s: float) -> InferenceJob:
    job = record.job
    InferenceJob.objects.filter(pk=job.pk).update(state="queued",
                                                  created_at=timezone.now() - timedelta(seconds=waited_s))
    return job


def test_no_worker_ever_is_not_ready(client, weights_dir):
    r = client.get("/health/ready")
    assert r.status_code == 503 and r.json()["problems"] == ["no analysis worker is running"]


def test_fresh_heartbeat_is_ready(client, weights_dir):
    beat(2)
    r = client.get("/health/ready")
    assert r.status_code == 200, r.json()


def test_stale_heartbeat_names_when_it_was_last_seen(client, weights_dir, settings):
    settings.ECG_WORKER_STALE_SECONDS = 30
    beat(95)
    r = client.get("/health/ready")
    assert r.status_code == 503
    assert r.json()["problems"] == ["no analysis worker: the last one was seen 95 s ago (limit 30 s)"]


def test_a_worker_of_other_queues_only_does_not_count(client, weights_dir):
    beat(1, queues=("monitoring", "celery"))
    assert client.get("/health/ready").status_code == 503


def test_stuck_worker_with_an_old_queued_job_is_not_ready(client, weights_dir, settings, make_record):
    settings.ECG_QUEUE_MAX_WAIT_SECONDS = 300
    beat(1, task_seconds_ago=900)  # alive, but has not taken a job for 15 min
    queued_job(make_record(), waited_s=400)
    problems = workers.readiness_problems()
    assert len(problems) == 1 and problems[0].startswith("the oldest queued ECG has waited 400 s (limit 300 s)")
    assert "no worker has taken a job for 900 s" in problems[0]


def test_busy_worker_with_a_long_queue_is_ready(weights_dir, settings, make_record):
    settings.ECG_QUEUE_MAX_WAIT_SECONDS = 300
    beat(1, task_seconds_ago=3)  # a long queue, but it is being worked through
    queued_job(make_record(), waited_s=400)
    assert workers.readiness_problems() == []


def test_recent_queued_job_with_idle_worker_is_ready(weights_dir, make_record):
    beat(1)
    queued_job(make_record(), waited_s=5)
    assert workers.readiness_problems() == []


def test_worker_gone_clears_its_row():
    beat(1, name="embedded@h")
    workers.worker_gone("embedded@h")
    assert not WorkerHeartbeat.objects.exists()
