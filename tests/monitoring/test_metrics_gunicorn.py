"""/metrics under a real gunicorn with 2 workers reports the requests of both, summed (multiprocess mode)."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prometheus_client.multiprocess import MultiProcessCollector

from ecgapp.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
N = 60
COUNTER = "django_http_requests_total_by_view_transport_method_total"
LIVE = '{method="GET",transport="http",view="health-live"}'
LIVE_LABELS = {"method": "GET", "transport": "http", "view": "health-live"}


def _get(url: str) -> tuple[int, str]:
    # urllib opens a new connection per request (Connection: close), so any idle worker may accept it.
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.read().decode()


def _burst(base: str, n: int) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(lambda _: _get(f"{base}/health/live")[0], range(n)))
    assert statuses == [200] * n


class _HeldRequest:
    """A GET /health/live sent in two halves: the sync worker that accepts it blocks reading the rest."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(b"GET /health/live HTTP/1.1\r\n")

    def finish(self) -> None:
        with self.sock:
            self.sock.sendall(b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n")
            response = b""
            while chunk := self.sock.recv(65536):
                response += chunk
        assert response.startswith(b"HTTP/1.1 200"), response[:200]


def _stale_samples(prom_dir: Path) -> None:
    """A previous run's dead worker that counted 1000 live checks, written with prometheus_client's own API."""
    code = textwrap.dedent("""
        from prometheus_client import Counter
        Counter("django_http_requests_total_by_view_transport_method", "stale", ["view", "transport", "method"]
                ).labels(view="health-live", transport="http", method="GET").inc(1000)
    """)
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(prom_dir)},
                   check=True, timeout=30)


def _live_count_per_worker(prom_dir: Path) -> dict[int, float]:
    """The live-view request count each worker process wrote into its own counter_<pid>.db."""
    counts = {}
    for f in prom_dir.glob("counter_*.db"):
        pid = int(f.stem.split("_")[1])
        counts[pid] = sum(s.value for m in MultiProcessCollector.merge([str(f)]) for s in m.samples
                          if s.name == COUNTER and s.labels == LIVE_LABELS)
    return counts


def test_metrics_sum_the_requests_of_both_gunicorn_workers(tmp_path):
    prom_dir, data_dir = tmp_path / "prometheus", tmp_path / "data"
    prom_dir.mkdir()
    _stale_samples(prom_dir)  # gunicorn.conf.py's on_starting must wipe it, or /metrics would say N + 1000
    assert list(prom_dir.glob("counter_*.db"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(prom_dir), "ECGAPP_DATA_DIR": str(data_dir),
           "DJANGO_SETTINGS_MODULE": "ecgapp.settings.base", "DATABASE_URL": "", "ECGAPP_DB_CONN_MAX_AGE": "0",
           "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "2",
           "ECGAPP_METRICS_ALLOW": "127.0.0.1"}  # as Prometheus on this host would be allowed
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "ecgapp.wsgi:application",
                                 "-c", str(ROOT / "gunicorn.conf.py")],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        # Readiness: poll /health/live; the one poll that succeeds is counted like any other request.
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"gunicorn exited early:\n{log.read_text()}"
            try:
                assert _get(f"{base}/health/live")[0] == 200
                break
            except urllib.error.HTTPError as exc:
                raise AssertionError(f"/health/live answered {exc.code}:\n{log.read_text()}") from exc
            except (urllib.error.URLError, ConnectionError, TimeoutError):  # a worker still booting on loaded cores
                assert time.monotonic() < deadline, f"gunicorn not ready in 30 s:\n{log.read_text()}"
                time.sleep(0.1)
        # Left alone, one worker tends to win every accept() and serve everything; a held request pins one worker
        # so that the other serves each burst (and waits until it has booted, if it has not yet).
        held_a = _HeldRequest(port)  # worker A accepts it first and waits for the rest
        _burst(base, N // 2)  # worker B serves them all
        held_b = _HeldRequest(port)  # B is the only free worker
        time.sleep(0.3)  # let B accept it before A is free again
        held_a.finish()
        _burst(base, N - N // 2)  # A serves them all
        held_b.finish()
        sent = 1 + N + 2  # the readiness poll, the bursts, the two held requests

        per_worker = {pid: n for pid, n in _live_count_per_worker(prom_dir).items() if n}
        assert len(per_worker) == 2, f"expected both workers to serve requests, got {per_worker}"
        assert sum(per_worker.values()) == sent, per_worker  # the stale file is gone: nothing else counted

        status, text = _get(f"{base}/metrics")
        assert status == 200
        match = re.search(rf"^{re.escape(COUNTER + LIVE)} ([0-9.e+]+)$", text, re.M)
        assert match, f"{COUNTER}{LIVE} not in /metrics"
        # One worker's own count is lower than this; only the merged files of both workers reach it.
        assert float(match.group(1)) == sent, per_worker
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_worker_container_serves_its_own_metrics(tmp_path):
    """ECGAPP_WORKER_METRICS_PORT: a Celery worker in its own container is scraped directly."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")} | {
        "ECGAPP_DATA_DIR": str(tmp_path / "data"), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
        "ECGAPP_WORKER_METRICS_PORT": str(port), "DJANGO_SETTINGS_MODULE": "ecgapp.settings.base",
        "ECGAPP_METRICS_ALLOW": "127.0.0.1"}
    (tmp_path / "prom").mkdir()
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "ecgapp", "worker", "-Q", "inference",
                               "--concurrency", "1", "--loglevel", "WARNING"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        body = ""
        for _ in range(150):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
                if "ecg_inference_seconds_count" in body:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert "ecg_inference_seconds_count" in body and "ecg_queue_wait_seconds_bucket" in body
    finally:
        worker.terminate()
        worker.wait(30)
