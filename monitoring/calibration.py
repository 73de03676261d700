"""Site calibration versions: propose a refit from this site's reviewed results, activate it, roll it back.

The outcomes are the reviewers' acknowledgements and confirmed readings (the latest version of each, in the same
terms: clinical.interpretations). For a diagnostic class the review says it all
(Acknowledgement.outcomes, clinical.reviews.review_outcomes): a flagged class agreed with, or an unflagged one marked
as missed, is a positive; a flagged class disagreed with, or an unflagged one left unmarked, a negative. For a
dangerous statement (clinical.recommend.dangerous_keys) the same holds since the review form offers it as "missed"
too (older reviews, which did not, leave it unknown when unflagged). Any other statement gets a verdict only where it
was flagged (agree or disagree): its known outcomes all lie above the current threshold and a refit could only ever
raise it, so those statements keep their calibration, and each row says so.

The ensemble's probabilities are stored rounded to 4 decimals, calibrated with the version the prediction records;
the refit inverts them to the members' mean logit (logit = T * log(p / (1 - p))) with that version's temperature.
Only results of the model now served are read: another model's scores say nothing of this one's calibration.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
from django.db import IntegrityError, transaction
from django.utils import timezone

from clinical.audit import AuditAction, audit_log
from clinical.errors import ApplicationError
from clinical.models import Acknowledgement, Interpretation, Prediction
from clinical.recommend import dangerous_keys
from clinical.reviews import MISSED
from mlcore.calibration import HEADS, MANIFEST_CALIBRATION
from mlcore.labels import STATEMENT_KEY, STATEMENT_RULE_KEY, SUPERCLASS_NAMES
from monitoring.models import CalibrationVersion
from training.operating_points import MIN_SUPPORT
from training.site_calibration import NEGATIVE, POSITIVE, UNKNOWN, fit_site

if TYPE_CHECKING:  # the pages need no torch; only inference and a proposal hold an Ensemble
    from mlcore.ensemble import Ensemble

PERMISSION = "monitoring.manage_calibration"
# Stored probabilities have 4 decimals: 0.0 and 1.0 stand for "below 0.00005" and "above 0.99995".
_P_CLIP = 5e-5
STATEMENTS_KEPT = ("kept: the review records misses only for diagnostic classes and dangerous statements, so this "
                   "statement's sensitivity cannot be measured on this site's outcomes")


def _require(user) -> None:
    if not user.has_perm(PERMISSION):
        raise ApplicationError("Only compliance staff can propose, activate or roll back a calibration.",
                               code="permission_denied")


def calibration_active(*, model_version: str) -> CalibrationVersion | None:
    """The site calibration in force for this model, or None: the manifest's own applies."""
    return CalibrationVersion.objects.filter(model_version=model_version,
                                             status=CalibrationVersion.Status.ACTIVE).first()


def _block(ens: Ensemble, version: CalibrationVersion | None) -> dict:
    return version.calibration if version else ens.manifest["calibration"]


_lock = threading.Lock()
_calibrated: dict[tuple[int, str], Ensemble] = {}


def ensemble_calibrated(base: Ensemble) -> Ensemble:
    """``base`` under the calibration active now (one small query per call, so every worker follows an activation
    or a rollback at its next ECG); the calibrated copy is kept per version, sharing the base's members."""
    active = calibration_active(model_version=base.version)
    if active is None:
        return base
    key = (id(base), active.version)
    with _lock:
        if key not in _calibrated:
            _calibrated[key] = base.with_calibration(active.calibration, active.version)
        return _calibrated[key]


def _statement_outcome(key: str, flagged: set[str], verdict: str, given: dict[str, str]) -> int:
    v = given.get(key)
    if key in flagged:
        if v == "agree" or (v is None and verdict == Acknowledgement.Verdict.AGREE):
            return POSITIVE
        return NEGATIVE if v == "disagree" else UNKNOWN
    return POSITIVE if v == MISSED else UNKNOWN


