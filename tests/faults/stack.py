"""A private PostgreSQL cluster and Redis server, plus the app's real processes, for fault tests.

Each test gets its own database server and broker (the real binaries, on free ports), so stopping or restarting
them cannot disturb anything else on the machine. The app runs as it does in production: gunicorn for the web,
`celery worker` processes, `celery beat`.
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from clinical.management.embedded import AppClient, wait_for  # noqa: F401 (tests import wait_for from here)
from ecgapp.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def available() -> str | None:
    """Why the fault stack cannot run here, or None."""
    if not (PG_BIN / "initdb").exists():
        return "PostgreSQL server binaries not found"
    if not shutil.which("redis-server"):
        return "redis-server not found"
    if os.geteuid() == 0 and not shutil.which("runuser"):
        return "running as root without runuser"
    return None


class Stack(AppClient):
    patient_prefix = "FAULT"

    def __init__(self) -> None:
        # Under /tmp with open permissions: PostgreSQL refuses to run as root, so its cluster belongs to the
        # postgres user, who must be able to reach it.
        self.dir = Path(tempfile.mkdtemp(prefix="ecgapp-faults-", dir="/tmp"))
        self.dir.chmod(0o755)
        self.pg_port, self.redis_port = free_port(), free_port()
        self.pg_dir = self.dir / "pg"
        self.data_dir = self.dir / "data"
        self.procs: dict[str, subprocess.Popen] = {}
        self.redis: subprocess.Popen | None = None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL"))} | {
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{self.pg_port}/ecgapp",
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "ECGAPP_DATA_DIR": str(self.data_dir),
            "PROMETHEUS_MULTIPROC_DIR": str(self.dir / "prometheus"),
            "DJANGO_SETTINGS_MODULE": "ecgapp.settings.base",
            "ECGAPP_DEMO": "1",
            "ECGAPP_API_RATE": "100000/min",
            "PYTHONPATH": str(ROOT),
        }
        self.token = ""
        self.base = ""

    # -- services --------------------------------------------------------------------------------------------
    def _as_postgres(self, *cmd: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)

    def start_postgres(self) -> None:
        if not self.pg_dir.exists():
            self.pg_dir.mkdir()
            if os.geteuid() == 0:
                pw = pwd.getpwnam("postgres")
                os.chown(self.pg_dir, pw.pw_uid, pw.pw_gid)
            subprocess.run(self._as_postgres(str(PG_BIN / "initdb"), "-D", str(self.pg_dir), "-A", "trust",
                                             "-U", "postgres", "--no-sync"), check=True, capture_output=True)
        options = (f"-p {self.pg_port} -k {self.pg_dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c max_connections=60")
        subprocess.run(self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.pg_dir), "-l",
                                         str(self.pg_dir / "log"), "-w", "-o", options, "start"),
                       check=True, capture_output=True)

    def stop_postgres(self) -> None:
        subprocess.run(self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.pg_dir), "-m", "fast", "-w",
                                         "stop"), check=True, capture_output=True)

    def start_redis(self) -> None:
        self.redis = subprocess.Popen(["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                                       "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        wait_for(lambda: _connects(self.redis_port), 10, "redis to listen")

    def stop_redis(self) -> None:
        if self.redis:
            self.redis.terminate()
            self.redis.wait(10)
            self.redis = None

    # -- the app ---------------------------------------------------------------------------------------------
    def manage(self, *args: str) -> str:
        out = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True,
                             text=True, timeout=180)
        if out.returncode:
            raise AssertionError(f"manage.py {' '.join(args)} failed:\n{out.stderr[-3000:]}")
        return out.stdout

    def prepare(self) -> None:
        """Database, schema, roles and an integrator's API token."""
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres", "-c",
                        "CREATE DATABASE ecgapp"], check=True, capture_output=True)
        self.manage("migrate", "--noinput")
        self.manage("setup_roles")
        self.manage("shell", "-c", "from django.contrib.auth.models import Group, User; "
                    "u = User.objects.create_user('fault-api', password=None); "
                    "u.groups.add(Group.objects.get(name='integrator'))")
        self.token = self.manage("api_token", "create", "--user", "fault-api", "--name", "faults").split()[0]

    def start_web(self) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        log = open(self.dir / "web.log", "w")
        self.procs["web"] = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "ecgapp.wsgi:application", "-c", "gunicorn.conf.py"], cwd=ROOT,
            env=self.env | {"GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "1"}, stdout=log,
            stderr=subprocess.STDOUT)
        wait_for(lambda: self.status("/health/live") == 200, 60, "the web server")

    def start_worker(self, name: str = "worker", app: str = "ecgapp", queues: str = "inference") -> None:
        log = open(self.dir / f"{name}.log", "w")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", app, "worker", "-Q", queues, "--concurrency", "1",
             "--pool", "prefork", "--loglevel", "INFO", "-n", f"{name}@%h"], cwd=ROOT, env=self.env, stdout=log,
            stderr=subprocess.STDOUT)
        wait_for(lambda: "ready." in (self.dir / f"{name}.log").read_text(), 90, f"{name} to be ready")

    def start_beat(self) -> None:
        log = open(self.dir / "beat.log", "w")
        self.procs["beat"] = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "ecgapp", "beat", "--loglevel", "INFO",
             "-s", str(self.dir / "beat-schedule")], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def worker_children(self, name: str = "worker") -> list[int]:
        pid = self.procs[name].pid
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return [int(p) for p in text]

    def log(self, name: str) -> str:
        return (self.dir / f"{name}.log").read_text(errors="replace")

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.stop_redis()
        if (self.pg_dir / "postmaster.pid").exists():
            subprocess.run(self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.pg_dir), "-m", "immediate",
                                             "stop"), capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.pg_port, user="postgres", dbname="ecgapp")
        try:
            with conn, conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall()
        finally:
            conn.close()


def _connects(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
