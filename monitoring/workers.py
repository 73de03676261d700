"""Worker liveness, seen from the database so it holds for both brokers (filesystem and Redis).

Each Celery worker writes a heartbeat row when it is ready and then every HEARTBEAT_SECONDS from a thread of its
main process, and notes when it last took a task. `/health/ready` fails, with the reason, when no worker of the
inference queue has been seen within ECG_WORKER_STALE_SECONDS, or when the oldest queued ECG has waited longer than
ECG_QUEUE_MAX_WAIT_SECONDS while no worker has taken a job in that time (a worker that is up but stuck).
"""
from __future__ import annotations

import logging
import os
import threading
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import Min
from django.utils import timezone

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 5.0
INFERENCE_QUEUE = "inference"


class _Beat:
    """The running worker's heartbeat thread (one per worker process)."""

    def __init__(self, hostname: str, queues: list[str]) -> None:
        self.hostname, self.queues = hostname, queues
        self.started_at = timezone.now()
        self.last_task_at: datetime | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="ecgapp-heartbeat", daemon=True)

    def write(self) -> None:
        from monitoring.models import WorkerHeartbeat

        WorkerHeartbeat.objects.update_or_create(hostname=self.hostname, defaults={
            "pid": os.getpid(), "queues": self.queues, "started_at": self.started_at, "seen_at": timezone.now(),
            "last_task_at": self.last_task_at})

    def _run(self) -> None:
        while not self.stop.wait(HEARTBEAT_SECONDS):
            try:
                close_old_connections()
                self.write()
            except Exception:  # a database hiccup must not kill the thread; readiness shows the gap
                log.warning("worker heartbeat not written", exc_info=True)
        connection.close()


_beat: _Beat | None = None


def heartbeat_start(hostname: str, queues: list[str]) -> None:
    """Called once the worker consumes (celery's worker_ready): first row now, then every HEARTBEAT_SECONDS."""
    global _beat
    _beat = _Beat(hostname, sorted(queues))
    _beat.write()
    connection.close()  # the main thread's connection would otherwise idle in the worker for good
    _beat.thread.start()


def task_taken() -> None:
    """Called as each task starts (celery's task_prerun); written with the next heartbeat."""
    if _beat is not None:
        _beat.last_task_at = timezone.now()


def heartbeat_stop() -> None:
    """A worker that shuts down cleanly removes its row at once (a killed one goes stale instead)."""
    from monitoring.models import WorkerHeartbeat

    if _beat is None:
        return
    _beat.stop.set()
    WorkerHeartbeat.objects.filter(hostname=_beat.hostname, pid=os.getpid()).delete()


def worker_gone(hostname: str) -> None:
    """A supervisor that saw its worker die says so (the embedded `serve`), so readiness fails at once."""
    from monitoring.models import WorkerHeartbeat

    WorkerHeartbeat.objects.filter(hostname=hostname).delete()


def orphaned_jobs_requeue() -> int:
    """For the only worker of an installation (the embedded default): jobs left running by a worker that died are
    sent again at once, not after the sweeper's 10 minutes."""
    from clinical.services import jobs_requeue_stale

    return jobs_requeue_stale(running_for=timedelta(0))


def readiness_problems(now: datetime | None = None) -> list[str]:
    """Why analysis is not available now ([] when it is)."""
    from clinical.models import InferenceJob
    from monitoring.models import WorkerHeartbeat

    now = now or timezone.now()
    stale = timedelta(seconds=settings.ECG_WORKER_STALE_SECONDS)
    rows = [w for w in WorkerHeartbeat.objects.all() if INFERENCE_QUEUE in (w.queues or [])]
    live = [w for w in rows if w.seen_at >= now - stale]
    problems = []
    if not live:
        if rows:
            last = max(w.seen_at for w in rows)
            problems.append(f"no analysis worker: the last one was seen {(now - last).total_seconds():.0f} s ago "
                            f"(limit {stale.total_seconds():.0f} s)")
        else:
            problems.append("no analysis worker is running")
    limit = timedelta(seconds=settings.ECG_QUEUE_MAX_WAIT_SECONDS)
    oldest = InferenceJob.objects.filter(state=InferenceJob.State.QUEUED).aggregate(t=Min("created_at"))["t"]
    if oldest is not None and now - oldest > limit:
        taken = [w.last_task_at for w in live if w.last_task_at]
        last_taken = max(taken) if taken else None
        if last_taken is None or now - last_taken > limit:
            since = (f"for {(now - last_taken).total_seconds():.0f} s" if last_taken else "since it started")
            problems.append(f"the oldest queued ECG has waited {(now - oldest).total_seconds():.0f} s "
                            f"(limit {limit.total_seconds():.0f} s) and no worker has taken a job {since}")
    return problems