_CLASS_OUTCOME = {"tp": POSITIVE, "fn": POSITIVE, "fp": NEGATIVE, "tn": NEGATIVE}


@dataclass(frozen=True)
class ReviewedResult:
    """One reviewed result, in an acknowledgement's terms: its acknowledgement, or the latest confirmed reading of
    its ECG (clinical.interpretations), which wins over an acknowledgement of the same result."""

    prediction: Prediction
    at: datetime
    verdict: str
    finding_verdicts: dict
    outcomes: dict

    @property
    def prediction_id(self) -> int:
        return self.prediction.pk


def reviewed_results(*, model_version: str, since: datetime | None = None) -> list[ReviewedResult]:
    """This model's reviewed results, oldest first: acknowledgements of ECGs without a confirmed reading, and the
    latest version of every confirmed reading (an amendment replaces the version it supersedes)."""
    acks = (Acknowledgement.objects.filter(prediction__model_version=model_version,
                                           prediction__record__interpretations__isnull=True)
            .select_related("prediction").prefetch_related("prediction__findings"))
    readings = (Interpretation.objects.filter(superseded_by__isnull=True,
                                              record__prediction__model_version=model_version)
                .select_related("record__prediction").prefetch_related("record__prediction__findings"))
    if since is not None:
        acks, readings = acks.filter(at__gte=since), readings.filter(confirmed_at__gte=since)
    rows = [ReviewedResult(a.prediction, a.at, a.verdict, a.finding_verdicts, a.outcomes) for a in acks]
    rows += [ReviewedResult(r.record.prediction, r.confirmed_at,
                            "agree" if all(v == "agree" for v in r.finding_verdicts.values()) else "disagree",
                            r.finding_verdicts, r.outcomes) for r in readings]
    return sorted(rows, key=lambda r: (r.at, r.prediction.pk))


def site_outcomes(*, ens: Ensemble, since: datetime | None = None) -> tuple[dict, dict, list[ReviewedResult]]:
    """(logits, outcomes, reviewed results) of this model's reviewed results: per head (n, k) arrays."""
    acks = reviewed_results(model_version=ens.version, since=since)
    codes = {"superclass": list(ens.labels.superclasses), "statements": list(ens.labels.statements)}
    temperatures: dict[str, dict[str, np.ndarray]] = {}
    logits = {h: [] for h in HEADS}
    outcomes = {h: [] for h in HEADS}
    for ack in acks:
        pred = ack.prediction
        used = pred.calibration_version or MANIFEST_CALIBRATION
        if used not in temperatures:
            row = (None if used == MANIFEST_CALIBRATION else
                   CalibrationVersion.objects.filter(model_version=ens.version, version=used).first())
            temperatures[used] = {h: np.asarray(_block(ens, row)[h]["temperature"], dtype=np.float64) for h in HEADS}
        flagged = {f.overlay_key for f in pred.findings.all()}
        for head in HEADS:
            stored = getattr(pred, head)
            p = np.clip(np.array([stored.get(c, np.nan) for c in codes[head]], dtype=np.float64),
                        _P_CLIP, 1 - _P_CLIP)
            logits[head].append(temperatures[used][head] * np.log(p / (1 - p)))
            if head == "superclass":
                row_outcome = [_CLASS_OUTCOME.get(ack.outcomes.get(c), UNKNOWN) for c in codes[head]]
            else:
                # A dangerous statement the review offered as missable has its outcome fixed at acknowledgement
                # (clinical.reviews.review_outcomes); any other statement has one only where it was flagged.
                row_outcome = [_CLASS_OUTCOME[ack.outcomes[k]] if k in ack.outcomes
                               else _statement_outcome(k, flagged, ack.verdict, ack.finding_verdicts)
                               for k in (f"{STATEMENT_KEY}{c}" for c in codes[head])]
            # A label the stored result lacks (NaN) has no score to refit on.
            outcomes[head].append([UNKNOWN if np.isnan(stored.get(c, np.nan)) else o
                                   for c, o in zip(codes[head], row_outcome)])
    as_arrays = {h: (np.asarray(logits[h], dtype=np.float64).reshape(-1, len(codes[h])),
                     np.asarray(outcomes[h], dtype=np.int64).reshape(-1, len(codes[h]))) for h in HEADS}
    return ({h: a[0] for h, a in as_arrays.items()}, {h: a[1] for h, a in as_arrays.items()}, acks)


