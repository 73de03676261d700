"""Faults on the real services: a worker killed mid-inference, Redis down during uploads, a PostgreSQL restart,
and inputs that crash the model code. Every test counts the stored predictions exactly."""
from __future__ import annotations

import os
import signal
import time

import pytest

from clinical import demo
from tests.faults.poison_app import CRASH_MV, RAISE_MV
from tests.faults.stack import Stack, available, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.skipif(available() is not None, reason=str(available()))]


@pytest.fixture
def stack():
    s = Stack()
    try:
        s.start_postgres()
        s.start_redis()
        s.prepare()
        yield s
    finally:
        s.close()


def _predictions_per_record(stack: Stack) -> list[int]:
    return [n for (n,) in stack.sql(
        "SELECT count(p.id) FROM clinical_ecgrecord r LEFT JOIN clinical_prediction p ON p.record_id = r.id "
        "GROUP BY r.id")]


def _picked_up_again(stack: Stack, job_id: int, attempts: int) -> tuple[str, int] | None:
    state, now = stack.sql("SELECT state, attempts FROM clinical_inferencejob WHERE id = %s", (job_id,))[0]
    return (state, now) if now > attempts or state == "done" else None


def test_worker_killed_mid_inference_redelivers_and_completes_once(stack):
    stack.start_web()
    stack.start_worker()
    n = 8
    for i in range(n):
        stack.submit(i)
    # Kill the process running an analysis, while it runs (up to three tries if one finished first).
    interrupted = 0
    for _ in range(3):
        running = wait_for(lambda: stack.sql("SELECT id, attempts FROM clinical_inferencejob "
                                             "WHERE state = 'running'"), 60, "a running job", interval=0.01)
        for child in stack.worker_children():
            os.kill(child, signal.SIGKILL)
        job_id, attempts = running[0]
        state, now = wait_for(lambda j=job_id, a=attempts: _picked_up_again(stack, j, a), 60,
                              "the job to be picked up again")
        if now > attempts:  # started again after the kill: the kill landed mid-analysis
            interrupted += 1
            break
    assert interrupted == 1, "no kill landed during an analysis"
    assert stack.wait_jobs_finished(n, 120) == {"done": n}
    # Nothing lost, nothing doubled: one prediction per ECG, and the interrupted job ran again.
    assert _predictions_per_record(stack) == [1] * n
    assert stack.sql("SELECT max(attempts) FROM clinical_inferencejob")[0][0] >= 2
    assert stack.procs["worker"].poll() is None  # the worker itself lives on, with a new child


def test_uploads_while_redis_is_down_are_kept_and_sent_when_it_returns(stack):
    stack.start_web()
    stack.start_worker()
    stack.start_worker("ops", queues="monitoring")  # runs the sweeper that beat schedules
    stack.start_beat()
    stack.submit(0)
    stack.wait_jobs_finished(1, 60)
    stack.stop_redis()
    started = time.monotonic()
    for i in range(1, 6):
        stack.submit(i)  # accepted (202) although the broker is down
    assert time.monotonic() - started < 20  # a short publish retry, not a hung upload
    assert stack.sql("SELECT count(*) FROM clinical_inferencejob WHERE state = 'queued' AND enqueued_at IS NULL"
                     )[0][0] == 5
    stack.start_redis()  # an empty Redis, as after a restart without persistence
    assert stack.wait_jobs_finished(6, 150) == {"done": 6}
    assert _predictions_per_record(stack) == [1] * 6


def test_web_and_worker_recover_from_a_postgresql_restart(stack):
    stack.start_web()
    stack.start_worker()
    stack.submit(0)
    stack.submit(1)
    stack.wait_jobs_finished(2, 60)
    stack.stop_postgres()
    time.sleep(1)
    stack.start_postgres()
    # No manual action: the kept connections are found dead and replaced on the next request and task.
    assert stack.status("/health/ready") == 200
    stack.submit(2)
    stack.submit(3)
    assert stack.wait_jobs_finished(4, 90) == {"done": 4}
    assert _predictions_per_record(stack) == [1] * 4


def test_poisoned_inputs_fail_with_a_reason_after_bounded_tries_and_the_worker_keeps_serving(stack):
    stack.start_web()
    stack.start_worker(app="tests.faults.poison_app")
    crash = demo.synthesize(demo.CASES[0], fs=500, seed=1)
    crash[0, 0] = CRASH_MV
    broken = demo.synthesize(demo.CASES[0], fs=500, seed=2)
    broken[0, 0] = RAISE_MV
    stack.submit(100, crash)
    stack.submit(101, broken)
    for i in range(3):
        stack.submit(i)
    assert stack.wait_jobs_finished(5, 180) == {"done": 3, "failed": 2}
    failed = dict(stack.sql("SELECT p.pseudonym, j.error FROM clinical_inferencejob j "
                            "JOIN clinical_ecgrecord r ON r.id = j.record_id JOIN clinical_patient p ON "
                            "p.id = r.patient_id WHERE j.state = 'failed'"))
    assert "started 5 times and never finished" in failed["FAULT-100"]
    assert "RuntimeError: poisoned input" in failed["FAULT-101"]
    assert stack.sql("SELECT attempts FROM clinical_inferencejob j JOIN clinical_ecgrecord r ON r.id = j.record_id "
                     "JOIN clinical_patient p ON p.id = r.patient_id WHERE p.pseudonym = 'FAULT-100'")[0][0] == 5
    # The worker survived all of it and still analyses good ECGs.
    stack.submit(3)
    assert stack.wait_jobs_finished(6, 60) == {"done": 4, "failed": 2}
    assert sorted(_predictions_per_record(stack)) == [0, 0, 1, 1, 1, 1]
    assert stack.procs["worker"].poll() is None
