"""Fairness: how the model's outputs and errors differ between groups of patients, with confidence intervals.

Groups are sex, age band and their intersection. Three sources, three kinds of rate:

- every prediction in the window: the rate of urgent (immediate or urgent) recommendations, and the demographic
  parity ratio (lowest group rate / highest), judged against 0.8, the four-fifths rule;
- results a reviewer acknowledged or confirmed: true- and false-positive rates over the diagnostic classes, from the
  outcomes fixed at acknowledgement (clinical.reviews.review_outcomes) or at confirmation of a reading (the latest
  version of it, in the same terms: clinical.interpretations), and the equal-opportunity difference (highest TPR -
  lowest). Only urgent results are acknowledged and reviewers choose which others to confirm, so these rates
  describe the reviewed population, not every ECG;
- the model's labelled validation data (fold 9, shipped with the model): macro AUC per group.

Every rate carries a 95% interval (Wilson for proportions, bootstrap for AUC) and its group size; a group smaller
than ECG_FAIRNESS_MIN_GROUP is reported as too small and left out of the comparisons. A comparison breaches when
its estimate is past the threshold AND its interval excludes parity, so noise in small groups does not alert.
Counting happens in the database (urgent rates) or streams in chunks (review outcomes), so memory stays flat.
"""
from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Case, CharField, Count, F, Q, Value, When
from django.utils import timezone

from clinical.audit import AuditAction, audit_log
from clinical.models import Acknowledgement, Interpretation, Patient, Prediction
from clinical.recommend import AWAITS_REVIEW
from mlcore import metrics as scores
from mlcore.reference import SEXES, Reference
from monitoring import metrics
from monitoring.alerts import alert_raise
from monitoring.models import FairnessComparison, FairnessMetric, FairnessReport
from monitoring.registry import serving_weights_dir
from monitoring.running import report_execute, report_progress

# Patients whose age the uploader marked unknown form their own band, as sex "U" forms its own group: left out,
# they would vanish from the age comparisons without anyone seeing that they are there.
UNKNOWN_AGE_BAND = "Unknown"
SEX_LABELS = dict(Patient.Sex.choices)
DIMENSION_NAMES = {"sex": "sex", "age_band": "age band", "sex_age": "sex × age band"}
DIMENSIONS = tuple(DIMENSION_NAMES)
OUTCOME_CHUNK = 5000


def age_bands(edges: list[int]) -> list[tuple[str, int, int]]:
    """(label, lowest age, highest age) from the band edges: [40, 65] -> <40, 40-65, >65 (ages in whole years)."""
    edges = sorted(edges)
    bands = [(f"<{edges[0]}", 0, edges[0] - 1)]
    for i, (lo, hi) in enumerate(zip(edges, edges[1:])):
        first = lo if i == 0 else lo + 1
        bands.append((f"{first}–{hi}", first, hi))
    bands.append((f">{edges[-1]}", edges[-1] + 1, 10_000))
    return bands


def band_of(age: float | None, bands: list[tuple[str, int, int]]) -> str | None:
    if age is None or (isinstance(age, float) and math.isnan(age)):
        return UNKNOWN_AGE_BAND
    whole = int(math.floor(age))
    return next((label for label, lo, hi in bands if lo <= whole <= hi), None)


def group_keys(sex: str, band: str | None) -> list[tuple[str, str]]:
    """The (dimension, group) pairs one patient belongs to."""
    sex_label = SEX_LABELS.get(sex, "Unknown")
    keys = [("sex", sex_label)]
    if band is not None:
        keys += [("age_band", band), ("sex_age", f"{sex_label} · {band}")]
    return keys


def fairness_report_create(*, requested_by=None, now=None) -> FairnessReport:
    now = now or timezone.now()
    report = FairnessReport.objects.create(
        requested_by=requested_by, window_end=now,
        window_start=now - timedelta(days=settings.ECG_FAIRNESS_WINDOW_DAYS), stage="Waiting for a worker",
        config={"window_days": settings.ECG_FAIRNESS_WINDOW_DAYS, "age_bands": settings.ECG_FAIRNESS_AGE_BANDS,
                "min_group": settings.ECG_FAIRNESS_MIN_GROUP,
                "parity_min_ratio": settings.ECG_FAIRNESS_PARITY_MIN_RATIO,
                "eo_max_difference": settings.ECG_FAIRNESS_EO_MAX_DIFFERENCE})
    if requested_by is not None:
        audit_log(actor=requested_by, action=AuditAction.MONITORING_FAIRNESS_REQUESTED, object_type="FairnessReport",
                  object_id=report.pk, details={"window_days": settings.ECG_FAIRNESS_WINDOW_DAYS})
    return report


@dataclass
class Counts:
    n: int = 0
    events: int = 0