def calibration_propose(*, ens: Ensemble, user, since: datetime | None = None,
                        min_count: int = MIN_SUPPORT) -> CalibrationVersion:
    """Refit on the reviewed results and store the result as a proposed version (nothing changes for predictions
    until it is activated). Refused with no reviewed result of this model."""
    _require(user)
    logits, outcomes, acks = site_outcomes(ens=ens, since=since)
    n = len(logits["superclass"])
    if n == 0:
        raise ApplicationError(f"No reviewed results of model {ens.version} yet: nothing to calibrate on.",
                               code="no_outcomes")
    parent = calibration_active(model_version=ens.version)
    current = _block(ens, parent)
    codes = {"superclass": list(ens.labels.superclasses), "statements": list(ens.labels.statements)}
    fitted = fit_site(logits, outcomes, current, codes, set(dangerous_keys()), min_count,
                      not_refittable={f"{STATEMENT_KEY}{c}": STATEMENTS_KEPT for c in codes["statements"]
                                      if f"{STATEMENT_RULE_KEY}{c}" not in dangerous_keys()})
    span = {"first": min(a.at for a in acks), "last": max(a.at for a in acks)}
    calibration = {
        **fitted["calibration"],
        "method": (f"site calibration on {n} reviewed results over {current.get('method') or 'the manifest'}: "
                   f"per-label temperature and target threshold refitted where at least {min_count} positive and "
                   f"{min_count} negative outcomes (training.site_calibration)"),
        "folds": [], "min_support": min_count,
    }
    for attempt in range(3):  # two proposals at once may pick the same name; the constraint decides
        try:
            with transaction.atomic():
                taken = CalibrationVersion.objects.filter(model_version=ens.version).count()
                version = CalibrationVersion.objects.create(
                    version=f"site-{taken + 1 + attempt}", model_version=ens.version, parent=parent,
                    calibration=calibration, labels=fitted["labels"], n_outcomes=n, outcomes_from=span["first"],
                    outcomes_to=span["last"], min_count=min_count, created_by=user)
                audit_log(actor=user, action=AuditAction.CALIBRATION_PROPOSE,
                          object_type="CalibrationVersion", object_id=version.version,
                          details={"model_version": ens.version, "parent": version.parent_version, "outcomes": n,
                                   "refit": [f"{r['head']}:{r['code']}" for r in fitted["labels"] if r["refit"]],
                                   "min_count": min_count})
                return version
        except IntegrityError:
            continue
    raise ApplicationError("Another proposal was being stored at the same moment; try again.", code="conflict")


