"""``python -m training.operating_points``: decision thresholds chosen for stated targets, written into the manifest.

Each label of the committed ensemble gets an operating point, fitted on out-of-fold predictions (the calibration
fold, 9, which no member trained on; ``--folds`` takes more when models cross-fitted on other folds exist):

- the dangerous statements (clinical/recommendations.json, "dangerous": a miss risks serious harm soon): the highest
  threshold that keeps sensitivity >= 0.90 (the issue's target; project policy, no guideline sets one for a model);
- NORM (superclass and statement): the lowest threshold with specificity >= 0.95, so that "normal ECG" is said of few
  abnormal ones (project policy: a false reassurance is the costlier error for this label);
- every other label: the F1-optimal threshold, never below the 10 % floor (mlcore.calibration.fit_thresholds).

A label with fewer than MIN_SUPPORT positives in those folds is **not validated**: its target cannot be checked
(3 positives give a sensitivity of 0, 0.33, 0.67 or 1), so it keeps the F1/floor threshold and the manifest says
``validated: false``; the result page and the API list it as "not validated" (clinical.recommend.not_assessed).

For each label the manifest records name, target, the achieved value on the folds (in-sample), its 90 % Wilson
interval, the value achieved out of sample (split-half: the threshold chosen on one half of the records, measured
on the other, both ways, averaged), and the support. Without ``--write`` the command only prints the table.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from mlcore.calibration import HEADS, MIN_THRESHOLD, fit_threshold
from mlcore.labels import STATEMENT_RULE_KEY
from mlcore.metrics import wilson

WEIGHTS = Path(__file__).resolve().parents[1] / "mlcore" / "weights"
TABLE = Path(__file__).resolve().parents[1] / "clinical" / "recommendations.json"
SENSITIVITY_TARGET = 0.90
NORM_SPECIFICITY_TARGET = 0.95
# With 30 positives a sensitivity of 0.90 is known to about +-0.09 (90 % Wilson interval 0.77-0.96 for 27 of 30);
# below that a target "met" on the validation data says little (project policy).
MIN_SUPPORT = 30
CI_LEVEL = 0.90  # of the Wilson intervals written beside each achieved rate
SPLIT_SEED = 0


def threshold_for_sensitivity(p: np.ndarray, y: np.ndarray, target: float) -> float:
    """The highest threshold t with mean(p[y] >= t) >= target: midway below the score that must still count."""
    pos = np.sort(p[y])[::-1]  # descending
    need = math.ceil(target * len(pos))  # this many positives at or above t
    kept = pos[need - 1]
    below = p[p < kept]
    return float((kept + below.max()) / 2) if len(below) else float(kept)


def threshold_for_specificity(p: np.ndarray, y: np.ndarray, target: float) -> float:
    """The lowest threshold t with mean(p[~y] < t) >= target: midway above the negative that must stay below."""
    neg = np.sort(p[~y])
    allowed = len(neg) - math.ceil(target * len(neg))  # negatives that may reach t
    top = neg[len(neg) - allowed - 1]  # the highest negative that must stay below t
    above = p[p > top]
    return float((top + above.min()) / 2) if len(above) else float(np.nextafter(top, 1.0))


def _metric(name: str, p: np.ndarray, y: np.ndarray, t: float) -> tuple[int, int]:
    """(successes, trials) of ``name`` at threshold t: sensitivity over positives, specificity over negatives."""
    if name == "sensitivity":
        return int((p[y] >= t).sum()), int(y.sum())
    if name == "specificity":
        return int((p[~y] < t).sum()), int((~y).sum())
    raise ValueError(name)


def _choose(metric: str | None, target: float | None, p: np.ndarray, y: np.ndarray) -> float:
    if metric == "sensitivity":
        return threshold_for_sensitivity(p, y, target)
    if metric == "specificity":
        return threshold_for_specificity(p, y, target)
    return max(fit_threshold(p, y.astype(float)), MIN_THRESHOLD)


def _halves(n: int) -> np.ndarray:
    rng = np.random.default_rng(SPLIT_SEED)
    half = np.zeros(n, dtype=bool)
    half[rng.permutation(n)[: n // 2]] = True
    return half


def operating_point(p: np.ndarray, y: np.ndarray, metric: str | None, target: float | None,
                    min_support: int = MIN_SUPPORT) -> tuple[float, dict]:
    """Threshold and manifest record for one label (``p`` calibrated probabilities, ``y`` bool truth)."""
    y = np.asarray(y, dtype=bool)
    support = int(y.sum())
    validated = support >= min_support
    record = {"metric": metric, "target": target,
              "achieved": None, "achieved_ci90": None, "achieved_out_of_sample": None, "support": support,
              "validated": validated}
    if metric is None or not validated:
        t = _choose(None, None, p, y)
        record["name"] = "floor" if abs(t - MIN_THRESHOLD) < 1e-12 else "f1_optimal"
        if metric is not None:
            record["name"] += "_unvalidated_target"
        return t, record
    t = _choose(metric, target, p, y)
    k, n = _metric(metric, p, y, t)
    half = _halves(len(p))
    oos = []
    for a, b in ((half, ~half), (~half, half)):
        if y[a].sum() and (~y[a]).sum():
            tb = _choose(metric, target, p[a], y[a])
            kb, nb = _metric(metric, p[b], y[b], tb)
            if nb:
                oos.append(kb / nb)
    ci = wilson(k, n, level=CI_LEVEL)
    record.update(name=f"{metric}_target", achieved=round(k / n, 4),
                  achieved_ci90=[round(ci[0], 4), round(ci[1], 4)],
                  achieved_out_of_sample=round(float(np.mean(oos)), 4) if oos else None)
    return t, record


def policy(head: str, code: str, dangerous: set[str]) -> tuple[str | None, float | None]:
    """The target metric and value of one label (see the module docstring)."""
    if code == "NORM":
        return "specificity", NORM_SPECIFICITY_TARGET
    if head == "statements" and f"{STATEMENT_RULE_KEY}{code}" in dangerous:
        return "sensitivity", SENSITIVITY_TARGET
    return None, None


def fit(probs: dict[str, np.ndarray], truth: dict[str, np.ndarray], codes: dict[str, list[str]],
        dangerous: set[str], min_support: int = MIN_SUPPORT) -> dict:
    """{head: {"threshold": [...], "operating_points": [...]}} for every label of every head."""
    out = {}
    for head in HEADS:
        thresholds, records = [], []
        for j, code in enumerate(codes[head]):
            metric, target = policy(head, code, dangerous)
            t, rec = operating_point(probs[head][:, j], truth[head][:, j], metric, target, min_support)
            thresholds.append(float(t))  # unrounded: a tiny cut-off must not round to 0 (flag everything)
            records.append(rec)
        out[head] = {"threshold": thresholds, "operating_points": records}
    return out


def _predict(weights: Path, data_dir: str, folds: list[int], cache_dir: str | None):
    import torch

    from mlcore.ensemble import Ensemble
    from mlcore.ptbxl import fingerprint, load_folds

    torch.set_num_threads(max(1, torch.get_num_threads()))
    ens = Ensemble.load(weights)
    split = load_folds(data_dir, folds, cache_dir)
    parts = [ens.predict(split.signals[i:i + 256], fs=100) for i in range(0, len(split), 256)]
    probs = {h: np.concatenate([getattr(p, h) for p in parts]) for h in HEADS}
    # Records without a superclass label (PTB-XL has a few) cannot score the superclass head.
    has = split.superclass.sum(axis=1) > 0
    truth = {"superclass": split.superclass.astype(bool), "statements": split.statements.astype(bool)}
    probs["superclass"], truth["superclass"] = probs["superclass"][has], truth["superclass"][has]
    return ens, probs, truth, fingerprint(split)


def point_metrics(fitted: dict, codes: dict[str, list[str]]) -> dict[str, float | None]:
    """Per label threshold, support, validated (1/0), achieved and out-of-sample value, as MLflow metric names."""
    from training.tracking import metric_name

    out: dict[str, float | None] = {}
    for head in HEADS:
        for code, t, rec in zip(codes[head], fitted[head]["threshold"], fitted[head]["operating_points"]):
            out |= {metric_name(head, "threshold", code): t, metric_name(head, "support", code): rec["support"],
                    metric_name(head, "validated", code): int(rec["validated"]),
                    metric_name(head, "achieved", code): rec["achieved"],
                    metric_name(head, "achieved_out_of_sample", code): rec["achieved_out_of_sample"]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.operating_points", description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", required=True, help="PTB-XL in the PhysioNet layout")
    ap.add_argument("--folds", default="9", help="comma-separated strat_folds no member trained on (default 9)")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--weights", type=Path, default=WEIGHTS)
    ap.add_argument("--min-support", type=int, default=MIN_SUPPORT)
    ap.add_argument("--write", action="store_true", help="write thresholds and operating points into the manifest")
    args = ap.parse_args(argv)
    folds = [int(f) for f in args.folds.split(",")]
    manifest_path = args.weights / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    trained_on = set(manifest["training_data"]["train_folds"])
    if trained_on & set(folds):
        raise SystemExit(f"folds {sorted(trained_on & set(folds))} trained the members: not out of fold")
    dangerous = set(json.loads(TABLE.read_text())["dangerous"]["keys"])
    ens, probs, truth, data_fingerprint = _predict(args.weights, args.data_dir, folds, args.cache_dir)
    codes = {"superclass": list(ens.labels.superclasses), "statements": list(ens.labels.statements)}
    from training.runrecord import git_commit
    from training.tracking import tracked_run

    tags = {"kind": "operating_points", "model_version": ens.version, "git_commit": git_commit(),
            "data_fingerprint": data_fingerprint}
    params = {"weights": str(args.weights), "folds": folds, "min_support": args.min_support, "write": args.write}
    with tracked_run(f"operating points {ens.version}", params=params, tags=tags) as run:
        fitted = fit(probs, truth, codes, dangerous, args.min_support)
        run.metrics(point_metrics(fitted, codes))
        run.json_artifact(fitted, "operating_points.json")
    print(f"operating points on folds {folds} ({len(probs['statements'])} records); "
          f"min support {args.min_support} positives")
    print(f"  {'label':<18}{'support':>8}{'threshold':>10}  {'point':<32}{'achieved (90% CI)':>24}"
          f"{'out of sample':>15}")
    for head in HEADS:
        for code, t, rec in zip(codes[head], fitted[head]["threshold"], fitted[head]["operating_points"]):
            if rec["target"] is None and rec["validated"]:
                continue  # F1-optimal labels with enough support: not part of the targets
            ach = "—" if rec["achieved"] is None else (
                f"{rec['achieved']:.2f} ({rec['achieved_ci90'][0]:.2f}-{rec['achieved_ci90'][1]:.2f})")
            oos = "—" if rec["achieved_out_of_sample"] is None else f"{rec['achieved_out_of_sample']:.2f}"
            target = "" if rec["target"] is None else f" {rec['metric'][:4]}>={rec['target']}"
            label = f"{head[:5]}:{code}"
            print(f"  {label:<18}{rec['support']:>8}{t:>10.3f}  {rec['name'] + target:<32}{ach:>24}{oos:>15}")
    n_unvalidated = sum(not r["validated"] for h in HEADS for r in fitted[h]["operating_points"])
    print(f"  not validated (fewer than {args.min_support} positives): {n_unvalidated} labels")
    if args.write:
        cal = manifest["calibration"]
        for head in HEADS:
            cal[head]["threshold"] = fitted[head]["threshold"]
            cal[head]["operating_points"] = fitted[head]["operating_points"]
        cal["method"] = ("per-class temperature scaling; thresholds by target (sensitivity >= 0.90 for the dangerous "
                         "statements, specificity >= 0.95 for NORM, F1-optimal otherwise; training.operating_points)")
        cal["operating_point_folds"] = folds
        cal["min_support"] = args.min_support
        manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
        print(f"written to {manifest_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
