"""Evaluate an exported ensemble on any PTB-XL folds (default: 10, the benchmark's test fold)."""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlcore.ensemble import Ensemble, EnsembleOutput
from mlcore.metrics import (
    bootstrap_macro_auc_ci,
    expected_calibration_error,
    f1_score_at,
    macro_auc,
    per_class_auc,
    scorable,
    true_positive_rate_at,
)
from mlcore.ptbxl import Split, fingerprint, load_folds
from training.runrecord import git_commit
from training.tracking import metric_name, tracked_run

AGE_BANDS: tuple[tuple[str, float, float], ...] = (
    ("<40", 0, 40), ("40-59", 40, 60), ("60-79", 60, 80), ("80+", 80, 1000),
)
SEXES = {0: "male", 1: "female"}


def predict_split(ens: Ensemble, split: Split, batch: int = 256) -> EnsembleOutput:
    """Run Ensemble.predict (the serving path) over a split's 100 Hz signals, in batches."""
    parts = [ens.predict(split.signals[i:i + batch], fs=100) for i in range(0, len(split), batch)]
    return EnsembleOutput(**{k: np.concatenate([getattr(p, k) for p in parts])
                             for k in EnsembleOutput.__dataclass_fields__})


def _subgroup(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray, names: Sequence[str]) -> dict:
    cols = scorable(y)
    return {
        "n": int(len(y)),
        "macro_auc": macro_auc(y, p) if cols.any() else None,
        "tpr_at_threshold": {n: true_positive_rate_at(y[:, j], p[:, j], thresholds[j]) for j, n in enumerate(names)},
        "positives": {n: int(y[:, j].sum()) for j, n in enumerate(names)},
    }


def subgroup_metrics(split: Split, p: np.ndarray, thresholds: np.ndarray, names: Sequence[str]) -> dict:
    """Superclass metrics by sex and by age band (ages of 90+ are coded 300 in PTB-XL; read as 90)."""
    by_sex = {label: _subgroup(split.superclass[split.sex == code], p[split.sex == code], thresholds, names)
              for code, label in SEXES.items() if (split.sex == code).any()}
    by_age = {}
    for label, lo, hi in AGE_BANDS:
        sel = (split.age >= lo) & (split.age < hi)
        if sel.any():
            by_age[label] = _subgroup(split.superclass[sel], p[sel], thresholds, names)
    return {"sex": by_sex, "age_band": by_age}


def build_report(ens: Ensemble, split: Split, folds: Sequence[int], n_boot: int = 200) -> dict:
    pred = predict_split(ens, split)
    sup_names = list(ens.labels.superclasses)
    m = split.has_superclass
    ys, ps = split.superclass[m], pred.superclass[m]
    th = ens.threshold["superclass"]
    aucs = per_class_auc(ys, ps)
    stm_aucs = per_class_auc(split.statements, pred.statements)
    stm_cols = scorable(split.statements)
    return {
        "model_version": ens.version,
        "folds": list(folds),
        "n_records": int(len(split)),
        "superclass": {
            "n_records": int(m.sum()),
            "macro_auc": float(np.nanmean(aucs)),
            "macro_auc_ci90": list(bootstrap_macro_auc_ci(ys, ps, level=0.90, n_resamples=n_boot)),
            "per_class_auc": {n: float(a) for n, a in zip(sup_names, aucs)},
            "ece": {n: expected_calibration_error(ys[:, j], ps[:, j]) for j, n in enumerate(sup_names)},
            "f1_at_threshold": {n: f1_score_at(ys[:, j], ps[:, j], th[j]) for j, n in enumerate(sup_names)},
            "thresholds": {n: float(th[j]) for j, n in enumerate(sup_names)},
            "prevalence": {n: float(ys[:, j].mean()) for j, n in enumerate(sup_names)},
        },
        "statements": {
            "macro_auc": float(np.nanmean(stm_aucs)),
            "n_labels_scored": int(stm_cols.sum()),
            "per_label_auc": {n: float(a) for n, a, ok in zip(ens.labels.statements, stm_aucs, stm_cols) if ok},
        },
        "subgroups": subgroup_metrics(split.subset(m), ps, th, sup_names),
    }


