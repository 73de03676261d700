"""API throughput: JSON submit -> result available, N concurrent clients, through HTTP, broker and workers.

In the same run it times the bare ensemble forward pass (this process, one torch thread, the uploads' own
signals) and reads the CPU the worker, web and client processes used from /proc, so that the CPU a result costs
is stated as a multiple of the forward pass (issue 17). The workers consume "inference,evidence" as in production:
evidence is computed after the results, and its CPU is reported apart (what the workers used until every pending
evidence was stored after the last result).

``--shadow`` runs the same load twice in one run, without and then with a version in shadow (a copy of the committed
weights under another version name, registered and put in shadow, its worker a separate process on the "shadow"
queue started with nice 10 so the serving path keeps priority), and prints submit -> result p50/p95 of both."""
from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connection
from django.db.models import Avg, Count

from benchmarks.stack import bench_stack, cpu_seconds, machine_cpu_seconds, named_cpu_seconds
from clinical import demo
from clinical.models import Prediction
from mlcore.preprocess import LEADS


def step_cpu(prometheus_dir: str) -> dict[str, float]:
    """Sum and count of ecg_worker_cpu_seconds by step, as every worker process has written them so far."""
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=prometheus_dir)
    out = {f"{s}_{k}": 0.0 for s in ("analysis", "evidence") for k in ("sum", "count")}
    for metric in registry.collect():
        if metric.name == "ecg_worker_cpu_seconds":
            for sample in metric.samples:
                kind = sample.name.rsplit("_", 1)[1]
                if kind in ("sum", "count"):
                    out[f"{sample.labels['step']}_{kind}"] += sample.value
    return out


