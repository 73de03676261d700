"""The embedded default as a new user runs it (`manage.py serve`: SQLite, filesystem broker, supervised worker and
beat), in a folder of its own, for the fault tests and the load benchmark (bench_embedded)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from clinical import demo
from ecgapp.ports import free_port
from mlcore.preprocess import LEADS

ROOT = Path(__file__).resolve().parents[2]  # the checkout (manage.py)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def children(pid: int) -> list[int]:
    """Child processes of every thread of pid (the supervisor thread starts the restarted ones)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return sorted(set(found))


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class AppClient:
    """Talking to a running app over HTTP, for the fault tests and benchmarks: `base`, an API `token`, and `sql()`
    on its database are the subclass's."""

    base = ""
    token = ""
    patient_prefix = "EMB"

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        raise NotImplementedError

    def status(self, path: str) -> int:
        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    def ready(self) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(self.base + "/health/ready", timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")
        except OSError as exc:
            return 0, {"problems": [str(exc)]}

    def api(self, method: str, path: str, body: dict | None = None, timeout: float = 60) -> tuple[int, dict]:
        req = urllib.request.Request(self.base + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                return exc.code, json.loads(body or b"{}")
            except ValueError:  # a server error page: keep its text for the assertion message
                return exc.code, {"raw": body[:2000].decode(errors="replace")}

    def submit(self, i: int, signal_mv: np.ndarray | None = None) -> dict:
        """Upload demo ECG number i (or the given signal, mV at 500 Hz) through the API; asserts 202."""
        sig = demo.synthesize(demo.CASES[i % len(demo.CASES)], fs=500, seed=i) if signal_mv is None else signal_mv
        status, job = self.api("POST", "/api/v1/ecgs/", {
            "fs": 500, "units": "mV", "patient": {"id": f"{self.patient_prefix}-{i}", "age": 60, "sex": "F"},
            "leads": {lead: np.round(sig[j], 4).tolist() for j, lead in enumerate(LEADS)}})
        assert status == 202, (status, job)
        return job

    def jobs(self) -> dict[str, int]:
        return dict(self.sql("SELECT state, count(*) FROM clinical_inferencejob GROUP BY state"))

    def wait_jobs_finished(self, n: int, timeout: float) -> dict[str, int]:
        def finished():
            states = self.jobs()
            return states if states.get("done", 0) + states.get("failed", 0) == n else None
        return wait_for(finished, timeout, f"{n} jobs to finish", interval=0.5)


class EmbeddedApp(AppClient):
    def __init__(self, extra_env: dict[str, str] | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ecgapp-embedded-"))
        drop = ("DATABASE_URL", "REDIS_URL", "PROMETHEUS_MULTIPROC_DIR", "DJANGO_SETTINGS_MODULE")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(drop)} | {
            "ECGAPP_DATA_DIR": str(self.dir), "ECGAPP_DEMO": "1", "ECGAPP_API_RATE": "100000/min",
            "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"} | (extra_env or {})
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.token = ""

    # -- set-up ----------------------------------------------------------------------------------------------
    def manage(self, *args: str) -> str:
        out = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True,
                             text=True, timeout=300)
        if out.returncode:
            raise AssertionError(f"manage.py {' '.join(args)} failed:\n{out.stderr[-3000:]}")
        return out.stdout

    def prepare(self, users: tuple[tuple[str, str], ...] = ()) -> None:
        """Schema, roles, an integrator with an API token, and page users (username, role)."""
        self.manage("migrate", "--noinput")
        self.manage("setup_roles")
        code = ["from django.contrib.auth.models import Group, User",
                "u = User.objects.create_user('embedded-api', password=None)",
                "u.groups.add(Group.objects.get(name='integrator'))"]
        for username, role in users:
            code += [f"u = User.objects.create_user({username!r}, password='embedded-password-1')",
                     f"u.groups.add(Group.objects.get(name={role!r}))"]
        self.manage("shell", "-c", "\n".join(code))
        self.token = self.manage("api_token", "create", "--user", "embedded-api", "--name", "embedded").split()[0]

    def start(self, *serve_args: str) -> None:
        self.log_file = open(self.dir / "serve.log", "w")
        self.proc = subprocess.Popen([sys.executable, "manage.py", "serve", f"127.0.0.1:{self.port}", *serve_args],
                                     cwd=ROOT, env=self.env, stdout=self.log_file, stderr=subprocess.STDOUT)
        wait_for(lambda: self.status("/health/ready") == 200, 120, "the embedded app to be ready")

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                for pid in children(self.proc.pid):
                    os.kill(pid, signal.SIGKILL)
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- processes -------------------------------------------------------------------------------------------
    def worker_pid(self) -> int | None:
        for pid in children(self.proc.pid):
            if " worker " in cmdline(pid):
                return pid
        return None

    def beat_pid(self) -> int | None:
        for pid in children(self.proc.pid):
            if " beat " in cmdline(pid):
                return pid
        return None

    def log(self) -> str:
        return (self.dir / "serve.log").read_text(errors="replace")

    # -- its database ----------------------------------------------------------------------------------------
    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        conn = sqlite3.connect(self.dir / "ecgapp.sqlite3", timeout=30)
        try:
            return conn.execute(query, params).fetchall()
        finally:
            conn.close()


class ReadyWatcher:
    """Polls /health/ready in the background and keeps every answer, to show it was not 200 while no worker ran."""

    def __init__(self, app: EmbeddedApp, interval: float = 0.1) -> None:
        self.app, self.interval = app, interval
        self.seen: list[tuple[float, int, list[str]]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            status, body = self.app.ready()
            self.seen.append((time.monotonic(), status, body.get("problems", [])))

    def __enter__(self) -> ReadyWatcher:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)