def report_metrics(report: dict) -> dict[str, float | None]:
    """A report's figures under flat MLflow names: superclass/auc/MI, statements/auc/AFIB, subgroup/sex/male/n,
    subgroup/age_band/lt40/tpr_at_threshold/MI, ..."""
    s, st = report["superclass"], report["statements"]
    lo, hi = s["macro_auc_ci90"]
    out: dict[str, float | None] = {
        "n_records": report["n_records"], "superclass/n_records": s["n_records"],
        "superclass/macro_auc": s["macro_auc"], "superclass/macro_auc_ci90_low": lo,
        "superclass/macro_auc_ci90_high": hi, "statements/macro_auc": st["macro_auc"],
        "statements/n_labels_scored": st["n_labels_scored"],
    }
    for key, name in (("per_class_auc", "auc"), ("ece", "ece"), ("f1_at_threshold", "f1_at_threshold"),
                      ("thresholds", "threshold"), ("prevalence", "prevalence")):
        out |= {metric_name("superclass", name, code): v for code, v in s[key].items()}
    out |= {metric_name("statements", "auc", code): v for code, v in st["per_label_auc"].items()}
    for kind, groups in report["subgroups"].items():
        for group, v in groups.items():
            out[metric_name("subgroup", kind, group, "n")] = v["n"]
            out[metric_name("subgroup", kind, group, "macro_auc")] = v["macro_auc"]
            for code, tpr in v["tpr_at_threshold"].items():
                out[metric_name("subgroup", kind, group, "tpr_at_threshold", code)] = tpr
            for code, n in v["positives"].items():
                out[metric_name("subgroup", kind, group, "positives", code)] = n
    return out


def format_table(report: dict) -> str:
    s = report["superclass"]
    lo, hi = s["macro_auc_ci90"]
    lines = [
        f"model {report['model_version']}  folds {report['folds']}  records {report['n_records']}",
        f"superclass macro AUC {s['macro_auc']:.4f}  (90% CI {lo:.4f}-{hi:.4f}, n={s['n_records']})",
        f"{'class':<6} {'AUC':>7} {'ECE':>7} {'F1@thr':>7} {'thr':>6} {'prev':>6}",
    ]
    for c in s["per_class_auc"]:
        lines.append(f"{c:<6} {s['per_class_auc'][c]:>7.4f} {s['ece'][c]:>7.4f} {s['f1_at_threshold'][c]:>7.4f} "
                     f"{s['thresholds'][c]:>6.3f} {s['prevalence'][c]:>6.3f}")
    st = report["statements"]
    lines.append(f"statements macro AUC {st['macro_auc']:.4f} over {st['n_labels_scored']} scorable labels")
    classes = " ".join(f"{c:>5}" for c in s["per_class_auc"])
    lines.append(f"{'subgroup':<16} {'n':>6} {'macroAUC':>9}  TPR@thr {classes}")
    for kind, groups in report["subgroups"].items():
        for g, v in groups.items():
            auc = f"{v['macro_auc']:.4f}" if v["macro_auc"] is not None else "  n/a"
            tprs = " ".join(f"{t:>5.2f}" if t is not None else "  n/a" for t in v["tpr_at_threshold"].values())
            lines.append(f"{kind + '=' + g:<16} {v['n']:>6} {auc:>9}          {tprs}")
    return "\n".join(lines)


def evaluate(*, weights: str, data_dir: str, folds: Sequence[int], cache_dir: str | None, out: str | None,
             n_boot: int = 200) -> dict:
    started = time.time()
    ens = Ensemble.load(weights)
    split = load_folds(data_dir, folds, cache_dir)
    tags = {"kind": "evaluate", "model_version": ens.version, "git_commit": git_commit(),
            "data_fingerprint": fingerprint(split)}
    params = {"weights": weights, "folds": list(folds), "bootstrap": n_boot}
    with tracked_run(f"evaluate {ens.version} folds {','.join(map(str, folds))}", params=params, tags=tags) as run:
        report = build_report(ens, split, folds, n_boot)
        report["seconds"] = round(time.time() - started, 1)
        if out:
            Path(out).write_text(json.dumps(report, indent=2))
        run.metrics(report_metrics(report) | {"run_seconds": report["seconds"]})
        run.json_artifact(report, Path(out).name if out else "evaluate_report.json")
    print(format_table(report))
    return report