class Command(BaseCommand):
    help = "Benchmark the integration API: concurrent JSON submits until each result is available."

    def add_arguments(self, parser):
        parser.add_argument("--clients", type=int, default=10)
        parser.add_argument("--requests", type=int, default=200)
        parser.add_argument("--workers", default="1", help="Celery inference worker processes; a list (1,2,4) runs "
                                                           "the load once per count and prints the curve")
        parser.add_argument("--server", choices=["runserver", "gunicorn"], default="runserver")
        parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes")
        parser.add_argument("--poll", type=float, default=0.1, help="seconds between an integrator's job polls")
        parser.add_argument("--redis-db", type=int, default=15, help="the Redis database the run flushes and uses")
        parser.add_argument("--format", choices=["json", "wfdb"], default="json",
                            help="what the clients submit: the JSON body (mV as text) or a multipart WFDB pair "
                                 "(.hea + 16-bit .dat, as a cart exports it)")
        parser.add_argument("--evidence", action="store_true",
                            help="submit with \"evidence\": true (computed after each result, as a page upload "
                                 "does) instead of the API's default, evidence when first asked for")
        parser.add_argument("--shadow", action="store_true",
                            help="run the load twice, without and with a shadow version (the committed weights "
                                 "under another name, on its own niced worker), and compare submit -> result")
        parser.add_argument("--passes", type=int, default=1,
                            help="with --shadow: how many (without, with) pairs to run, alternating (default 1)")

    def handle(self, *args, workers: str, shadow: bool = False, passes: int = 1, **options):
        if shadow:
            count = int(str(workers).split(",")[0])
            runs = []  # alternating, so that a slow spell of a shared machine falls on both sides
            for _ in range(passes):
                runs += [("without", self.run_load(workers=count, **options)),
                         ("with", self.run_load(workers=count, shadow=True, **options))]
            self.stdout.write(f"Shadow inference and the serving path (same load, same run, {passes} pass"
                              f"{'es' if passes > 1 else ''} each, alternating):")
            self.stdout.write("  shadow   results/s  submit->result p50 / p95 ms  errors  shadow results stored "
                              "(warm-up included)  shadow caught up after the load")
            for label, c in runs:
                stored = f"{c['shadow_stored']} of {c['results']}" if label == "with" else "-"
                caught = f"{c['shadow_catch_up_s']:.0f} s" if label == "with" else "-"
                self.stdout.write(f"  {label:>7}  {c['results_per_s']:>9.1f}  {c['p50_ms']:>12.0f} / "
                                  f"{c['p95_ms']:<12.0f}  {c['errors']:>6}  {stored:>21}  {caught:>10}")
            if passes > 1:
                for label in ("without", "with"):
                    mine = [c for lab, c in runs if lab == label]
                    self.stdout.write(f"  {label:>7}  median of {passes}: p50 "
                                      f"{statistics.median(c['p50_ms'] for c in mine):.0f} / p95 "
                                      f"{statistics.median(c['p95_ms'] for c in mine):.0f} ms")
            return
        self.scale_out(workers=workers, **options)

    def scale_out(self, *, workers: str, **options):
        counts = [int(w) for w in str(workers).split(",") if w.strip()]
        curve = [self.run_load(workers=w, **options) for w in counts]
        if len(curve) > 1:
            self.stdout.write("Scale-out on this machine (same load, one run per worker count):")
            self.stdout.write("  workers  results/s  submit->result p50 / p95 ms  errors  machine CPU per result ms")
            for c in curve:
                self.stdout.write(f"  {c['workers']:>7}  {c['results_per_s']:>9.1f}  {c['p50_ms']:>12.0f} / "
                                  f"{c['p95_ms']:<12.0f}  {c['errors']:>6}  {c['machine_ms']:>10.0f}")

    def run_load(self, *, clients: int, requests: int, workers: int, server: str, poll: float, redis_db: int,
                 evidence: bool = False, web_workers: int = 2, format: str = "json", shadow: bool = False,
                 **options) -> dict:
        from django.contrib.auth.models import Group, User

        from clinical.roles import roles_ensure
        from clinical.tokens import api_token_create

        bodies = []
        for i in range(8):
            sig = demo.synthesize(demo.CASES[i % len(demo.CASES)], fs=500, seed=i)
            bodies.append({"fs": 500, "leads": {lead: np.round(sig[j], 4).tolist() for j, lead in enumerate(LEADS)}})
        pids: dict = {}
        with bench_stack(web=True, workers=workers, server=server, redis_db=redis_db, queues="inference,evidence",
                         pids=pids, web_workers=web_workers) as (base, env):
            roles_ensure()
            user = User.objects.create_user("bench-api", password="bench-password-1")
            user.groups.add(Group.objects.get(name="integrator"))
            token = api_token_create(user=user, name="bench")[1]
            shadow_worker = _shadow_start(env) if shadow else None
            connection.close()  # the web process must see these rows; SQLite wants the writer gone
            latencies: list[float] = []
            submits: list[float] = []
            errors: list[str] = []
            counter = iter(range(requests))
            lock = threading.Lock()

            # Each upload's leads encoded once: the clients share these 2 cores with the system they measure.
            encoded = [json.dumps(b)[:-1].encode() for b in bodies]
            asked = ', "evidence": true' if evidence else ""
            pairs = _wfdb_pairs(bodies) if format == "wfdb" else []

            def submission(i: int) -> tuple[bytes, str]:
                """(body, content type) of upload i: the JSON document, or a multipart WFDB pair."""
                if format == "json":
                    patient = json.dumps({"id": f"BENCH-{i}", "age": 60, "sex": "F"})
                    return encoded[i % len(encoded)] + f', "patient": {patient}{asked}}}'.encode(), "application/json"
                fields = {"pseudonym": f"BENCH-{i}", "age": "60", "sex": "F"}
                if evidence:
                    fields["evidence"] = "true"
                return _multipart(fields, pairs[i % len(pairs)])

            def call(method: str, path: str, body: bytes | None = None,
                     content_type: str = "application/json") -> dict:
                req = urllib.request.Request(f"{base}{path}", method=method, data=body,
                                             headers={"Authorization": f"Bearer {token}",
                                                      "Content-Type": content_type})
                with urllib.request.urlopen(req, timeout=60) as resp:
                    return json.loads(resp.read())

            def client() -> None:
                while True:
                    with lock:
                        i = next(counter, None)
                    if i is None:
                        return
                    body, content_type = submission(i)
                    t0 = time.perf_counter()
                    try:
                        job = call("POST", "/api/v1/ecgs/", body, content_type)
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

            def cpu() -> dict:
                me = resource.getrusage(resource.RUSAGE_SELF)
                return {"workers": cpu_seconds(pids["workers"]), "web": cpu_seconds(pids["web"]),
                        "clients": me.ru_utime + me.ru_stime, "postgres": named_cpu_seconds("postgres"),
                        "redis": named_cpu_seconds("redis-server"), "machine": machine_cpu_seconds(),
                        **step_cpu(env["PROMETHEUS_MULTIPROC_DIR"])}

            def evidence_drained(limit_s: float) -> float:
                t0 = time.perf_counter()
                while Prediction.objects.filter(evidence_state=Prediction.EvidenceState.PENDING).exists():
                    if time.perf_counter() - t0 > limit_s:
                        errors.append(f"evidence still pending {limit_s:.0f} s after the last result")
                        break
                    time.sleep(0.5)
                return time.perf_counter() - t0

            # Warm-up, not counted: the workers have loaded their model and the web processes their code.
            counter = iter(range(requests, requests + 2 * workers))
            client()
            evidence_drained(120)
            if shadow:
                # As in service, where the shadow's worker has long started and loaded its model: its analyses
                # of the warm-up are stored before anything is measured.
                from monitoring.models import ShadowPrediction

                t_ready = time.perf_counter()
                while (ShadowPrediction.objects.count() < Prediction.objects.count()
                       and time.perf_counter() - t_ready < 300):
                    time.sleep(0.5)
            latencies.clear()
            submits.clear()
            counter = iter(range(requests))
            # What the idle processes use (broker polling, heartbeats), so that it is not taken for work.
            idle_from, idle_t0 = cpu(), time.perf_counter()
            time.sleep(5)
            idle = {k: (v - idle_from[k]) / (time.perf_counter() - idle_t0) for k, v in cpu().items()}
            before = cpu()
            started = time.perf_counter()
            threads = [threading.Thread(target=client) for _ in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - started
            loaded = cpu()
            pending_at_end = Prediction.objects.filter(evidence_state=Prediction.EvidenceState.PENDING).count()
            drain = evidence_drained(900)
            drained = cpu()
            rows = Prediction.objects.aggregate(analysis=Avg("inference_ms"), evidence=Avg("evidence_ms"),
                                                evidence_n=Count("evidence_ms"))
            failed_evidence = Prediction.objects.filter(evidence_state=Prediction.EvidenceState.FAILED).count()
            forward_s = self.forward_pass_seconds(bodies)
            # Every stored result, the warm-up's too, has its shadow result once the shadow queue is drained.
            analysed = Prediction.objects.count()
            shadow_stored = _shadow_drained(shadow_worker, expected=analysed) if shadow else 0
            shadow_catch_up_s = time.perf_counter() - (started + wall)  # from the load's end to the last stored
        lat = np.array(latencies) * 1000
        sub = np.array(submits) * 1000
        broker = "Redis" if settings.REDIS_URL else "filesystem broker"
        self.stdout.write(
            f"API, {clients} concurrent clients, {requests} uploads ({server}, {connection.vendor}, {broker}, "
            f"{workers} worker{'s' if workers > 1 else ''}"
            f"{', a shadow version on its own niced worker' if shadow else ''}"
            f"{f', {web_workers} web processes' if server == 'gunicorn' else ''}, {format} submits, evidence "
            f"{'after each result' if evidence else 'when asked for (none asked)'}): {len(errors)} errors; "
            f"submit request p50 {statistics.median(sub):.0f} / p95 {np.percentile(sub, 95):.0f} / "
            f"p99 {np.percentile(sub, 99):.0f} ms; submit -> result p50 {statistics.median(lat):.0f} / "
            f"p95 {np.percentile(lat, 95):.0f} / p99 {np.percentile(lat, 99):.0f} ms; "
            f"{len(lat) / wall:.1f} results/s over {wall:.0f} s")
        n = max(len(lat), 1)
        used = {k: loaded[k] - before[k] for k in before}
        others = used["machine"] - sum(used[k] for k in ("workers", "web", "clients", "postgres", "redis"))
        per = {k: v / n for k, v in used.items()}
        evidence_cpu = drained["workers"] - loaded["workers"]
        steps = {s: (drained[f"{s}_sum"] - before[f"{s}_sum"]) / max(drained[f"{s}_count"] - before[f"{s}_count"], 1)
                 for s in ("analysis", "evidence")}
        self.stdout.write(
            f"bare ensemble forward pass (this process, 1 thread, 500 Hz 10 s upload): {forward_s * 1000:.1f} ms; "
            f"CPU per result during the load: workers {per['workers'] * 1000:.0f} ms "
            f"(= {per['workers'] / forward_s:.1f}x the forward pass), web {per['web'] * 1000:.0f} ms, "
            f"clients {per['clients'] * 1000:.0f} ms, PostgreSQL {per['postgres'] * 1000:.0f} ms, Redis "
            f"{per['redis'] * 1000:.0f} ms, other processes {others / n * 1000:.0f} ms; "
            f"machine {per['machine'] * 1000:.0f} ms "
            f"(= {per['machine'] / forward_s:.1f}x); idle before the load, CPU-s/s: workers {idle['workers']:.3f}, "
            f"web {idle['web']:.3f}, machine {idle['machine']:.3f}")
        self.stdout.write(
            f"per result on the worker (rows, wall): analysis {rows['analysis'] or 0:.0f} ms, evidence "
            f"{rows['evidence'] or 0:.0f} ms ({rows['evidence_n']} stored, {failed_evidence} failed); "
            f"{pending_at_end} evidence still pending at the last result, all stored {drain:.0f} s later, "
            f"using {evidence_cpu:.1f} more worker CPU-seconds")
        self.stdout.write(
            f"worker CPU per ECG by step (ecg_worker_cpu_seconds, in the service): analysis "
            f"{steps['analysis'] * 1000:.1f} ms (= {steps['analysis'] / forward_s:.1f}x the forward pass), evidence "
            f"{steps['evidence'] * 1000:.1f} ms (= {steps['evidence'] / forward_s:.1f}x)")
        if errors:
            self.stderr.write(f"first error: {errors[0]}")
        return {"workers": workers, "results_per_s": len(lat) / wall, "p50_ms": float(np.median(lat)) if n else 0.0,
                "p95_ms": float(np.percentile(lat, 95)) if len(lat) else 0.0, "errors": len(errors),
                "machine_ms": per["machine"] * 1000, "results": analysed, "shadow_stored": shadow_stored,
                "shadow_catch_up_s": shadow_catch_up_s}

    def forward_pass_seconds(self, bodies: list[dict]) -> float:
        """Median seconds of one ensemble forward pass (preprocessing included) on the uploads' signals, one torch
        thread as the workers run it, after a warm-up."""
        import torch

        from clinical.services import get_model

        torch.set_num_threads(1)
        ens = get_model()
        signals = [np.array([b["leads"][lead] for lead in LEADS], dtype=np.float32) for b in bodies]
        for sig in signals:
            ens.predict([sig], 500)
        times = []
        for _ in range(5):
            for sig in signals:
                t0 = time.perf_counter()
                ens.predict([sig], 500)
                times.append(time.perf_counter() - t0)
        return statistics.median(times)


def _shadow_start(env: dict) -> subprocess.Popen:
    """A copy of the committed weights registered under another version name and put in shadow, and its worker: a
    separate process on the "shadow" queue, niced so that the serving path keeps priority."""
    from monitoring import registry

    with tempfile.TemporaryDirectory() as folder:
        export = Path(folder) / "export"
        shutil.copytree(settings.ECG_WEIGHTS_DIR, export)
        manifest = json.loads((export / "manifest.json").read_text())
        manifest["model_version"] = f"{manifest['model_version']}-shadow-bench"
        (export / "manifest.json").write_text(json.dumps(manifest))
        version = registry.model_version_import(path=export)
    registry.model_shadow_start(version=version, user=None)
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "ecgapp", "worker", "--loglevel", "WARNING",
                             "-Q", "shadow", "--concurrency", "1", "--pool", "prefork", "-n", "bench-shadow@%h"],
                            env=env, preexec_fn=lambda: os.nice(10))


