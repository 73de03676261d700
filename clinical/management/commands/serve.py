"""The embedded quick start: the web server with a supervised Celery worker and beat beside it."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

log = logging.getLogger("ecgapp.serve")
WORKER_NAME = "embedded@%h"


@dataclass
class Child:
    """One supervised process: restarted with back-off when it dies; too many deaths stop the whole app."""

    name: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen | None = None
    deaths: list[float] = field(default_factory=list)

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, env=self.env)

    def stop(self, timeout: float = 15) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Supervisor:
    """Watches the worker and beat. A child that exits is started again after 1, 2, 4 … 30 s; more than
    `max_restarts` deaths within `window` seconds means something is wrong for good, and the app exits non-zero
    (a server that accepts uploads no worker will ever analyse is worse than one that stops visibly)."""

    def __init__(self, children: list[Child], max_restarts: int, window: float = 300.0, on_give_up=None,
                 on_death=None) -> None:
        self.children, self.max_restarts, self.window = children, max_restarts, window
        self.on_give_up, self.on_death = on_give_up, on_death
        self.stopping = threading.Event()
        self.failure: str | None = None
        self.thread = threading.Thread(target=self._watch, name="ecgapp-supervisor", daemon=True)

    def start(self) -> None:
        for child in self.children:
            child.start()
        self.thread.start()

    def _watch(self) -> None:
        while not self.stopping.wait(0.5):
            for child in self.children:
                code = child.proc.poll() if child.proc else None
                if code is None or self.stopping.is_set():
                    continue
                now = time.monotonic()
                child.deaths = [t for t in child.deaths if now - t < self.window] + [now]
                log.error("%s (pid %s) exited with %s", child.name, child.proc.pid, code)
                if self.on_death:
                    self.on_death(child)
                if len(child.deaths) > self.max_restarts:
                    self.failure = (f"{child.name} died {len(child.deaths)} times in {self.window:.0f} s; "
                                    "stopping the app (see the log above)")
                    log.error(self.failure)
                    if self.on_give_up:
                        self.on_give_up()
                    return
                delay = min(30.0, 2.0 ** (len(child.deaths) - 1))
                log.warning("restarting %s in %.0f s", child.name, delay)
                if self.stopping.wait(delay):
                    return
                child.start()
                log.warning("%s restarted (pid %s)", child.name, child.proc.pid)

    def stop(self) -> None:
        self.stopping.set()
        for child in self.children:
            child.stop()


class Command(BaseCommand):
    help = ("Serve the app with a supervised Celery worker and beat beside it (the embedded quick start). "
            "With REDIS_URL set the worker uses Redis; otherwise a filesystem broker that needs no server.")

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default=os.environ.get("ECGAPP_ADDR", "127.0.0.1:8000"),
                            help="host:port (default $ECGAPP_ADDR or 127.0.0.1:8000)")
        parser.add_argument("--max-restarts", type=int, default=int(os.environ.get("ECGAPP_SERVE_MAX_RESTARTS", 5)),
                            help="worker or beat deaths tolerated in 5 minutes before the app exits (default 5)")

    def handle(self, *args, addrport: str, max_restarts: int, **options):
        data_dir = Path(settings.ECG_DATA_DIR)
        # Samples of processes from an earlier run would be merged into /metrics: start clean.
        for stale in Path(settings.PROMETHEUS_MULTIPROC_DIR).glob("*.db"):
            stale.unlink()
        celery = [sys.executable, "-m", "celery", "-A", "ecgapp"]
        # The only worker of this installation: it re-sends what a dead predecessor left (monitoring.workers).
        env = os.environ.copy() | {"ECGAPP_SOLE_WORKER": "1"}
        # solo pool: the worker runs tasks in its own process. A prefork pool child killed while idle (as the OOM
        # killer does) can leave the replacement child blocked on billiard's queue lock for good; with solo,
        # the process that dies is the one this supervisor restarts.
        worker = Child("celery worker", [*celery, "worker", "--pool", "solo", "--loglevel", "INFO",
                                         "-n", WORKER_NAME, "-Q", "inference,evidence,monitoring,celery,shadow",
                                         "--without-mingle", "--without-gossip"], env)
        beat = Child("celery beat", [*celery, "beat", "--loglevel", "INFO",
                                     "--schedule", str(data_dir / "celerybeat-schedule")], env)

        def worker_died(child: Child) -> None:
            if child is worker:  # readiness fails at once instead of when the heartbeat goes stale
                from monitoring.workers import worker_gone

                try:
                    worker_gone(WORKER_NAME.replace("%h", _hostname()))
                except Exception:
                    log.exception("could not clear the worker's heartbeat")

        supervisor = Supervisor([worker, beat], max_restarts=max_restarts,
                                on_give_up=lambda: os.kill(os.getpid(), signal.SIGTERM), on_death=worker_died)
        # runserver serves each request on a new thread: persistent connections would pile up.
        settings.DATABASES["default"]["CONN_MAX_AGE"] = 0
        supervisor.start()
        self.stdout.write(f"celery worker (pid {worker.proc.pid}) and beat (pid {beat.proc.pid}) started, "
                          f"supervised; serving http://{addrport}/")
        # A plain `kill` must stop the children too, not only Ctrl-C.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(1 if supervisor.failure else 0))
        try:
            call_command("runserver", addrport, use_reloader=False, use_threading=True)
        finally:
            supervisor.stop()
        if supervisor.failure:
            sys.exit(1)


def _hostname() -> str:
    import socket

    return socket.gethostname()
