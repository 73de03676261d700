"""Shadow evaluation (issue 20): a registered version runs beside the serving model on every new ECG, on its own
queue ("shadow"), through the same code path (clinical.services._inference_analyse with its ensemble); its outputs
are stored as ShadowPrediction rows, which no clinical page or API reads and no action uses. The selectors here make
the comparison compliance reads before a promotion: agreement per label, changed top urgencies, discrimination on
reviewer-confirmed outcomes with confidence intervals, drift of the shadow's outputs against its own fold-9
reference, and latency.
"""
from __future__ import annotations

import json
import math
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from clinical.models import Prediction
from clinical.recommend import URGENCY_ORDER
from mlcore import metrics
from monitoring.calibration import reviewed_results
from monitoring.models import ModelVersion, ShadowPrediction

MIN_OUTCOMES = 5  # positives and negatives each, below which a label's AUC and rates say "too few"
DRIFT_MIN_N = 20  # shadowed ECGs below which a histogram test says "too few"
LATENCY_KEYS = ("p50", "p95")
DEFER_FIRST_S, DEFER_MAX_STEP_S = 5.0, 60.0  # a shadow analysis's waits while serving work is in hand
POLL_S = 1.0  # how often a dedicated shadow worker looks again


def shadow_ensemble(version: ModelVersion):
    """The version's ensemble under its own calibration in force (a site calibration activated for it, else its
    manifest's), loaded once per process."""
    from mlcore.ensemble import load_cached
    from monitoring.calibration import ensemble_calibrated
    from monitoring.registry import version_weights_dir

    return ensemble_calibrated(load_cached(version_weights_dir(version), settings.ECG_TORCH_THREADS))


def serving_busy() -> bool:
    """Serving work in hand: an ECG uploaded in the last ECG_SHADOW_QUIET_S seconds (traffic is flowing: the web
    processes and the database are at work even while no analysis is queued), an analysis queued or running, or a
    result's evidence being computed (created within the longest a shadow waits, so that a row left behind by a
    dead worker does not hold shadows back for good). Indexed queries only."""
    from clinical.models import EcgRecord, InferenceJob

    now = timezone.now()
    newest = EcgRecord.objects.order_by("-pk").values_list("uploaded_at", flat=True).first()
    if newest is not None and newest >= now - timedelta(seconds=settings.ECG_SHADOW_QUIET_S):
        return True
    if InferenceJob.objects.filter(state__in=(InferenceJob.State.QUEUED, InferenceJob.State.RUNNING)).exists():
        return True
    since = now - timedelta(seconds=settings.ECG_SHADOW_DEFER_MAX_S)
    return Prediction.objects.filter(created_at__gte=since, evidence_state=Prediction.EvidenceState.PENDING).exists()


def dedicated_worker(app) -> bool:
    """This process is a worker that consumes the shadow queue alone (as `celery worker -Q shadow`): it may wait in
    the task, holding nothing else up. A worker of several queues (the embedded one, compose's monitoring worker)
    must not, and outside a worker (eager tasks) Celery lists every queue."""
    try:
        return set(app.amqp.queues.consume_from) == {"shadow"}
    except Exception:  # noqa: BLE001  (no queue information: not dedicated)
        return False


def wait_while_busy(max_s: float, poll_s: float = POLL_S) -> None:
    """Sleep until serving_busy() is False or max_s has passed, checking every poll_s. One message waits here on a
    dedicated worker, however many are queued behind it: a query a second in all."""
    waited = 0.0
    while waited < max_s:
        time.sleep(poll_s)
        waited += poll_s
        if not serving_busy():
            return


def defer_wait_s(deferred_s: float) -> float:
    """How long a shadow analysis that has waited deferred_s waits next: doubling from DEFER_FIRST_S up to
    DEFER_MAX_STEP_S (a queue of waiting messages costs the database a query each per step, not a busy loop)."""
    return min(DEFER_MAX_STEP_S, max(DEFER_FIRST_S, deferred_s))


