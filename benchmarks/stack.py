"""A throwaway database plus real worker (and web) processes for the benchmarks, torn down afterwards."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.test.utils import setup_test_environment, teardown_test_environment

from ecgapp.env import filesystem_broker_folders, filesystem_broker_options
from ecgapp.ports import free_port


@contextlib.contextmanager
def throwaway_database():
    """Django's test database machinery outside the test runner: created, yielded (its name), destroyed."""
    setup_test_environment()
    name = connection.settings_dict["NAME"]
    test_db = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        yield test_db
    finally:
        connection.close()
        # The settings' database name back, and the test environment torn down: a second run in the same
        # process (bench_api --workers 1,2,4) starts as the first did.
        connection.creation.destroy_test_db(name, verbosity=0)
        teardown_test_environment()


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants now (Linux /proc; [] elsewhere)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes (and their descendants) have used so far."""
    total = 0
    for root in pids:
        for p in process_tree(root):
            try:
                fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total / CLOCK_TICKS


def named_cpu_seconds(name: str) -> float:
    """CPU seconds of every process whose command name starts with ``name`` ("postgres", "redis-server"), with
    what their reaped children used (a PostgreSQL backend that ended is counted in the postmaster's)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, tail = stat.read_text().rsplit(")", 1)
        except OSError:
            continue
        if head.split("(", 1)[1].startswith(name):
            fields = tail.split()
            total += sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    return total / CLOCK_TICKS


def machine_cpu_seconds() -> float:
    """CPU seconds every process of this machine has used (all cores, /proc/stat's first line less idle and wait)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / CLOCK_TICKS


@contextlib.contextmanager
def bench_stack(*, web: bool = False, workers: int = 1, server: str = "runserver", web_workers: int = 2,
                redis_db: int = 15, queues: str = "inference", pids: dict | None = None):
    """Yields (base_url or None, env). Uses Redis/PostgreSQL when configured, else the embedded default.

    workers: Celery worker processes on ``queues`` (one model process each); server: "runserver" (thread per
    request) or "gunicorn" (the production server, `web_workers` sync processes); redis_db: the Redis database
    the run flushes and uses; pids: filled with {"workers": [...], "web": [...]} for CPU accounting."""
    from celery import current_app

    tmp = Path(tempfile.mkdtemp(prefix="ecgapp-bench-"))
    env = os.environ.copy() | {"ECGAPP_DATA_DIR": str(tmp), "ECGAPP_DEMO": "1", "ECGAPP_API_RATE": "100000/min",
                              # runserver opens a connection per request thread: do not keep them.
                              "ECGAPP_DB_CONN_MAX_AGE": "0"}
    if connection.vendor == "sqlite":
        settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = str(tmp / "ecgapp.sqlite3")
    if settings.REDIS_URL:
        # A Redis database of its own, so no message of a running app (or of an earlier run) mixes in.
        bench_broker = settings.REDIS_URL.rsplit("/", 1)[0] + f"/{redis_db}"
        env["REDIS_URL"] = bench_broker
        current_app.conf.broker_url = bench_broker
        import redis

        redis.Redis.from_url(bench_broker).flushdb()
    else:
        # The worker processes get the same folders from ECGAPP_DATA_DIR (the settings' own options).
        options = filesystem_broker_options(tmp / "broker")
        for folder in filesystem_broker_folders(options):
            folder.mkdir(parents=True, exist_ok=True)
        # This process enqueues too (in-process uploads): point its producer at the worker's folder.
        current_app.conf.broker_transport_options = options
    with throwaway_database() as test_db:
        if connection.vendor == "postgresql":
            env["DATABASE_URL"] = settings.DATABASE_URL.rsplit("/", 1)[0] + "/" + test_db
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp / "prometheus")
        procs = [subprocess.Popen([sys.executable, "-m", "celery", "-A", "ecgapp", "worker", "--loglevel", "WARNING",
                                   "-Q", queues, "--concurrency", "1", "--pool", "prefork",
                                   "-n", f"bench{i}@%h"], env=env) for i in range(workers)]
        if pids is not None:
            pids["workers"] = [p.pid for p in procs]
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
                if pids is not None:
                    pids["web"] = [procs[-1].pid]
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
