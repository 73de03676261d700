"""A throwaway database plus real worker (and web) processes for the benchmarks, torn down afterwards."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.test.utils import setup_test_environment


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for the servers benchmarks and tests start)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def throwaway_database():
    """Django's test database machinery outside the test runner: created, yielded (its name), destroyed."""
    setup_test_environment()
    test_db = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        yield test_db
    finally:
        connection.close()
        connection.creation.destroy_test_db(test_db, verbosity=0)


@contextlib.contextmanager
def bench_stack(*, web: bool = False, workers: int = 1, server: str = "runserver", web_workers: int = 2):
    """Yields (base_url or None, env). Uses Redis/PostgreSQL when configured, else the embedded default.

    workers: Celery worker processes on the inference queue (one model process each); server: "runserver"
    (thread per request) or "gunicorn" (the production server, `web_workers` sync processes)."""
    from celery import current_app

    tmp = Path(tempfile.mkdtemp(prefix="ecgapp-bench-"))
    env = os.environ.copy() | {"ECGAPP_DATA_DIR": str(tmp), "ECGAPP_DEMO": "1", "ECGAPP_API_RATE": "100000/min",
                              # runserver opens a connection per request thread: do not keep them.
                              "ECGAPP_DB_CONN_MAX_AGE": "0"}
    if connection.vendor == "sqlite":
        settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = str(tmp / "ecgapp.sqlite3")
    if settings.ENV.redis_url:
        # A Redis database of its own, so no message of a running app (or of an earlier run) mixes in.
        bench_broker = settings.ENV.redis_url.rsplit("/", 1)[0] + "/15"
        env["REDIS_URL"] = bench_broker
        current_app.conf.broker_url = bench_broker
        import redis

        redis.Redis.from_url(bench_broker).flushdb()
    else:
        folder = tmp / "broker"
        for sub in ("out", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        # This process enqueues too (in-process uploads): point its producer at the worker's folder.
        current_app.conf.broker_transport_options = {
            "data_folder_in": str(folder / "out"), "data_folder_out": str(folder / "out"),
            "processed_folder": str(folder / "processed"), "control_folder": str(folder / "control"),
            "store_processed": False, "polling_interval": 0.1}
    with throwaway_database() as test_db:
        if connection.vendor == "postgresql":
            env["DATABASE_URL"] = settings.ENV.database_url.rsplit("/", 1)[0] + "/" + test_db
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp / "prometheus")
        procs = [subprocess.Popen([sys.executable, "-m", "celery", "-A", "ecgapp", "worker", "--loglevel", "WARNING",
                                   "-Q", "inference", "--concurrency", "1", "--pool", "prefork",
                                   "-n", f"bench{i}@%h"], env=env) for i in range(workers)]
        base = None
        try:
            if web:
                port = free_port()
                base = f"http://127.0.0.1:{port}"
                if server == "gunicorn":
                    cmd = [sys.executable, "-m", "gunicorn", "ecgapp.wsgi:application", "-c", "gunicorn.conf.py"]
                    web_env = env | {"GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": str(web_workers),
                                     "ECGAPP_DB_CONN_MAX_AGE": "60"}
                else:
                    cmd = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload",
                           "--skip-checks"]
                    web_env = env
                procs.append(subprocess.Popen(cmd, env=web_env, stdout=subprocess.DEVNULL,
                                              stderr=open(tmp / "web.log", "w")))
                for _ in range(100):
                    try:
                        urllib.request.urlopen(f"{base}/health/live", timeout=1)
                        break
                    except OSError:
                        time.sleep(0.2)
            yield base, env
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