def shadow_run(*, version_id: int, prediction_id: int) -> ShadowPrediction | None:
    """The shadow version's analysis of a serving prediction's ECG, stored once; None when the version left shadow
    meanwhile. Writes nothing but the ShadowPrediction row."""
    from clinical.services import _inference_analyse  # one code path for serving and shadow

    version = ModelVersion.objects.get(pk=version_id)
    if version.state != ModelVersion.State.SHADOW:
        return None
    existing = ShadowPrediction.objects.filter(version=version, prediction_id=prediction_id).first()
    if existing is not None:
        return existing
    prediction = Prediction.objects.select_related("record").get(pk=prediction_id)
    a = _inference_analyse(prediction.record, shadow_ensemble(version))
    labels, out = a.labels, a.output
    try:
        with transaction.atomic():
            return ShadowPrediction.objects.create(
                version=version, prediction=prediction, calibration_version=a.calibration_version,
                superclass=dict(zip(labels.superclasses, np.round(out.superclass[0].astype(float), 4).tolist())),
                statements=dict(zip(labels.statements, np.round(out.statements[0].astype(float), 4).tolist())),
                flagged=[c.finding_key for c in a.candidates], top_urgency=a.actions[0].urgency,
                rule_ids=[r.rule_id for r in a.actions], needs_review=a.needs_review,
                inference_ms=round(a.elapsed_ms, 1))
    except IntegrityError:  # another delivery of the same message stored it first
        return ShadowPrediction.objects.get(version=version, prediction_id=prediction_id)


# -- comparison -----------------------------------------------------------------------------------------------------

def _pairs(version: ModelVersion) -> list[ShadowPrediction]:
    return list(ShadowPrediction.objects.filter(version=version).select_related("prediction")
                .prefetch_related("prediction__findings").order_by("id"))


def _serving_flagged(p: Prediction) -> set[str]:
    return {f.overlay_key for f in p.findings.all() if f.head in ("superclass", "statements")}


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "p50": None, "p95": None}
    a = np.asarray(values, dtype=np.float64)
    return {"n": len(a), "p50": round(float(np.percentile(a, 50)), 1), "p95": round(float(np.percentile(a, 95)), 1)}


def _ci(pair) -> list | None:
    return None if pair is None or any(math.isnan(x) for x in pair) else [round(pair[0], 3), round(pair[1], 3)]


def _num(x: float) -> float | None:
    return None if x is None or math.isnan(x) else round(float(x), 3)


def agreement(pairs: list[ShadowPrediction]) -> list[dict]:
    """Per label either model flagged at least once (superclasses first): both / neither / only one, % agreement."""
    flagged = [(_serving_flagged(sp.prediction), set(sp.flagged)) for sp in pairs]
    keys = set().union(*(a | b for a, b in flagged)) if flagged else set()
    n, rows = len(pairs), []
    for key in sorted(keys, key=lambda k: (not k.startswith("superclass:"), k)):
        both = sum(1 for a, b in flagged if key in a and key in b)
        only_serving = sum(1 for a, b in flagged if key in a and key not in b)
        only_shadow = sum(1 for a, b in flagged if key not in a and key in b)
        neither = n - both - only_serving - only_shadow
        rows.append({"label": key, "both": both, "neither": neither, "only_serving": only_serving,
                     "only_shadow": only_shadow, "agreement_pct": round(100 * (both + neither) / n, 1)})
    return rows


def urgency_changes(pairs: list[ShadowPrediction]) -> dict:
    """serving top urgency x shadow top urgency: counts, most urgent first, and how many changed."""
    order = list(URGENCY_ORDER)
    table = Counter((sp.prediction.top_urgency, sp.top_urgency) for sp in pairs)
    return {"urgencies": order,
            "rows": [{"serving": s, "counts": [table.get((s, h), 0) for h in order]} for s in order],
            "changed": sum(c for (s, h), c in table.items() if s != h)}


def _model_rates(y: np.ndarray, score: np.ndarray, flagged: np.ndarray) -> dict:
    pos, neg = int(y.sum()), int(len(y) - y.sum())
    row = {"n_positive": pos, "n_negative": neg, "too_few": pos < MIN_OUTCOMES or neg < MIN_OUTCOMES}
    if row["too_few"]:
        return row | {"auc": None, "auc_ci": None, "sensitivity": None, "sensitivity_ci": None,
                      "specificity": None, "specificity_ci": None}
    tp, tn = int((flagged & (y == 1)).sum()), int((~flagged & (y == 0)).sum())
    return row | {"auc": _num(metrics.auc(y, score)),
                  "auc_ci": _ci(metrics.bootstrap_macro_auc_ci(y[:, None], score[:, None])),
                  "sensitivity": _num(tp / pos), "sensitivity_ci": _ci(metrics.wilson(tp, pos)),
                  "specificity": _num(tn / neg), "specificity_ci": _ci(metrics.wilson(tn, neg))}


