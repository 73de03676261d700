"""Production gunicorn settings, read from the environment. gunicorn loads ./gunicorn.conf.py by default.

    gunicorn ecgapp.wsgi:application -c gunicorn.conf.py

GUNICORN_BIND (0.0.0.0:8000), GUNICORN_WORKERS (2), GUNICORN_TIMEOUT (30 s), GUNICORN_GRACEFUL_TIMEOUT (30 s).
"""
from __future__ import annotations

import os
from pathlib import Path

bind = os.environ.get("GUNICORN_BIND") or "0.0.0.0:8000"
workers = int(os.environ.get("GUNICORN_WORKERS") or 2)
worker_class = "sync"
threads = 1
timeout = int(os.environ.get("GUNICORN_TIMEOUT") or 30)
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT") or 30)
accesslog = "-"  # stdout
errorlog = "-"  # stderr
# gunicorn >= 25.1 opens a control socket for gunicornc by default, at one path per user ($HOME/.gunicorn), that
# every instance on the host would share; nothing here uses it.
control_socket_disable = True

# Prometheus multiprocess mode needs every worker to write its samples into one directory. Settle it here, in
# the master, with the same default as ecgapp.settings.base (which imports Celery, so it is not imported here);
# forked workers inherit it. It must be set before anything imports prometheus_client: the client chooses
# between in-memory and file-backed values once, at import, and workers would inherit the master's choice.
_data_dir = Path(os.environ.get("ECGAPP_DATA_DIR") or Path(__file__).resolve().parent / "var")
PROMETHEUS_MULTIPROC_DIR = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or _data_dir / "prometheus")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(PROMETHEUS_MULTIPROC_DIR)


def on_starting(server) -> None:
    # /metrics sums every *.db file in the directory, whichever process wrote it, so files left by the previous
    # run (old worker pids) would carry its counts over the restart: start each master with an empty directory.
    # A Celery worker sharing this directory on the node loses its samples too; restart it with the web server.
    PROMETHEUS_MULTIPROC_DIR.mkdir(parents=True, exist_ok=True)
    for stale in PROMETHEUS_MULTIPROC_DIR.glob("*.db"):
        stale.unlink(missing_ok=True)


def child_exit(server, worker) -> None:
    # prometheus_client's documented multiprocess requirement: a dead worker's live gauges (livesum, liveall, ...)
    # must be removed, else /metrics keeps reporting them. Its counters and histograms stay and are still summed.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