def urgent_counts(start, end, bands) -> dict[tuple[str, str], Counts]:
    """Predictions and urgent ones per (dimension, group), counted by the database per (sex, band) cell."""
    band_case = Case(*[When(record__age_at_ecg__gte=lo, record__age_at_ecg__lte=hi, then=Value(label))
                       for label, lo, hi in bands], default=Value(UNKNOWN_AGE_BAND), output_field=CharField())
    cells = (Prediction.objects.filter(created_at__gte=start, created_at__lt=end)
             .annotate(band=band_case, sex=F("record__sex_at_ecg")).values("band", "sex")
             .annotate(n=Count("id"), urgent=Count("id", filter=Q(top_urgency__in=AWAITS_REVIEW))).order_by())
    out: dict[tuple[str, str], Counts] = defaultdict(Counts)
    for cell in cells:
        for key in group_keys(cell["sex"], cell["band"] or None):
            out[key].n += cell["n"]
            out[key].events += cell["urgent"]
    return out


def outcome_counts(start, end, bands) -> tuple[int, dict[tuple[str, str], dict[str, int]]]:
    """Reviewed results and their tp/fn/fp/tn over the diagnostic classes per (dimension, group), streamed."""
    out: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: {"tp": 0, "fn": 0, "fp": 0, "tn": 0})
    # A confirmed reading's latest version stands for its ECG; an acknowledgement counts where there is none.
    acks = (Acknowledgement.objects.filter(prediction__created_at__gte=start, prediction__created_at__lt=end,
                                           prediction__record__interpretations__isnull=True)
            .values_list("prediction__record__age_at_ecg", "prediction__record__sex_at_ecg", "outcomes")
            .iterator(chunk_size=OUTCOME_CHUNK))
    readings = (Interpretation.objects.filter(superseded_by__isnull=True, record__prediction__created_at__gte=start,
                                              record__prediction__created_at__lt=end)
                .values_list("record__age_at_ecg", "record__sex_at_ecg", "outcomes").iterator(chunk_size=OUTCOME_CHUNK))
    rows = itertools.chain(acks, readings)
    n = 0
    for age, sex, outcomes in rows:
        n += 1
        tally = defaultdict(int)
        for label, outcome in (outcomes or {}).items():
            if ":" not in label:  # the diagnostic classes; "statements:CODE" outcomes serve site calibration
                tally[outcome] += 1
        for key in group_keys(sex, band_of(age, bands)):
            for k, v in tally.items():
                if k in out[key]:
                    out[key][k] += v
    return n, out


def validation_auc(ref: Reference, bands, min_group: int) -> list[FairnessMetric]:
    """Macro AUC per group on the labelled fold-9 records, with a 95% bootstrap interval."""
    keep = ref.has_label
    y, p = ref.labels[keep], ref.probabilities[keep]
    ages, sexes = ref.columns["age"][keep], ref.columns["sex"][keep]
    members: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, (age, sex) in enumerate(zip(ages, sexes)):
        for key in group_keys(sex if sex in SEXES else "U", band_of(float(age), bands)):
            members[key].append(i)
    rows = []
    for (dimension, group), idx in sorted(members.items()):
        idx = np.asarray(idx)
        if len(idx) < min_group:
            rows.append(FairnessMetric(dimension=dimension, group=group, metric="auc", n=len(idx),
                                       status=FairnessMetric.Status.TOO_SMALL))
            continue
        low, high = scores.bootstrap_macro_auc_ci(y[idx], p[idx], level=0.95, seed=len(idx))
        rows.append(FairnessMetric(dimension=dimension, group=group, metric="auc", n=len(idx),
                                   value=scores.macro_auc(y[idx], p[idx]), ci_low=low, ci_high=high,
                                   status=FairnessMetric.Status.OK))
    return rows


def _rate(dimension: str, group: str, metric: str, events: int, n: int, min_group: int) -> FairnessMetric:
    if n < min_group:
        return FairnessMetric(dimension=dimension, group=group, metric=metric, n=n, events=events,
                              status=FairnessMetric.Status.TOO_SMALL)
    low, high = scores.wilson(events, n)
    return FairnessMetric(dimension=dimension, group=group, metric=metric, n=n, events=events, value=events / n,
                          ci_low=low, ci_high=high, status=FairnessMetric.Status.OK)


def _judged(rows: list[FairnessMetric], dimension: str, metric: str) -> list[FairnessMetric]:
    return [r for r in rows if r.dimension == dimension and r.metric == metric and r.status == "ok"]


