"""API throughput: JSON submit -> result available, N concurrent clients, through HTTP, broker and one worker."""
from __future__ import annotations

import json
import statistics
import threading
import time
import urllib.request

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connection

from clinical import demo
from clinical.management.benchenv import bench_stack
from mlcore.preprocess import LEADS


class Command(BaseCommand):
    help = "Benchmark the integration API: concurrent JSON submits until each result is available."

    def add_arguments(self, parser):
        parser.add_argument("--clients", type=int, default=10)
        parser.add_argument("--requests", type=int, default=200)
        parser.add_argument("--workers", type=int, default=1, help="Celery inference worker processes")
        parser.add_argument("--server", choices=["runserver", "gunicorn"], default="runserver")
        parser.add_argument("--poll", type=float, default=0.1, help="seconds between an integrator's job polls")

    def handle(self, *args, clients: int, requests: int, workers: int, server: str, poll: float, **options):
        from django.contrib.auth.models import Group, User

        from clinical.roles import roles_ensure
        from clinical.tokens import api_token_create

        bodies = []
        for i in range(8):
            sig = demo.synthesize(demo.CASES[i % len(demo.CASES)], fs=500, seed=i)
            bodies.append({"fs": 500, "leads": {lead: np.round(sig[j], 4).tolist() for j, lead in enumerate(LEADS)}})
        with bench_stack(web=True, workers=workers, server=server) as (base, _):
            roles_ensure()
            user = User.objects.create_user("bench-api", password="bench-password-1")
            user.groups.add(Group.objects.get(name="integrator"))
            token = api_token_create(user=user, name="bench")[1]
            connection.close()  # the web process must see these rows; SQLite wants the writer gone
            latencies: list[float] = []
            submits: list[float] = []
            errors: list[str] = []
            counter = iter(range(requests))
            lock = threading.Lock()

            def call(method: str, path: str, body: dict | None = None) -> dict:
                req = urllib.request.Request(f"{base}{path}", method=method,
                                             data=json.dumps(body).encode() if body else None,
                                             headers={"Authorization": f"Bearer {token}",
                                                      "Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=60) as resp:
                    return json.loads(resp.read())

            def client() -> None:
                while True:
                    with lock:
                        i = next(counter, None)
                    if i is None:
                        return
                    body = bodies[i % len(bodies)] | {"patient": {"id": f"BENCH-{i}", "age": 60, "sex": "F"}}
                    t0 = time.perf_counter()
                    try:
                        job = call("POST", "/api/v1/ecgs/", body)
                        with lock:
                            submits.append(time.perf_counter() - t0)
                        while job["state"] not in ("done", "failed"):
                            time.sleep(poll)  # an integrator polling for the result
                            job = call("GET", f"/api/v1/ecgs/{job['id']}/job/")
                        if job["state"] == "failed":
                            raise RuntimeError(job["error"])
                        call("GET", job["result_url"])
                    except Exception as exc:  # counted and reported, the run goes on
                        with lock:
                            errors.append(str(exc))
                        continue
                    with lock:
                        latencies.append(time.perf_counter() - t0)

            started = time.perf_counter()
            threads = [threading.Thread(target=client) for _ in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - started
        lat = np.array(latencies) * 1000
        sub = np.array(submits) * 1000
        broker = "Redis" if settings.ENV.redis_url else "filesystem broker"
        self.stdout.write(
            f"API, {clients} concurrent clients, {requests} uploads ({server}, {connection.vendor}, {broker}, "
            f"{workers} worker{'s' if workers > 1 else ''}): {len(errors)} errors; "
            f"submit request p50 {statistics.median(sub):.0f} / p95 {np.percentile(sub, 95):.0f} / "
            f"p99 {np.percentile(sub, 99):.0f} ms; submit -> result p50 {statistics.median(lat):.0f} / "
            f"p95 {np.percentile(lat, 95):.0f} / p99 {np.percentile(lat, 99):.0f} ms; "
            f"{len(lat) / wall:.1f} results/s over {wall:.0f} s")
        if errors:
            self.stderr.write(f"first error: {errors[0]}")
