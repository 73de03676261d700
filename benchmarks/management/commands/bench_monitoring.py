"""Drift and fairness jobs over a million stored predictions (throwaway PostgreSQL database), time and memory.

The predictions are synthetic but shaped like real ones: demographics and intake features drawn from the fold-9
reference, 5 class probabilities, a 71-statement map, a 192-value embedding, 15% urgent results, of which 80%
were reviewed with per-class outcomes. All of them fall inside both jobs' windows (the worst case). Explanations
(Grad-CAM maps) are left empty: neither job reads them. Each job runs in its own process, so its peak memory
(max RSS) is its own.
"""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.utils import timezone

from benchmarks.stack import throwaway_database
from clinical.recommend import IMMEDIATE, ROUTINE, URGENT
from mlcore.labels import SUPERCLASSES
from mlcore.preprocess import LEADS
from mlcore.reference import Reference

CHUNK = 50_000
N_STATEMENTS = 71
URGENT_SHARE = 0.15
REVIEWED_SHARE = 0.8
EMBEDDING_POOL = 5000


class Command(BaseCommand):
    help = "Benchmark the drift and fairness jobs over N synthetic stored predictions (PostgreSQL)."

    def add_arguments(self, parser):
        parser.add_argument("--n", type=int, default=1_000_000)
        parser.add_argument("--job", choices=["drift", "fairness"], help=argparse_hidden())

    def handle(self, *args, n: int, job: str | None, **options):
        if job:
            return self._job(job)
        if connection.vendor != "postgresql":
            raise CommandError("This benchmark loads rows with COPY: set DATABASE_URL to a PostgreSQL server.")
        with throwaway_database() as test_db:
            t0 = time.perf_counter()
            self._load(n)
            load_s = time.perf_counter() - t0
            with connection.cursor() as cur:
                cur.execute("ANALYZE")
                cur.execute("SELECT pg_total_relation_size('clinical_prediction')")
                size_mb = cur.fetchone()[0] / 1e6
            self.stdout.write(f"loaded {n:,} predictions in {load_s:.0f} s (prediction table {size_mb:,.0f} MB)")
            connection.close()
            env = os.environ | {"DATABASE_URL": settings.DATABASE_URL.rsplit("/", 1)[0] + "/" + test_db,
                                "ECGAPP_DRIFT_WINDOW_HOURS": "48", "ECGAPP_FAIRNESS_WINDOW_DAYS": "30"}
            for kind in ("drift", "fairness"):
                out = subprocess.run([sys.executable, "manage.py", "bench_monitoring", "--job", kind], env=env,
                                     capture_output=True, text=True)
                if out.returncode:
                    raise CommandError(out.stderr[-3000:])
                self.stdout.write(out.stdout.strip().splitlines()[-1])

    def _job(self, kind: str) -> None:
        from monitoring import drift, fairness
        t0 = time.perf_counter()
        if kind == "drift":
            report = drift.drift_report_run(report_id=drift.drift_report_create().pk)
            summary = (f"{report.n_current:,} predictions in the window, {report.n_compared:,} compared, "
                       f"{report.n_drifted} of {report.n_features} features drifted")
        else:
            report = fairness.fairness_report_run(report_id=fairness.fairness_report_create().pk)
            summary = (f"{report.n_predictions:,} predictions, {report.n_reviewed:,} reviewed, "
                       f"{report.metrics.count()} group rates, outcome {report.outcome}")
        seconds = time.perf_counter() - t0
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent across exec.
        status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
        peak_mb = int(status["VmHWM"].split()[0]) / 1024
        self.stdout.write(f"{kind} job ({connection.vendor}): {seconds:.1f} s, peak memory {peak_mb:.0f} MB "
                          f"(VmHWM of the job's process, Django, torch and Evidently included): {summary}")

    def _load(self, n: int) -> None:
        ref = Reference.load(settings.ECG_WEIGHTS_DIR)
        rng = np.random.default_rng(0)
        user = get_user_model().objects.create_user("bench-uploader", password=None)
        reviewer = get_user_model().objects.create_user("bench-reviewer", password=None)
        now = timezone.now()
        n_patients = max(1, n // 5)
        ages = rng.integers(18, 95, n_patients)
        sexes = rng.choice(["M", "F"], n_patients)
        self._copy("clinical_patient", ["id", "pseudonym", "age", "sex", "created_at"],
                   ([i + 1, f"BENCH-{i}", int(ages[i]), sexes[i], now.isoformat()] for i in range(n_patients)))
        flags = {"0": 0, "1": 1, "2": 2, "3+": 3}
        statements = json.dumps({f"S{j}": 0.0123 for j in range(N_STATEMENTS)})
        # Every reference record's JSON once (features, probabilities, outcomes), and a pool of embeddings drawn
        # from the reference's principal axes; rows pick from these, so generating a million rows stays fast.
        feature_json, prob_json, outcome_json = [], [], []
        for i in range(len(ref)):
            feature_json.append(json.dumps({
                "heart_rate": float(ref.columns["heart_rate"][i]), "noise": float(ref.columns["noise"][i]),
                "quality_flags": flags.get(ref.columns["quality_flags"][i], 0),
                **{f"qrs_amp_{lead}": float(ref.columns[f"qrs_amp_{lead}"][i]) for lead in LEADS}}))
            probs = {c: round(float(ref.columns[f"p_{c}"][i]), 4) for c in SUPERCLASSES}
            prob_json.append(json.dumps(probs))
            outcome_json.append(json.dumps({c: ("tp" if probs[c] > 0.5 else "fn") if ref.labels[i][j] else
                                            ("fp" if probs[c] > 0.5 else "tn") for j, c in enumerate(SUPERCLASSES)}))
        pool = np.round(ref.basis.mean + rng.normal(size=(EMBEDDING_POOL, len(ref.basis.variance)))
                        * np.sqrt(ref.basis.variance) @ ref.basis.components, 4)
        embedding_json = [json.dumps(e.tolist()) for e in pool]
        written = 0
        for start in range(0, n, CHUNK):
            m = min(CHUNK, n - start)
            idx = rng.integers(0, len(ref), m)
            emb = rng.integers(0, EMBEDDING_POOL, m)
            patient = rng.integers(1, n_patients + 1, m)
            created = [(now - timedelta(seconds=float(s))).isoformat() for s in rng.uniform(60, 20 * 3600, m)]
            level = np.where(rng.random(m) < URGENT_SHARE,
                             np.where(rng.random(m) < 0.3, IMMEDIATE, URGENT), ROUTINE)
            reviewed = (level != ROUTINE) & (rng.random(m) < REVIEWED_SHARE)
            ids = range(start + 1, start + m + 1)
            records = ([rid, str(uuid.uuid4()), int(patient[k]), int(ages[patient[k] - 1]), sexes[patient[k] - 1],
                        user.pk, created[k], "wfdb", "[]", "0" * 64, 500.0, 5000, "\\x", "{}", feature_json[idx[k]]]
                       for k, rid in enumerate(ids))
            self._copy("clinical_ecgrecord", ["id", "public_id", "patient_id", "age_at_ecg", "sex_at_ecg",
                                              "uploaded_by_id", "uploaded_at", "source_format", "source_files",
                                              "upload_sha256", "fs", "n_samples", "signal", "quality", "features"],
                       records)
            predictions = ([rid, rid, "bench", prob_json[idx[k]], statements, "{}", embedding_json[emb[k]], "{}",
                            False, level[k], 9.5, created[k]] for k, rid in enumerate(ids))
            self._copy("clinical_prediction", ["id", "record_id", "model_version", "superclass", "statements",
                                               "spread", "embedding", "explanations", "needs_review", "top_urgency",
                                               "inference_ms", "created_at"], predictions)
            acks = ([rid, rid, reviewer.pk, created[k], "agree", "{}", outcome_json[idx[k]], "bench"]
                    for k, rid in enumerate(ids) if reviewed[k])
            self._copy("clinical_acknowledgement", ["id", "prediction_id", "reviewer_id", "at", "verdict",
                                                    "finding_verdicts", "outcomes", "note"], acks)
            written += m
            self.stdout.write(f"\r  {written:,} / {n:,} predictions written", ending="")
            self.stdout.flush()
        self.stdout.write("")
        with connection.cursor() as cur:
            for table in ("clinical_patient", "clinical_ecgrecord", "clinical_prediction", "clinical_acknowledgement"):
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"(SELECT COALESCE(MAX(id), 1) FROM {table}))")

    @staticmethod
    def _copy(table: str, columns: list[str], rows) -> None:
        buf = io.StringIO()
        csv.writer(buf).writerows(rows)
        buf.seek(0)
        with connection.cursor() as cur:
            cur.cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)", buf)


def argparse_hidden() -> str:
    import argparse
    return argparse.SUPPRESS
