"""Drift: production inputs and outputs of the last window against a reference, tested with Evidently.

Each feature (age, sex, intake signal features, calibrated probability per class, top class, embedding
projections) gets one statistical test: Kolmogorov-Smirnov for numbers, chi-square for categories. The
family-wise false-alarm rate ECG_DRIFT_ALPHA is shared out over the features (Bonferroni), so an unshifted window
flags no feature in (1 - alpha) of runs. Above ECG_DRIFT_MAX_ROWS predictions the window is sampled uniformly, which
keeps time and memory flat at a million stored predictions; the summary says how many rows were compared.
"""
from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.files import File
from django.db import transaction
from django.utils import timezone

from clinical.audit import AuditAction, audit_log
from clinical.models import Prediction
from mlcore.labels import SUPERCLASSES
from mlcore.reference import CATEGORICAL, FEATURES, NUMERICAL, Reference, drift_rows
from monitoring import metrics
from monitoring.alerts import alert_raise
from monitoring.models import DriftFeature, DriftReport
from monitoring.registry import serving_weights_dir
from monitoring.running import report_execute, report_progress

CHUNK = 2000
MIN_REFERENCE_VALUES = 30
Progress = Callable[[int, str], None]


def drift_report_create(*, requested_by=None, now=None) -> DriftReport:
    """A queued report over the window ending now, with the settings it will run with."""
    now = now or timezone.now()
    report = DriftReport.objects.create(
        requested_by=requested_by, window_end=now,
        window_start=now - timedelta(hours=settings.ECG_DRIFT_WINDOW_HOURS), reference=settings.ECG_DRIFT_REFERENCE,
        stage="Waiting for a worker",
        config={"window_hours": settings.ECG_DRIFT_WINDOW_HOURS, "min_rows": settings.ECG_DRIFT_MIN_ROWS,
                "max_rows": settings.ECG_DRIFT_MAX_ROWS, "alpha": settings.ECG_DRIFT_ALPHA,
                "num_method": "ks", "cat_method": "chisquare"})
    if requested_by is not None:
        audit_log(actor=requested_by, action=AuditAction.MONITORING_DRIFT_REQUESTED, object_type="DriftReport",
                  object_id=report.pk, details={"window_hours": settings.ECG_DRIFT_WINDOW_HOURS})
    return report


def window_label(report: DriftReport) -> str:
    """How long a window the report compared, from its stored bounds ("24 h", "90 min"): what it used, whatever
    the setting says now."""
    minutes = round((report.window_end - report.window_start).total_seconds() / 60)
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"


def _window_ids(start, end, cap: int, seed: int) -> tuple[int, list[int]]:
    """(predictions in [start, end), up to `cap` of their ids drawn uniformly at random)."""
    ids = list(Prediction.objects.filter(created_at__gte=start, created_at__lt=end).values_list("id", flat=True)
               .iterator(chunk_size=20000))
    total = len(ids)
    if total > cap:
        ids = random.Random(seed).sample(ids, cap)
    return total, sorted(ids)


def production_rows(ids: list[int], reference: Reference, progress: Progress | None = None) -> dict[str, list]:
    """Drift features of these predictions, read in chunks (built by the same function as the reference)."""
    cols: dict[str, list] = {k: [] for k in FEATURES}
    for start in range(0, len(ids), CHUNK):
        rows = list(Prediction.objects.filter(id__in=ids[start:start + CHUNK]).values_list(
            "record__age_at_ecg", "record__sex_at_ecg", "record__features", "superclass", "embedding"))
        if not rows:
            continue
        age, sex, features, superclass, embedding = zip(*rows)
        p = np.array([[s.get(c, np.nan) for c in SUPERCLASSES] for s in superclass], dtype=np.float64)
        dims = {len(e or []) for e in embedding}
        emb = np.array(embedding, dtype=np.float64) if dims == {len(reference.basis.mean)} else None
        part = drift_rows(age=age, sex=sex, features=[f or {} for f in features], superclass=p, embedding=emb,
                          basis=reference.basis)
        for k in FEATURES:
            cols[k].extend(part[k])
        if progress:
            progress(min(start + CHUNK, len(ids)), f"Reading predictions ({min(start + CHUNK, len(ids)):,} of "
                                                   f"{len(ids):,})")
    return cols


def _present(values) -> np.ndarray:
    arr = np.asarray(values, dtype=object)
    return np.array([v is not None and not (isinstance(v, float) and np.isnan(v)) for v in arr], dtype=bool)


def _summary(values, kind: str) -> str:
    arr = np.asarray(values, dtype=object)[_present(values)]
    if not len(arr):
        return ""
    if kind == "numerical":
        return f"median {np.median(arr.astype(float)):.3g}"
    cats, counts = np.unique(arr.astype(str), return_counts=True)
    return f"{cats[counts.argmax()]} {counts.max() / len(arr):.0%}"


def _effect(cur, ref, kind: str) -> float:
    """KS D for numbers; total variation distance between category frequencies for categories."""
    cur = np.asarray(cur, dtype=object)[_present(cur)]
    ref = np.asarray(ref, dtype=object)[_present(ref)]
    if kind == "numerical":
        from scipy.stats import ks_2samp
        return float(ks_2samp(cur.astype(float), ref.astype(float)).statistic)
    cats = sorted(set(cur.astype(str)) | set(ref.astype(str)))
    fc = np.array([(cur.astype(str) == c).mean() for c in cats])
    fr = np.array([(ref.astype(str) == c).mean() for c in cats])
    return float(np.abs(fc - fr).sum() / 2)


