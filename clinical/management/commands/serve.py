from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = ("Serve the app with a real Celery worker and beat beside it (the embedded quick start). "
            "With REDIS_URL set the worker uses Redis; otherwise a filesystem broker that needs no server.")

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")

    def handle(self, *args, addrport: str, **options):
        data_dir = Path(settings.ENV.data_dir)
        # Samples of processes from an earlier run would be merged into /metrics: start clean.
        for stale in Path(settings.PROMETHEUS_MULTIPROC_DIR).glob("*.db"):
            stale.unlink()
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "ecgapp", "worker", "-B", "--loglevel", "INFO",
             "-Q", "inference,monitoring,celery", "--concurrency", "1",
             "--schedule", str(data_dir / "celerybeat-schedule")],
            env=os.environ.copy(),
        )
        # runserver serves each request on a new thread: persistent connections would pile up.
        settings.DATABASES["default"]["CONN_MAX_AGE"] = 0
        self.stdout.write(f"celery worker + beat started (pid {worker.pid}); serving http://{addrport}/")
        # A plain `kill` must stop the worker too, not only Ctrl-C.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            call_command("runserver", addrport, use_reloader=False, use_threading=True)
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
