"""Calibrate the ensemble on fold 9 and export it, with its manifest, to ``mlcore/weights``."""
from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mlcore.calibration import fit_temperatures, fit_thresholds, sigmoid
from mlcore.ensemble import HEADS, Ensemble, load_member, sha256_file
from mlcore.labels import LabelSpace
from mlcore.model import count_parameters
from mlcore.preprocess import LEADS, N_SAMPLES, TARGET_FS, Standardizer
from mlcore.ptbxl import Split, fingerprint, load_folds
from training.evaluate import build_report, format_table, predict_split, report_metrics
from training.runrecord import git_commit
from training.tracking import TrackedRun, metric_name, tracked_run
from training.train import VALID_FOLDS, predict_logits, standardized

HIST_BINS = 20


def _members(paths: Sequence[Path]) -> tuple[list, Standardizer]:
    loaded = [load_member(p) for p in paths]
    standardizers = {json.dumps(ck["standardizer"]) for _, ck in loaded}
    if len(standardizers) != 1:
        raise ValueError("Members were trained with different standardisation constants; retrain on one cache.")
    return loaded, Standardizer.from_dict(loaded[0][1]["standardizer"])


def calibrate(*, member_paths: Sequence[Path], data_dir: str, cache_dir: str, out: Path) -> dict:
    """Fit per-class temperatures on the members' mean logits and F1-optimal thresholds, on fold 9."""
    loaded, st = _members(member_paths)
    valid = load_folds(data_dir, VALID_FOLDS, cache_dir)
    labels = LabelSpace.from_csv(Path(data_dir) / "scp_statements.csv")
    codes = {"superclass": labels.superclasses, "statements": labels.statements}
    tags = {"kind": "calibrate", "git_commit": git_commit(), "data_fingerprint.valid": fingerprint(valid)}
    params = {"members": [str(p) for p in member_paths], "valid_folds": VALID_FOLDS}
    with tracked_run("calibrate", params=params, tags=tags) as run:
        x = standardized(valid, st)
        logits = [predict_logits(model, x) for model, _ in loaded]
        result: dict = {"folds": list(VALID_FOLDS), "members": [p.name for p in member_paths]}
        targets = {"superclass": (valid.superclass, valid.has_superclass),
                   "statements": (valid.statements, np.ones(len(valid), dtype=bool))}
        for h, head in enumerate(HEADS):
            y, m = targets[head]
            z = np.mean([lg[h] for lg in logits], axis=0)[m].astype(np.float64)
            t = fit_temperatures(z, y[m])
            result[head] = {"temperature": t.tolist(), "threshold": fit_thresholds(sigmoid(z / t), y[m]).tolist()}
            for what in ("temperature", "threshold"):
                run.metrics({metric_name(head, what, c): v for c, v in zip(codes[head], result[head][what])})
        out.write_text(json.dumps(result, indent=2))
        run.artifact(out)
    print(f"calibration written to {out}: superclass T = " +
          ", ".join(f"{v:.2f}" for v in result["superclass"]["temperature"]))
    return result


def reference_distribution(ens: Ensemble, split: Split) -> dict:
    """What production inputs are compared against by drift monitoring: fold-9 outputs and demographics."""
    pred = predict_split(ens, split)
    edges = np.linspace(0, 1, HIST_BINS + 1)

    def hists(p: np.ndarray, names: Sequence[str]) -> dict:
        return {n: np.histogram(p[:, j], bins=edges)[0].tolist() for j, n in enumerate(names)}

    emb = pred.embedding.astype(np.float64)
    ages = split.age[np.isfinite(split.age)]
    return {
        "n_records": int(len(split)),
        "bin_edges": edges.round(4).tolist(),
        "superclass_prob_hist": hists(pred.superclass, ens.labels.superclasses),
        "statement_prob_hist": hists(pred.statements, ens.labels.statements),
        "embedding_mean": [float(f"{v:.5g}") for v in emb.mean(0)],
        "embedding_cov": [[float(f"{v:.4g}") for v in row] for row in np.cov(emb, rowvar=False)],
        "age": {"mean": float(ages.mean()), "std": float(ages.std()),
                "hist": np.histogram(ages, bins=[0, 20, 40, 60, 80, 91])[0].tolist(),
                "hist_edges": [0, 20, 40, 60, 80, 91]},
        "sex": {"male": int((split.sex == 0).sum()), "female": int((split.sex == 1).sum())},
    }