def _compare(rows: list[FairnessMetric], dimension: str, metric: str, kind: str, threshold: float,
             min_group: int) -> FairnessComparison:
    """Parity ratio (kind "ratio") or difference (kind "difference") between the lowest and highest group."""
    source = {"demographic_parity_ratio": "urgent_rate", "equal_opportunity_difference": "tpr",
              "false_positive_rate_difference": "fpr"}[metric]
    judged = _judged(rows, dimension, source)
    comparison = FairnessComparison(dimension=dimension, metric=metric, threshold=threshold)
    if len(judged) < 2:
        comparison.note = f"fewer than two groups with at least {min_group} cases"
        return comparison
    ranked = sorted(judged, key=lambda r: r.value)
    lo, hi = ranked[0], ranked[-1]
    comparison.lowest_group, comparison.highest_group = lo.group, hi.group
    if kind == "ratio":
        if hi.events == 0:
            comparison.value, comparison.note = 1.0, "no events in any group"
            return comparison
        comparison.value = lo.value / hi.value
        comparison.ci_low, comparison.ci_high = scores.ratio_ci(lo.events, lo.n, hi.events, hi.n)
        comparison.breached = comparison.value < threshold and comparison.ci_high < 1.0
    else:
        comparison.value = hi.value - lo.value
        comparison.ci_low, comparison.ci_high = scores.newcombe_difference(hi.events, hi.n, lo.events, lo.n)
        comparison.breached = comparison.value > threshold and comparison.ci_low > 0.0
    return comparison


def fairness_report_run(*, report_id: int) -> FairnessReport:
    return report_execute(FairnessReport, report_id, _run, "Counting urgent recommendations per group")


def _run(report: FairnessReport) -> None:
    cfg = report.config
    bands = age_bands(cfg["age_bands"])
    min_group = cfg["min_group"]
    rows: list[FairnessMetric] = []

    urgent = urgent_counts(report.window_start, report.window_end, bands)
    report.n_predictions = sum(c.n for (dim, _), c in urgent.items() if dim == "sex")
    rows += [_rate(dim, group, "urgent_rate", c.events, c.n, min_group) for (dim, group), c in sorted(urgent.items())]

    report_progress(report, 35, "Reading reviewer outcomes")
    report.n_reviewed, outcomes = outcome_counts(report.window_start, report.window_end, bands)
    for (dim, group), t in sorted(outcomes.items()):
        rows.append(_rate(dim, group, "tpr", t["tp"], t["tp"] + t["fn"], min_group))
        rows.append(_rate(dim, group, "fpr", t["fp"], t["fp"] + t["tn"], min_group))

    report_progress(report, 60, "AUC per group on the validation data")
    ref = Reference.load(serving_weights_dir())
    report.model_version = ref.model_version
    rows += validation_auc(ref, bands, min_group)

    report_progress(report, 90, "Comparing groups")
    comparisons = []
    for dim in DIMENSIONS:
        comparisons.append(_compare(rows, dim, "demographic_parity_ratio", "ratio", cfg["parity_min_ratio"],
                                    min_group))
        comparisons.append(_compare(rows, dim, "equal_opportunity_difference", "difference",
                                    cfg["eo_max_difference"], min_group))
        comparisons.append(_compare(rows, dim, "false_positive_rate_difference", "difference",
                                    cfg["eo_max_difference"], min_group))
    breaches = [c for c in comparisons if c.breached]
    with transaction.atomic():
        for r in rows:
            r.report = report
        for c in comparisons:
            c.report = report
        FairnessMetric.objects.filter(report=report).delete()
        FairnessComparison.objects.filter(report=report).delete()
        FairnessMetric.objects.bulk_create(rows)
        FairnessComparison.objects.bulk_create(comparisons)
        if report.n_predictions < min_group:
            report.outcome = FairnessReport.Outcome.INSUFFICIENT
            report.stage = (f"Insufficient data: {report.n_predictions:,} predictions in the window, "
                            f"{min_group} needed for a group")
        else:
            report.outcome = FairnessReport.Outcome.BREACH if breaches else FairnessReport.Outcome.OK
            report.stage = f"{len(breaches)} comparison(s) past their threshold" if breaches else "Within thresholds"
        report.state, report.progress, report.finished_at = FairnessReport.State.DONE, 100, timezone.now()
        report.save()
        for c in breaches:
            alert_raise(report=report, metric=f"{c.metric}:{c.dimension}", value=c.value, threshold=c.threshold,
                        message=_alert_message(c))
    transaction.on_commit(lambda: _export_gauges(comparisons))


def _alert_message(c: FairnessComparison) -> str:
    name = c.metric.replace("_", " ")
    return (f"{name.capitalize()} by {DIMENSION_NAMES[c.dimension]} is {c.value:.2f} (95% CI {c.ci_low:.2f}–"
            f"{c.ci_high:.2f}; threshold {c.threshold:g}): {c.lowest_group} lowest, {c.highest_group} highest.")


def _export_gauges(comparisons: list[FairnessComparison]) -> None:
    for c in comparisons:
        if c.value is None:
            continue
        if c.metric == "demographic_parity_ratio":
            metrics.PARITY_RATIO.labels(dimension=c.dimension).set(c.value)
        elif c.metric == "equal_opportunity_difference":
            metrics.EQUAL_OPPORTUNITY_DIFFERENCE.labels(dimension=c.dimension).set(c.value)
