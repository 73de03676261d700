"""deploy/compose.yaml's commands, run as local processes against the real PostgreSQL and Redis.

No Docker engine is needed: each app service's command and environment are read from the compose file (with the
image's ENV from the Dockerfile under them), and run from the repository root the way the container would run them
from /app. Container paths are mapped to temporary folders: /var/lib/ecgapp (the data volume) to one folder shared
by all services, /tmp (a tmpfs per container) to one folder per service. DATABASE_URL points at a throwaway
database, REDIS_URL at a Redis database number nothing else uses (DEPLOY_TEST_REDIS_DB, default 14; flushed before
and after), and gunicorn binds a free port (GUNICORN_BIND).

The migrate service runs first; then web, both workers and beat. /health/ready must answer 200 with the model
version, each worker must consume exactly the queues its command names (asked over the broker), and the compose
file's own health checks must pass. Skipped unless DATABASE_URL and REDIS_URL are set (CI sets them).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest

from ecgapp.ports import free_port
from tests.deploy import deployfiles as df

DATABASE_URL = os.environ.get("DATABASE_URL", "")
REDIS_URL = os.environ.get("REDIS_URL", "")
pytestmark = pytest.mark.skipif(
    not (DATABASE_URL.startswith(("postgres://", "postgresql://")) and REDIS_URL.startswith("redis://")),
    reason="needs DATABASE_URL (PostgreSQL) and REDIS_URL (Redis), as CI sets them")

VENV_BIN = Path(sys.executable).parent
CONTAINER_DATA = "/var/lib/ecgapp"
STARTUP_S = 150  # generous: four Python processes importing Django and torch at once on two loaded cores


@pytest.fixture
def database():
    """A throwaway database on the server DATABASE_URL names; dropped afterwards, connections and all."""
    import psycopg2

    name = f"ecgapp_deploytest_{secrets.token_hex(4)}"
    server = urlparse(DATABASE_URL)
    admin = psycopg2.connect(urlunparse(server._replace(path="/postgres")))
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield urlunparse(server._replace(path=f"/{name}"))
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def redis_url():
    import redis

    url = urlunparse(urlparse(REDIS_URL)._replace(path=f"/{int(os.environ.get('DEPLOY_TEST_REDIS_DB', '14'))}"))
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


class Services:
    """The compose services as local processes, each in its own process group, logging to a file."""

    def __init__(self, tmp: Path, database: str, redis_url: str, port: int):
        self.tmp, self.port = tmp, port
        self.dc = df.compose({"DJANGO_SECRET_KEY": f"process-test-{secrets.token_hex(32)}",
                              "POSTGRES_PASSWORD": "unused-here"})
        self.image_env = {k: v for k, v in df.dockerfile_stages()[-1].env().items() if k != "PATH"}
        self.overrides = {"DATABASE_URL": database, "REDIS_URL": redis_url}
        self.procs: dict[str, subprocess.Popen] = {}
        (tmp / "data").mkdir()

    def path(self, service: str, value: str) -> str:
        """A container path in a value mapped to this machine: the data volume, and the service's own /tmp."""
        value = value.replace(CONTAINER_DATA, str(self.tmp / "data"))
        own_tmp = self.tmp / f"{service}-tmp"
        own_tmp.mkdir(exist_ok=True)
        return re.sub(r"(?<![\w/])/tmp(?=/|\*|'|\"|$)", str(own_tmp), value)

    def env(self, service: str) -> dict[str, str]:
        env = df.local_env_overrides()
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
        for k, v in {**self.image_env, **df.service_env(self.dc["services"][service])}.items():
            env[k] = self.path(service, v)
        env.update(self.overrides)
        env["HOSTNAME"] = socket.gethostname()
        if service == "web":
            env["GUNICORN_BIND"] = f"127.0.0.1:{self.port}"
            env["GUNICORN_WORKERS"] = "1"  # one is enough here; two cores are shared by five processes
        return env

    def command(self, service: str) -> list[str]:
        return [self.path(service, a) for a in df.command_list(self.dc["services"][service])]

    def healthcheck(self, service: str) -> list[str]:
        test = [self.path(service, a) for a in self.dc["services"][service]["healthcheck"]["test"]]
        test = [a.replace("127.0.0.1:8000", f"127.0.0.1:{self.port}") for a in test]
        kind, rest = test[0], test[1:]
        return ["sh", "-c", rest[0]] if kind == "CMD-SHELL" else rest

    def log(self, service: str) -> str:
        f = self.tmp / f"{service}.log"
        return f.read_text(errors="replace") if f.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"----- {s} -----\n{self.log(s)[-4000:]}" for s in self.procs)

    def start(self, service: str) -> None:
        with open(self.tmp / f"{service}.log", "wb") as out:
            self.procs[service] = subprocess.Popen(self.command(service), cwd=df.ROOT, env=self.env(service),
                                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> None:
        dead = {s: p.returncode for s, p in self.procs.items() if p.poll() is not None}
        assert not dead, f"exited early: {dead}\n{self.logs()}"

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in self.procs.values():  # whatever is left of each group (prefork children included)
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=10)