def evidently_drift(current: dict[str, list], reference: dict[str, list], features: list[str], alpha: float,
                    html_path: Path | None = None) -> dict[str, float]:
    """Evidently's per-feature p-values (KS / chi-square) at the Bonferroni threshold alpha / len(features)."""
    os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently's telemetry; must be set before its import
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=[f for f in features if f in NUMERICAL],
                                categorical_columns=[f for f in features if f in CATEGORICAL])

    def frame(cols: dict[str, list]):
        return Dataset.from_pandas(pd.DataFrame({f: cols[f] for f in features}), data_definition=definition)

    report = Report([DataDriftPreset(columns=features, num_method="ks", cat_method="chisquare",
                                     threshold=alpha / len(features))])
    snapshot = report.run(frame(current), frame(reference))
    if html_path is not None:
        snapshot.save_html(str(html_path))
    p_values = {}
    for metric in snapshot.dict()["metrics"]:
        column = metric["config"].get("column")
        if column in features:
            p_values[column] = float(metric["value"])
    return p_values


def drift_report_run(*, report_id: int) -> DriftReport:
    """Compute a queued drift report: features, per-feature tests, drift share, the HTML file, alerts."""
    return report_execute(DriftReport, report_id, _run, "Counting predictions in the window")


def _run(report: DriftReport) -> None:
    cfg = report.config
    ref = Reference.load(serving_weights_dir())
    total, ids = _window_ids(report.window_start, report.window_end, cfg["max_rows"], seed=report.pk)
    report.n_current, report.model_version = total, ref.model_version
    if total < cfg["min_rows"]:
        _finish(report, DriftReport.Outcome.INSUFFICIENT,
                f"Insufficient data: {total:,} predictions in the window, {cfg['min_rows']:,} needed")
        return
    report_progress(report, 5, f"Reading {len(ids):,} of {total:,} predictions")
    current = production_rows(ids, ref,
                              lambda done, stage: report_progress(report, 5 + int(55 * done / len(ids)), stage))
    if report.reference.startswith("production:"):
        days = int(report.reference.split(":", 1)[1].rstrip("d"))
        n_ref, ref_ids = _window_ids(report.window_start - timedelta(days=days), report.window_start,
                                     cfg["max_rows"], seed=report.pk + 1)
        if n_ref < cfg["min_rows"]:
            _finish(report, DriftReport.Outcome.INSUFFICIENT,
                    f"Insufficient data: {n_ref:,} reference predictions in the {days} days before the window, "
                    f"{cfg['min_rows']:,} needed")
            return
        reference = production_rows(ref_ids, ref)
    else:
        reference = {k: v.tolist() for k, v in ref.columns.items()}
    report.n_compared, report.n_reference = len(ids), len(reference["age"])

    # A feature is tested only where both sides have enough values (old records have no intake features).
    present = {f: (int(_present(current[f]).sum()), int(_present(reference[f]).sum())) for f in FEATURES}
    tested = [f for f in FEATURES if present[f][0] >= cfg["min_rows"] and present[f][1] >= MIN_REFERENCE_VALUES]
    if not tested:
        _finish(report, DriftReport.Outcome.INSUFFICIENT, "Insufficient data: no feature has enough values")
        return
    report_progress(report, 65, f"Testing {len(tested)} features with Evidently")
    threshold = cfg["alpha"] / len(tested)
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / f"drift-{report.pk}.html"
        p_values = evidently_drift(current, reference, tested, cfg["alpha"], html)
        report_progress(report, 90, "Saving the report")
        with html.open("rb") as fh:
            report.html.save(html.name, File(fh), save=False)
    rows = []
    for f in FEATURES:
        kind = "numerical" if f in NUMERICAL else "categorical"
        p = p_values.get(f)
        rows.append(DriftFeature(
            report=report, feature=f, kind=kind, method="ks" if kind == "numerical" else "chisquare", p_value=p,
            threshold=threshold, drifted=p is not None and p < threshold, n_current=present[f][0],
            statistic=_effect(current[f], reference[f], kind) if f in tested else None,
            current_summary=_summary(current[f], kind), reference_summary=_summary(reference[f], kind)))
    drifted = [r for r in rows if r.drifted]
    report.n_features, report.n_drifted = len(tested), len(drifted)
    report.drift_share = len(drifted) / len(tested)
    with transaction.atomic():
        DriftFeature.objects.filter(report=report).delete()
        DriftFeature.objects.bulk_create(rows)
        outcome = DriftReport.Outcome.DRIFT if drifted else DriftReport.Outcome.NO_DRIFT
        _finish(report, outcome, f"{len(drifted)} of {len(tested)} features drifted")
        if drifted:
            names = ", ".join(f"{r.feature} (p = {r.p_value:.1e})" for r in drifted)
            alert_raise(report=report, metric="drifted_features", value=len(drifted), threshold=0,
                        message=f"Drift in {len(drifted)} of {len(tested)} monitored features over "
                                f"{report.n_compared:,} predictions: {names}.")
    transaction.on_commit(lambda: metrics.DRIFT_SHARE.set(report.drift_share))


def _finish(report: DriftReport, outcome: str, stage: str) -> None:
    report.outcome, report.stage, report.progress = outcome, stage, 100
    report.state, report.finished_at = DriftReport.State.DONE, timezone.now()
    report.save()
