"""Train, calibrate, export and evaluate on the synthetic PTB-XL layout: the same commands as for real data."""
from __future__ import annotations

import json

import pytest
import torch

from mlcore.ensemble import Ensemble
from mlcore.model import ModelConfig
from tests.conftest import write_tiny_weights
from training.__main__ import main
from training.train import TrainConfig, train_member

TINY = ModelConfig(stem=8, widths=(8, 16, 16), depths=(1, 1, 1))


def tiny_cfg(seed: int) -> TrainConfig:
    return TrainConfig(seed=seed, epochs=2, batch_size=4, bf16=False, threads=1, model=TINY)


def test_training_is_deterministic_and_writes_a_run_record(ptbxl_dir, tmp_path):
    cache = str(tmp_path / "cache")
    train_member(data_dir=str(ptbxl_dir), cache_dir=cache, out_dir=str(tmp_path / "a"), cfg=tiny_cfg(7))
    rec_b = train_member(data_dir=str(ptbxl_dir), cache_dir=cache, out_dir=str(tmp_path / "b"), cfg=tiny_cfg(7))
    a = torch.load(tmp_path / "a" / "member-7.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "member-7.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    saved = json.loads((tmp_path / "a" / "member-7.run.json").read_text())
    assert saved["data_fingerprint"] == rec_b["data_fingerprint"]
    assert saved["n_train"] == 16 and saved["n_valid"] == 7 and len(saved["history"]) == 2
    assert {"config", "git_commit", "best", "seconds"} <= set(saved)


def test_calibrate_export_evaluate_round_trip(ptbxl_dir, tmp_path, capsys):
    cache, runs = str(tmp_path / "cache"), tmp_path / "runs"
    for seed in (1, 2):
        train_member(data_dir=str(ptbxl_dir), cache_dir=cache, out_dir=str(runs), cfg=tiny_cfg(seed))
    members = [str(runs / "member-1.pt"), str(runs / "member-2.pt")]
    assert main(["calibrate", "--data-dir", str(ptbxl_dir), "--cache-dir", cache, "--members", *members,
                 "--out", str(runs / "cal.json")]) == 0
    weights = tmp_path / "weights"
    assert main(["export", "--data-dir", str(ptbxl_dir), "--cache-dir", cache, "--members", *members,
                 "--calibration", str(runs / "cal.json"), "--out", str(weights), "--version", "t-1"]) == 0
    manifest = json.loads((weights / "manifest.json").read_text())
    assert manifest["model_version"] == "t-1" and len(manifest["members"]) == 2
    assert len(manifest["calibration"]["superclass"]["temperature"]) == 5
    ref = manifest["reference"]
    assert set(ref["superclass_prob_hist"]) == {"NORM", "MI", "STTC", "CD", "HYP"}
    assert len(ref["embedding_mean"]) == 32 and len(ref["embedding_cov"]) == 32
    assert ref["sex"]["male"] + ref["sex"]["female"] == 7
    assert (weights / "fold9_report.json").exists() and (weights / "member-1.run.json").exists()
    Ensemble.load(weights)  # hashes verify


def test_evaluate_defaults_to_fold_10_and_writes_the_report(ptbxl_dir, tmp_path, label_space, capsys, monkeypatch):
    weights = write_tiny_weights(tmp_path / "w", label_space)
    out = tmp_path / "r.json"
    assert main(["evaluate", "--data-dir", str(ptbxl_dir), "--weights", str(weights), "--out", str(out),
                 "--cache-dir", "", "--bootstrap", "20"]) == 0
    report = json.loads(out.read_text())
    assert report["folds"] == [10] and report["n_records"] == 7
    sup = report["superclass"]
    assert set(sup["per_class_auc"]) == {"NORM", "MI", "STTC", "CD", "HYP"}
    lo, hi = sup["macro_auc_ci90"]
    assert lo <= hi and set(sup["ece"]) == set(sup["f1_at_threshold"]) == set(sup["per_class_auc"])
    assert report["statements"]["n_labels_scored"] > 0
    assert set(report["subgroups"]) == {"sex", "age_band"}
    assert report["subgroups"]["sex"]["male"]["n"] + report["subgroups"]["sex"]["female"]["n"] == 6
    assert "90+" not in report["subgroups"]["age_band"] and "80+" in report["subgroups"]["age_band"]
    assert "superclass macro AUC" in capsys.readouterr().out


def test_evaluate_refuses_a_directory_without_the_layout(tmp_path, label_space):
    weights = write_tiny_weights(tmp_path / "w", label_space)
    with pytest.raises(FileNotFoundError, match="PhysioNet PTB-XL layout"):
        main(["evaluate", "--data-dir", str(tmp_path), "--weights", str(weights)])


def test_evaluate_names_an_absent_fold(ptbxl_dir, tmp_path, label_space):
    weights = write_tiny_weights(tmp_path / "w", label_space)
    with pytest.raises(FileNotFoundError, match="strat_fold 11"):
        main(["evaluate", "--data-dir", str(ptbxl_dir), "--weights", str(weights), "--folds", "11",
              "--cache-dir", ""])
