"""Prometheus metrics of the clinical pipeline. Labels are bounded sets (classes, urgencies), never ids.

Web and worker processes write to one PROMETHEUS_MULTIPROC_DIR (set in settings), so `/metrics` on any web
process reports what every worker process did.
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

INFERENCE_SECONDS = Histogram(
    "ecg_inference_seconds", "Ensemble prediction, findings and actions for one ECG (its evidence follows apart)",
    buckets=(0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5))
# What a worker machine must supply per ECG (capacity planning): process CPU, so waiting for a core is not in it.
WORKER_CPU_SECONDS = Histogram(
    "ecg_worker_cpu_seconds", "CPU seconds a worker spent on one ECG, by step: analysis (result stored) or evidence",
    ["step"], buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2))
QUEUE_WAIT_SECONDS = Histogram(
    "ecg_queue_wait_seconds", "Time from upload until a worker starts the job",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 15, 60, 300))
PREDICTIONS = Counter(
    "ecg_predictions_total", "Results produced, by top diagnostic class and top urgency", ["superclass", "urgency"])
CONFIDENCE = Histogram(
    "ecg_top_class_probability", "Calibrated probability of the most likely diagnostic class",
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0))
JOB_FAILURES = Counter("ecg_job_failures_total", "Analyses that ended failed")
UNACKNOWLEDGED_URGENT = Gauge(
    "ecg_unacknowledged_urgent_results", "Immediate or urgent results waiting for a reviewer",
    multiprocess_mode="mostrecent")