def _get(url: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, headers=headers or {})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _wait_for(what: str, check, services: Services, timeout: float = STARTUP_S):
    deadline = time.monotonic() + timeout
    while True:
        services.alive()
        try:
            result = check()
        except (OSError, urllib.error.URLError):
            result = None
        if result:
            return result
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s\n{services.logs()}"
        time.sleep(0.25)


def test_compose_services_run_as_local_processes(tmp_path, database, redis_url):
    services = Services(tmp_path, database, redis_url, free_port())
    base = f"http://127.0.0.1:{services.port}"
    host = socket.gethostname()

    # 1. the one-shot migrate service, to completion, before anything else starts
    migrate = subprocess.run(services.command("migrate"), cwd=df.ROOT, env=services.env("migrate"),
                             capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    assert re.search(r"^clinician: ", migrate.stdout, re.M), migrate.stdout  # setup_roles ran

    try:
        for service in df.LONG_RUNNING:
            services.start(service)

        # 2. web: ready with the committed model, under the production settings the image selects
        manifest = json.loads((df.ROOT / "mlcore" / "weights" / "manifest.json").read_text())
        status, _, body = _wait_for(
            "/health/ready", lambda: (r := _get(f"{base}/health/ready")) and r[0] == 200 and r, services)
        ready = json.loads(body)
        assert ready == {"status": "ok", "problems": [], "model_version": manifest["model_version"]}
        assert _get(f"{base}/health/live")[0] == 200
        status, headers, _ = _get(f"{base}/login/")
        assert status == 301 and headers["Location"].startswith("https://"), "production settings redirect to HTTPS"
        static = next(p for p in sorted((df.ROOT / "static").rglob("*")) if p.is_file())
        status, _, body = _get(f"{base}/static/{static.relative_to(df.ROOT / 'static')}",
                               {"X-Forwarded-Proto": "https"})
        assert status == 200 and body == static.read_bytes(), "WhiteNoise serves the static files"

        # 3. both workers consume exactly the queues their commands name, asked over the broker
        from celery import Celery

        expected = {}
        for service in ("worker-inference", "worker-monitoring"):
            cmd = services.command(service)
            node = cmd[cmd.index("--hostname") + 1].replace("%h", host)
            expected[node] = df.queues_of(cmd)
            _wait_for(f"{service} ready", lambda n=node, s=service: f"{n} ready." in services.log(s), services)
        control = Celery(broker=redis_url)
        try:
            replies = _wait_for(
                "active_queues from both workers",
                lambda: (r := control.control.inspect(timeout=3, destination=list(expected)).active_queues() or {})
                and set(r) == set(expected) and r, services, timeout=60)
        finally:
            control.close()
        assert {node: {q["name"] for q in queues} for node, queues in replies.items()} == expected

        # 4. beat is up, and the compose file's own health checks pass against these processes
        _wait_for("beat started", lambda: "beat: Starting..." in services.log("beat"), services)
        _wait_for("beat schedule file", lambda: list((tmp_path / "beat-tmp").glob("celerybeat-schedule*")), services)
        with ThreadPoolExecutor(max_workers=4) as pool:
            checks = {s: pool.submit(subprocess.run, services.healthcheck(s), cwd=df.ROOT, env=services.env(s),
                                     capture_output=True, text=True, timeout=90)
                      for s in df.LONG_RUNNING}
            for service, future in checks.items():
                proc = future.result()
                assert proc.returncode == 0, f"{service} health check failed: {proc.stdout}{proc.stderr}"
        services.alive()
    finally:
        services.stop()
