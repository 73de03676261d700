"""Latency, throughput and memory of the exported ensemble on this machine (``make bench``).

Serving runs one torch thread per process (DESIGN.md), so latency is measured with one thread.
"""
from __future__ import annotations

import json
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from mlcore.ensemble import Ensemble
from mlcore.window import choose_window

RUNS = 200


def _ecg(fs: int, rng: np.random.Generator) -> np.ndarray:
    """A 10 s 12-lead ECG-like signal in mV (content does not change the cost)."""
    t = np.arange(10 * fs) / fs
    beat = np.exp(-(((t % 0.85) / 0.85 - 0.3) / 0.02) ** 2)
    return rng.uniform(-1, 1.5, (12, 1)) * beat + 0.02 * rng.standard_normal((12, len(t)))


def _timings(fn, runs: int, warmup: int = 10) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def _summary(ms: list[float]) -> dict:
    return {"median_ms": round(statistics.median(ms), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "runs": len(ms)}


def bench(weights: str, threads: int = 1, out: str | None = None) -> dict:
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    ens = Ensemble.load(weights)
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    result: dict = {"model_version": ens.version, "members": len(ens.members), "threads": threads,
                    "torch": torch.__version__, "load_s": round(load_s, 3), "latency": {}, "gradcam": {}, "window": {}}
    for fs in (100, 500):
        x = _ecg(fs, rng)
        result["latency"][f"{fs}Hz"] = _summary(_timings(lambda x=x, fs=fs: ens.predict([x], fs), RUNS))
    batch = [_ecg(100, rng) for _ in range(64)]
    ms = _timings(lambda: ens.predict(batch, 100), 10, warmup=2)
    result["throughput_ecg_per_s"] = round(64 / (statistics.median(ms) / 1000), 1)
    x = _ecg(100, rng)
    for label in ens.labels.superclasses:
        result["gradcam"][label] = _summary(_timings(lambda label=label: ens.explain(x, 100, label), 30, 3))
    # Choosing the analysed window of a long upload (mlcore.window) runs at intake, in the web process.
    for fs in (500, 1000):
        long = np.concatenate([_ecg(fs, rng) for _ in range(30)], axis=1)  # (12, 300 s)
        result["window"][f"300s_{fs}Hz"] = _summary(_timings(lambda x=long, fs=fs: choose_window(x, fs), 5, 1))
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

    print(f"ensemble {ens.version}: {len(ens.members)} members, {threads} torch thread(s), load {load_s:.2f} s")
    for k, v in result["latency"].items():
        print(f"  predict one 10 s ECG at {k:>5}: median {v['median_ms']:6.2f} ms  p95 {v['p95_ms']:6.2f} ms "
              f"({v['runs']} runs)")
    print(f"  batched (64 per call, 100 Hz): {result['throughput_ecg_per_s']:.0f} ECG/s")
    for k, v in result["gradcam"].items():
        print(f"  explain (Grad-CAM + per-lead) {k:<5}: median {v['median_ms']:6.2f} ms  p95 {v['p95_ms']:6.2f} ms")
    for k, v in result["window"].items():
        print(f"  choose the analysed 10 s of a 12-lead record of {k.replace('_', ' at ')}: median "
              f"{v['median_ms']:6.0f} ms  p95 {v['p95_ms']:6.0f} ms (one core)")
    print(f"  peak memory (max RSS): {result['peak_rss_mb']:.0f} MB")
    if out:
        Path(out).write_text(json.dumps(result, indent=2))
    return result
