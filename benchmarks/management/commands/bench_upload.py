"""Upload -> result-ready latency through the real view (the upload page, or with --api the API's JSON submit),
broker and a separate Celery worker process; and the submit request's own time (parsing, checks, storing).

Runs against a throwaway database (Django's test database machinery), so the app's own data and its
append-only audit trail are untouched. With REDIS_URL and DATABASE_URL set it measures Redis + PostgreSQL;
without them, the embedded filesystem broker + SQLite.
"""
from __future__ import annotations

import json
import statistics
import time

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connection
from django.test import Client

from benchmarks.stack import bench_stack
from clinical import demo


class Command(BaseCommand):
    help = "Benchmark upload -> result ready (p50/p95) over N uploads with one Celery worker process."

    def add_arguments(self, parser):
        parser.add_argument("--n", type=int, default=120)
        parser.add_argument("--warmup", type=int, default=5)
        parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for one result")
        parser.add_argument("--api", action="store_true", help="submit JSON through POST /api/v1/ecgs/")

    def handle(self, *args, n: int, warmup: int, timeout: float, api: bool, **options):
        with bench_stack():
            submits, latencies = self._run(n, warmup, timeout, api)
        sub, lat = np.array(submits) * 1000, np.array(latencies) * 1000
        broker = "redis" if settings.REDIS_URL else "filesystem"
        via = "API JSON submit" if api else "upload page"
        self.stdout.write(
            f"{via}, {len(lat)} uploads ({connection.vendor} + {broker} broker, 1 worker): submit request median "
            f"{statistics.median(sub):.0f} ms, p95 {np.percentile(sub, 95):.0f} ms; upload -> result ready median "
            f"{statistics.median(lat):.0f} ms, p95 {np.percentile(lat, 95):.0f} ms, max {lat.max():.0f} ms")

    def _run(self, n: int, warmup: int, timeout: float, api: bool) -> tuple[list[float], list[float]]:
        from django.contrib.auth.models import Group, User

        from clinical.models import InferenceJob
        from clinical.roles import roles_ensure

        roles_ensure()
        user = User.objects.create_user("bench", password="bench-password-1")
        user.groups.add(*Group.objects.filter(name__in=["clinician", "integrator"]))
        client = Client()
        client.force_login(user)
        rng_cases = demo.CASES
        payloads = [demo.as_json(demo.synthesize(rng_cases[i % len(rng_cases)], fs=500, seed=i), 500)
                    for i in range(8)]
        submits, out = [], []
        for i in range(warmup + n):
            body = payloads[i % len(payloads)]
            if api:  # the request body is built before the clock starts: an integrator sends bytes
                doc = json.dumps(json.loads(body) | {"patient": {"id": f"BENCH-{i}", "age": 60, "sex": "F"}})
                t0 = time.perf_counter()
                resp = client.post("/api/v1/ecgs/", doc, content_type="application/json")
                ok, public_id = resp.status_code == 202, resp.json().get("id")
            else:
                t0 = time.perf_counter()
                resp = client.post("/ecgs/new/", {"pseudonym": f"BENCH-{i}", "age": "60", "sex": "F",
                                                  "files": [_named(body, f"b{i}.json")]})
                ok, public_id = resp.status_code == 302, resp.get("Location", "").rstrip("/").rsplit("/", 1)[-1]
            submitted = time.perf_counter() - t0
            if not ok:
                raise RuntimeError(f"upload {i} failed with {resp.status_code}")
            while True:
                state = InferenceJob.objects.filter(record__public_id=public_id).values_list("state", flat=True)[0]
                if state in (InferenceJob.State.DONE, InferenceJob.State.FAILED):
                    break
                if time.perf_counter() - t0 > timeout:
                    raise RuntimeError(f"upload {i}: no result after {timeout} s")
                time.sleep(0.002)
            if state == InferenceJob.State.FAILED:
                raise RuntimeError(f"upload {i}: inference failed")
            if i >= warmup:
                submits.append(submitted)
                out.append(time.perf_counter() - t0)
            if (i + 1) % 20 == 0:
                self.stderr.write(f"  {i + 1}/{warmup + n} uploads")
        return submits, out


def _named(data: bytes, name: str):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="application/json")