def export(*, member_paths: Sequence[Path], calibration: Path, data_dir: str, cache_dir: str, out_dir: Path,
           version: str) -> dict:
    started = time.time()
    loaded, st = _members(member_paths)
    cal = json.loads(calibration.read_text())
    labels = LabelSpace.from_csv(Path(data_dir) / "scp_statements.csv")
    out_dir.mkdir(parents=True, exist_ok=True)
    members, runs = [], []
    for path, (model, ck) in zip(member_paths, loaded):
        dest = out_dir / path.name
        shutil.copyfile(path, dest)
        record = path.with_suffix(".run.json")
        if record.exists():
            shutil.copyfile(record, out_dir / record.name)
            runs.append(json.loads(record.read_text()))
        members.append({"file": dest.name, "sha256": sha256_file(dest), "seed": ck["seed"],
                        "parameters": count_parameters(model), "config": ck["config"]})
    train = load_folds(data_dir, range(1, 9), cache_dir)
    valid = load_folds(data_dir, VALID_FOLDS, cache_dir)
    manifest = {
        "model_version": version,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_commit": git_commit(),
        "torch": torch.__version__,
        "input": {"fs": TARGET_FS, "n_samples": N_SAMPLES, "leads": list(LEADS),
                  "window": "central 10 s; shorter records padded with 0 mV on both sides"},
        "standardizer": st.to_dict(),
        "labels": labels.to_dict(),
        "members": members,
        "calibration": {h: cal[h] for h in HEADS} | {"method": "per-class temperature on mean member logits; "
                                                                "F1-optimal thresholds", "folds": cal["folds"]},
        "training_data": {"dataset": "PTB-XL v1.0.3 (Wagner et al. 2020), 100 Hz", "train_folds": list(range(1, 9)),
                          "valid_folds": list(VALID_FOLDS), "fingerprint_train": fingerprint(train),
                          "fingerprint_valid": fingerprint(valid), "n_train": len(train), "n_valid": len(valid)},
    }
    ens = Ensemble([m for m, _ in loaded], manifest)
    tags = {"kind": "export", "model_version": version, "git_commit": manifest["git_commit"],
            "data_fingerprint.train": manifest["training_data"]["fingerprint_train"],
            "data_fingerprint.valid": manifest["training_data"]["fingerprint_valid"]}
    params = {"version": version, "members": [m["file"] for m in members], "calibration": str(calibration),
              "out": str(out_dir)}
    with tracked_run(f"export {version}", params=params, tags=tags) as run:
        _export_files(ens, manifest, valid, out_dir, cal, members, started, run)
    print(f"exported {len(members)} members to {out_dir} as {version}")
    return manifest


def _export_files(ens: Ensemble, manifest: dict, valid: Split, out_dir: Path, cal: dict, members: list[dict],
                  started: float, run: TrackedRun) -> None:
    """The fold-9 report, the reference distribution and the manifest, written and logged as artefacts."""
    version = manifest["model_version"]
    report = build_report(ens, valid, VALID_FOLDS)
    manifest["metrics_fold9"] = {
        "superclass_macro_auc": report["superclass"]["macro_auc"],
        "superclass_macro_auc_ci90": report["superclass"]["macro_auc_ci90"],
        "superclass_per_class_auc": report["superclass"]["per_class_auc"],
        "superclass_ece": report["superclass"]["ece"],
        "statements_macro_auc": report["statements"]["macro_auc"],
        "note": "fold 9 selected epochs and fitted calibration, so these figures are optimistic; fold 10 is the test",
    }
    manifest["reference"] = reference_distribution(ens, valid)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    (out_dir / "fold9_report.json").write_text(json.dumps(report, indent=2))
    (out_dir / "export.run.json").write_text(json.dumps({
        "kind": "export", "version": version, "members": [m["file"] for m in members],
        "calibration": cal, "git_commit": git_commit(), "seconds": round(time.time() - started, 1),
        "fold9": manifest["metrics_fold9"],
    }, indent=2))
    run.metrics(report_metrics(report))
    for name in ("manifest.json", "fold9_report.json", "export.run.json"):
        run.artifact(out_dir / name)
    print(format_table(report))
