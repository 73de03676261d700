"""Faults on the embedded default (`manage.py serve`: SQLite, filesystem broker, supervised worker and beat):
the process that runs analyses killed while idle and mid-analysis, and the worker dying for good."""
from __future__ import annotations

import os
import signal
import time

import pytest

from clinical.management.embedded import EmbeddedApp, ReadyWatcher, children, wait_for

pytestmark = [pytest.mark.faults]


@pytest.fixture
def app(request):
    extra = getattr(request, "param", None) or {}
    a = EmbeddedApp(extra_env=extra)
    try:
        a.prepare()
        a.start()
        yield a
    finally:
        a.close()


def _kill_the_analysing_process(app: EmbeddedApp) -> int:
    """SIGKILL what runs the analyses (as the OOM killer would): a pool child if the worker had one, else the
    worker process itself (the solo pool the embedded default uses). Returns the worker pid that was there."""
    worker = wait_for(app.worker_pid, 30, "a worker process")
    for pid in children(worker) or [worker]:
        os.kill(pid, signal.SIGKILL)
    return worker


def _back_after_kill(app: EmbeddedApp, old_worker: int, watcher: ReadyWatcher, killed_at: float) -> None:
    wait_for(lambda: (pid := app.worker_pid()) and pid != old_worker, 60, "the worker to be restarted")
    wait_for(lambda: app.ready()[0] == 200, 120, "ready again after the restart")
    after = [(status, problems) for t, status, problems in watcher.seen if t > killed_at]
    down = [problems for status, problems in after if status != 200]
    assert down, "/health/ready kept answering 200 while no worker ran"
    assert any("no analysis worker" in p for problems in down for p in problems), down[:3]


def _predictions_per_record(app: EmbeddedApp) -> list[int]:
    return [n for (n,) in app.sql(
        "SELECT count(p.id) FROM clinical_ecgrecord r LEFT JOIN clinical_prediction p ON p.record_id = r.id "
        "GROUP BY r.id")]


def test_worker_killed_idle_three_times_and_mid_inference_every_job_finishes(app):
    worker = app.worker_pid()
    assert children(worker) == [], "the embedded worker should run analyses in its own process (solo pool)"
    submitted = 0
    with ReadyWatcher(app) as watcher:
        for _ in range(3):
            killed_at = time.monotonic()
            old = _kill_the_analysing_process(app)
            _back_after_kill(app, old, watcher, killed_at)
            for _ in range(2):  # the restarted worker serves
                app.submit(submitted)
                submitted += 1
            app.wait_jobs_finished(submitted, 120)
        # Now mid-analysis: queue six and kill the worker while one of them runs.
        for _ in range(6):
            app.submit(submitted)
            submitted += 1
        running = wait_for(lambda: app.sql("SELECT id, attempts FROM clinical_inferencejob WHERE state='running'"),
                           60, "a running job", interval=0.01)
        killed_at = time.monotonic()
        old = _kill_the_analysing_process(app)
        _back_after_kill(app, old, watcher, killed_at)
    assert app.wait_jobs_finished(submitted, 180) == {"done": submitted}
    # Nothing lost, nothing doubled: one prediction per ECG; the interrupted job ran again.
    assert _predictions_per_record(app) == [1] * submitted
    job_id, attempts = running[0]
    assert app.sql("SELECT attempts FROM clinical_inferencejob WHERE id = ?", (job_id,))[0][0] >= attempts
    assert app.proc.poll() is None and "restarted" in app.log()


@pytest.mark.parametrize("app", [{"ECGAPP_SERVE_MAX_RESTARTS": "1"}], indirect=True)
def test_worker_that_keeps_dying_stops_the_app_visibly(app):
    beat = app.beat_pid()
    with ReadyWatcher(app) as watcher:
        killed_at = time.monotonic()
        old = app.worker_pid()
        os.kill(old, signal.SIGKILL)  # the worker's main process
        _back_after_kill(app, old, watcher, killed_at)
        # A second death within the window is one more than allowed: the whole app exits, non-zero.
        os.kill(app.worker_pid(), signal.SIGKILL)
        code = app.proc.wait(60)
    assert code != 0
    assert "died 2 times" in app.log()
    assert app.status("/health/live") == 0  # nothing answers: the stop is visible, not a half-alive server
    assert not os.path.exists(f"/proc/{beat}") or "beat" not in open(f"/proc/{beat}/cmdline").read()


def test_beat_killed_is_restarted(app):
    beat = app.beat_pid()
    os.kill(beat, signal.SIGKILL)
    wait_for(lambda: (pid := app.beat_pid()) and pid != beat, 60, "beat to be restarted")
    assert app.proc.poll() is None


def test_concurrent_page_and_api_users_get_no_server_error():
    """The load benchmark, shortened: 6 users (3 through the page, 3 through the API) for 20 s on a fresh
    embedded default. It fails on any response >= 500, a lost result or an unaudited refusal."""
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("bench_embedded", clients=6, seconds=20, stdout=out)
    text = out.getvalue()
    assert "responses >= 500: 0;" in text and text.strip().endswith("PASS"), text