def _shadow_drained(worker: subprocess.Popen, *, expected: int, limit_s: float = 600) -> int:
    """Shadow predictions stored once the shadow queue is drained (or after limit_s); the worker stopped."""
    from monitoring.models import ShadowPrediction

    t0 = time.perf_counter()
    try:
        while ShadowPrediction.objects.count() < expected and time.perf_counter() - t0 < limit_s:
            time.sleep(0.5)
        return ShadowPrediction.objects.count()
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()


def _wfdb_pairs(bodies: list[dict]) -> list[list[tuple[str, bytes]]]:
    """Each upload as the .hea and 16-bit .dat a cart would export (1 µV steps: 120 KB for 10 s at 500 Hz)."""
    import tempfile
    from pathlib import Path

    pairs = []
    with tempfile.TemporaryDirectory() as folder:
        for k, b in enumerate(bodies):
            signal = np.array([b["leads"][lead] for lead in LEADS])
            demo.write_wfdb(signal, 500, f"bench{k}", folder)
            pairs.append([(f"bench{k}.{ext}", (Path(folder) / f"bench{k}.{ext}").read_bytes())
                          for ext in ("hea", "dat")])
    return pairs


def _multipart(fields: dict[str, str], files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body with ``fields`` and each file under the name "files"."""
    boundary = "bench-boundary-7f3a9c"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    for name, data in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"