def calibration_activate(*, version: CalibrationVersion, user) -> CalibrationVersion:
    """Put a proposed version in force for its model. Refused when the calibration in force is no longer the one
    it was fitted over and compared with (its before/after table would describe another change)."""
    _require(user)
    with transaction.atomic():
        version = CalibrationVersion.objects.select_for_update().get(pk=version.pk)
        if version.status != CalibrationVersion.Status.PROPOSED:
            raise ApplicationError(f"Calibration {version.version} is {version.get_status_display().lower()}; only a "
                                   "proposed version can be activated.", code="conflict")
        current = (CalibrationVersion.objects.select_for_update()
                   .filter(model_version=version.model_version, status=CalibrationVersion.Status.ACTIVE).first())
        if (current.pk if current else None) != version.parent_id:
            raise ApplicationError(
                f"Calibration {version.version} was fitted over {version.parent_version}, but "
                f"{current.version if current else 'manifest'} is in force now: propose a new version.",
                code="conflict")
        now = timezone.now()
        if current:
            current.status, current.retired_by, current.retired_at = CalibrationVersion.Status.RETIRED, user, now
            current.save(update_fields=["status", "retired_by", "retired_at"])
        version.status, version.replaced = CalibrationVersion.Status.ACTIVE, current
        version.activated_by, version.activated_at = user, now
        version.save(update_fields=["status", "replaced", "activated_by", "activated_at"])
        audit_log(actor=user, action=AuditAction.CALIBRATION_ACTIVATE,
                  object_type="CalibrationVersion", object_id=version.version,
                  details={"model_version": version.model_version, "replaced": version.replaced_version,
                           "refit": version.n_refit, "outcomes": version.n_outcomes})
    return version


def calibration_rollback(*, version: CalibrationVersion, user) -> CalibrationVersion | None:
    """Retire the active version and put back exactly what it replaced (that row's stored numbers, or the
    manifest's). Returns the version now in force (None: the manifest's)."""
    _require(user)
    with transaction.atomic():
        version = CalibrationVersion.objects.select_for_update().get(pk=version.pk)
        if version.status != CalibrationVersion.Status.ACTIVE:
            raise ApplicationError(f"Calibration {version.version} is not in force; only the active version can be "
                                   "rolled back.", code="conflict")
        now = timezone.now()
        version.status, version.retired_by, version.retired_at = CalibrationVersion.Status.RETIRED, user, now
        version.save(update_fields=["status", "retired_by", "retired_at"])
        restored = version.replaced
        if restored is not None:
            restored = CalibrationVersion.objects.select_for_update().get(pk=restored.pk)
            restored.status, restored.activated_by, restored.activated_at = CalibrationVersion.Status.ACTIVE, user, now
            restored.save(update_fields=["status", "activated_by", "activated_at"])
        audit_log(actor=user, action=AuditAction.CALIBRATION_ROLLBACK,
                  object_type="CalibrationVersion", object_id=version.version,
                  details={"model_version": version.model_version, "restored": version.replaced_version})
    return restored


def calibration_versions(*, model_version: str) -> list[CalibrationVersion]:
    return list(CalibrationVersion.objects.filter(model_version=model_version)
                .select_related("parent", "replaced", "created_by", "activated_by", "retired_by"))


def reviewed_count(*, model_version: str) -> int:
    """Reviewed results of this model: what a proposal would read."""
    return Acknowledgement.objects.filter(prediction__model_version=model_version).count()


def _cut(side: dict) -> float:
    """A threshold on the members' logit scale (T * logit(t)), where thresholds under different temperatures
    compare: lower means more ECGs flagged."""
    t = min(max(side["threshold"], 1e-9), 1 - 1e-9)
    return side["temperature"] * float(np.log(t / (1 - t)))


def version_table(*, version: CalibrationVersion, manifest: dict) -> dict:
    """The before/after table of a version: every diagnostic class and every refitted statement in ``rows``,
    the statements kept in ``kept_statements`` (with their reasons, most often one)."""
    names = {"superclass": SUPERCLASS_NAMES, "statements": (manifest.get("labels") or {}).get("descriptions") or {}}
    rows, kept = [], []
    for row in version.labels:
        shown = row | {"name": names[row["head"]].get(row["code"], row["code"]), "direction": ""}
        if row["refit"]:
            before, after = _cut(row["before"]), _cut(row["after"])
            shown["direction"] = "lower" if after < before - 1e-9 else "higher" if after > before + 1e-9 else "same"
        if row["head"] == "superclass" or row["refit"]:
            rows.append(shown)
        else:
            kept.append(shown)
    reasons = sorted({r["reason"] for r in kept})
    return {"rows": rows, "kept_statements": kept, "kept_reasons": reasons}