def outcomes(pairs: list[ShadowPrediction]) -> dict:
    """Per superclass, on reviewer-confirmed outcomes of the shadowed serving results: each model's AUC with a
    bootstrap CI, and its sensitivity/specificity at its own threshold (what it flagged) with Wilson CIs."""
    by_prediction = {sp.prediction_id: sp for sp in pairs}
    reviewed = []
    for mv in sorted({sp.prediction.model_version for sp in pairs}):
        reviewed += [r for r in reviewed_results(model_version=mv) if r.prediction_id in by_prediction]
    codes = list(pairs[0].superclass) if pairs else []
    rows = []
    for code in codes:
        y, s_serv, s_shadow, f_serv, f_shadow = [], [], [], [], []
        for r in reviewed:
            outcome = r.outcomes.get(code)
            if outcome not in ("tp", "fn", "fp", "tn"):
                continue
            sp = by_prediction[r.prediction_id]
            y.append(1 if outcome in ("tp", "fn") else 0)
            s_serv.append(float(r.prediction.superclass.get(code, np.nan)))
            s_shadow.append(float(sp.superclass[code]))
            f_serv.append(f"superclass:{code}" in _serving_flagged(r.prediction))
            f_shadow.append(f"superclass:{code}" in sp.flagged)
        y_a = np.asarray(y, dtype=np.int64)
        rows.append({"label": code,
                     "serving": _model_rates(y_a, np.asarray(s_serv), np.asarray(f_serv, dtype=bool)),
                     "shadow": _model_rates(y_a, np.asarray(s_shadow), np.asarray(f_shadow, dtype=bool))})
    return {"n_reviewed": len(reviewed), "min_outcomes": MIN_OUTCOMES, "labels": rows}


def _reference(version: ModelVersion) -> dict:
    from monitoring.registry import version_weights_dir

    manifest = json.loads((Path(version_weights_dir(version)) / "manifest.json").read_text())
    return manifest.get("reference") or {}


def output_drift(version: ModelVersion, pairs: list[ShadowPrediction]) -> dict:
    """Per superclass, the shadow's probability histogram against its own fold-9 reference: chi-square test of the
    2 x bins table (bins empty in both left out), as the drift job tests categories."""
    from scipy.stats import chi2_contingency

    ref = _reference(version)
    edges = ref.get("bin_edges")
    hists = ref.get("superclass_prob_hist") or {}
    rows = []
    for code, ref_counts in hists.items():
        p = np.asarray([sp.superclass.get(code, np.nan) for sp in pairs], dtype=np.float64)
        p = p[np.isfinite(p)]
        current = np.histogram(p, bins=np.asarray(edges))[0] if edges else np.zeros(len(ref_counts), int)
        row = {"label": code, "n": int(len(p)), "current": current.tolist(),
               "reference_share": [round(c / max(sum(ref_counts), 1), 4) for c in ref_counts],
               "current_share": [round(c / max(len(p), 1), 4) for c in current.tolist()],
               "high_share_now": round(float((p >= 0.5).mean()), 4) if len(p) else None,
               "high_share_ref": (round(sum(c for c, e in zip(ref_counts, edges) if e >= 0.5)
                                        / max(sum(ref_counts), 1), 4) if edges else None),
               "p_value": None, "too_few": len(p) < DRIFT_MIN_N}
        if not row["too_few"]:
            table = np.asarray([current, ref_counts], dtype=np.float64)
            table = table[:, table.sum(axis=0) > 0]
            if table.shape[1] > 1:
                row["p_value"] = float(chi2_contingency(table)[1])
        rows.append(row)
    return {"bin_edges": edges, "method": "chisquare", "labels": rows}


def comparison(version: ModelVersion) -> dict:
    """Everything the comparison page and API show for one shadowed version."""
    pairs = _pairs(version)
    serving_versions = sorted({sp.prediction.model_version for sp in pairs})
    return {
        "version": version.version, "state": version.state, "n_shadowed": len(pairs),
        "serving_versions": serving_versions,
        "agreement": agreement(pairs),
        "urgency_changes": urgency_changes(pairs),
        "outcomes": outcomes(pairs),
        "drift": output_drift(version, pairs),
        "latency_ms": {"serving": _percentiles([sp.prediction.inference_ms for sp in pairs]),
                       "shadow": _percentiles([sp.inference_ms for sp in pairs])},
    }
