"""MLflow tracking of the training commands: what lands in the store, and runs that go on when it cannot."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mlcore.ptbxl import fingerprint, load_folds
from tests.conftest import write_tiny_weights
from training.__main__ import main
from training.tracking import DEFAULT_EXPERIMENT, metric_name, tracked_run

TINY_TRAIN = ["--epochs", "2", "--batch-size", "4", "--no-bf16", "--threads", "1", "--widths", "8 16 16",
              "--depths", "1 1 1"]


def runs_in(store: Path) -> tuple[MlflowClient, list]:
    client = MlflowClient(tracking_uri=store.as_uri())
    experiment = client.get_experiment_by_name(DEFAULT_EXPERIMENT)
    assert experiment is not None, f"no {DEFAULT_EXPERIMENT!r} experiment in {store}"
    return client, client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


def warnings_in(err: str) -> list[str]:
    return [line for line in err.splitlines() if "MLflow tracking is off" in line]


@pytest.fixture
def embedded_default(tmp_path, monkeypatch) -> Path:
    """No MLFLOW_TRACKING_URI: the commands use the store under the app's data directory (here a tmp one)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("ECGAPP_DATA_DIR", str(tmp_path / "appdata"))
    return tmp_path / "appdata" / "mlflow"


def test_train_logs_config_provenance_epochs_and_the_run_record_to_the_embedded_store(
        ptbxl_dir, tmp_path, embedded_default, capsys):
    out = tmp_path / "runs"
    assert main(["train", "--data-dir", str(ptbxl_dir), "--cache-dir", str(tmp_path / "cache"), "--out", str(out),
                 "--seed", "3", *TINY_TRAIN]) == 0
    captured = capsys.readouterr()
    assert "mlflow" not in (captured.out + captured.err).lower()  # the CLI prints what it printed before
    assert "epoch  2/2" in captured.out and "best epoch" in captured.out
    record = json.loads((out / "member-3.run.json").read_text())

    client, runs = runs_in(embedded_default)
    assert len(runs) == 1
    # opens as "Training runs" in the MLflow 3 UI, not as a GenAI app
    assert client.get_experiment_by_name(DEFAULT_EXPERIMENT).tags["mlflow.experimentKind"] == "custom_model_development"
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "train member-3"
    p = run.data.params
    assert p["config.epochs"] == "2" and p["config.seed"] == "3" and p["config.bf16"] == "False"
    assert p["config.model.widths"] == "(8, 16, 16)" and p["n_train"] == "16" and p["n_valid"] == "7"
    t = run.data.tags
    assert t["kind"] == "train_member"
    assert record["git_commit"] and t["git_commit"] == record["git_commit"]
    assert t["mlflow.source.git.commit"] == record["git_commit"].removesuffix("+dirty")
    assert t["data_fingerprint.train"] == record["data_fingerprint"]["train"]
    assert t["data_fingerprint.valid"] == record["data_fingerprint"]["valid"]
    loss = client.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in sorted(loss, key=lambda m: m.step)] == [
        (h["epoch"], pytest.approx(h["loss"])) for h in record["history"]]
    assert run.data.metrics["best_epoch"] == record["best"]["epoch"]
    assert run.data.metrics["best_superclass_auc"] == pytest.approx(record["best"]["superclass_auc"])
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["member-3.run.json"]
    copy = client.download_artifacts(run.info.run_id, "member-3.run.json", str(tmp_path))
    assert json.loads(Path(copy).read_text()) == record


def test_calibrate_and_export_log_per_label_figures_and_their_files(ptbxl_dir, tmp_path, label_space, monkeypatch):
    store = tmp_path / "store"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    cache, runs_dir = str(tmp_path / "cache"), tmp_path / "runs"
    assert main(["train", "--data-dir", str(ptbxl_dir), "--cache-dir", cache, "--out", str(runs_dir), "--seed", "1",
                 *TINY_TRAIN]) == 0
    member = str(runs_dir / "member-1.pt")
    assert main(["calibrate", "--data-dir", str(ptbxl_dir), "--cache-dir", cache, "--members", member,
                 "--out", str(runs_dir / "cal.json")]) == 0
    assert main(["export", "--data-dir", str(ptbxl_dir), "--cache-dir", cache, "--members", member,
                 "--calibration", str(runs_dir / "cal.json"), "--out", str(tmp_path / "w"), "--version", "t-2"]) == 0

    client, runs = runs_in(store)
    assert [r.data.tags["kind"] for r in runs] == ["train_member", "calibrate", "export"]
    assert all(r.info.status == "FINISHED" for r in runs)
    cal, export = runs[1], runs[2]
    fitted = json.loads((runs_dir / "cal.json").read_text())
    for j, code in enumerate(label_space.superclasses):
        for what in ("temperature", "threshold"):
            assert cal.data.metrics[f"superclass/{what}/{code}"] == pytest.approx(fitted["superclass"][what][j])
    assert cal.data.metrics["statements/threshold/AFIB"] == pytest.approx(
        fitted["statements"]["threshold"][label_space.statements.index("AFIB")])
    assert cal.data.tags["data_fingerprint.valid"] == runs[0].data.tags["data_fingerprint.valid"]
    assert [a.path for a in client.list_artifacts(cal.info.run_id)] == ["cal.json"]

    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert export.data.tags["model_version"] == "t-2"
    assert export.data.tags["data_fingerprint.train"] == manifest["training_data"]["fingerprint_train"]
    fold9 = manifest["metrics_fold9"]
    assert export.data.metrics["superclass/macro_auc"] == pytest.approx(fold9["superclass_macro_auc"])
    assert {a.path for a in client.list_artifacts(export.info.run_id)} == {
        "manifest.json", "fold9_report.json", "export.run.json"}


def test_evaluate_logs_metrics_per_label_and_subgroup(ptbxl_dir, tmp_path, label_space, monkeypatch):
    store = tmp_path / "store"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    weights = write_tiny_weights(tmp_path / "w", label_space)
    assert main(["evaluate", "--data-dir", str(ptbxl_dir), "--weights", str(weights), "--cache-dir", "",
                 "--bootstrap", "20"]) == 0  # no --out: the report still lands in the run

    client, runs = runs_in(store)
    (run,) = runs
    report = json.loads(Path(client.download_artifacts(run.info.run_id, "evaluate_report.json",
                                                       str(tmp_path))).read_text())
    m = run.data.metrics
    assert run.data.tags["kind"] == "evaluate" and run.data.params["folds"] == "[10]"
    assert run.data.tags["data_fingerprint"] == fingerprint(load_folds(ptbxl_dir, (10,)))
    assert m["superclass/macro_auc"] == pytest.approx(report["superclass"]["macro_auc"])
    for code, auc in report["superclass"]["per_class_auc"].items():
        assert m[f"superclass/auc/{code}"] == pytest.approx(auc, nan_ok=True)
    assert {k for k in m if k.startswith("statements/auc/")} == {
        f"statements/auc/{c}" for c in report["statements"]["per_label_auc"]}
    assert m["subgroup/sex/male/n"] + m["subgroup/sex/female/n"] == 6
    # PTB-XL's age bands are spelled out in MLflow's name alphabet, one name per band.
    bands = report["subgroups"]["age_band"]
    assert "80+" in bands and m["subgroup/age_band/80plus/n"] == bands["80+"]["n"]
    for band, v in bands.items():
        for code, tpr in v["tpr_at_threshold"].items():
            key = metric_name("subgroup", "age_band", band, "tpr_at_threshold", code)
            assert (key in m) == (tpr is not None)


def test_training_goes_on_with_one_warning_when_mlflow_is_not_importable(ptbxl_dir, tmp_path, monkeypatch, capsys):
    for name in [n for n in sys.modules if n == "mlflow" or n.startswith("mlflow.")]:
        monkeypatch.setitem(sys.modules, name, None)  # as if mlflow-skinny were not installed
    out = tmp_path / "runs"
    assert main(["train", "--data-dir", str(ptbxl_dir), "--cache-dir", str(tmp_path / "cache"), "--out", str(out),
                 "--seed", "4", *TINY_TRAIN]) == 0
    (warning,) = warnings_in(capsys.readouterr().err)
    assert "mlflow is not importable" in warning and "'train member-4'" in warning
    assert json.loads((out / "member-4.run.json").read_text())["best"]["epoch"] in (1, 2)


def test_training_goes_on_with_one_warning_when_the_store_cannot_be_created(ptbxl_dir, tmp_path, monkeypatch,
                                                                            capsys):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the store's directory would go")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (blocker / "mlruns").as_uri())
    out = tmp_path / "runs"
    assert main(["train", "--data-dir", str(ptbxl_dir), "--cache-dir", str(tmp_path / "cache"), "--out", str(out),
                 "--seed", "5", *TINY_TRAIN]) == 0
    (warning,) = warnings_in(capsys.readouterr().err)
    assert str(blocker / "mlruns") in warning
    assert (out / "member-5.run.json").exists() and blocker.read_text().startswith("a file")


def test_an_unreachable_tracking_server_is_one_warning_not_a_wait(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with tracked_run("evaluate", params={"folds": [10]}, tags={}) as run:
        run.metrics({"superclass/macro_auc": 0.9})
        done = True
    assert done and not run.active
    (warning,) = warnings_in(capsys.readouterr().err)
    assert "http://127.0.0.1:9" in warning


def test_a_store_that_fails_half_way_stops_tracking_with_one_warning(tmp_path, monkeypatch, capsys):
    store = tmp_path / "store"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    report = tmp_path / "report.json"
    report.write_text("{}")
    with tracked_run("evaluate", params={}, tags={"kind": "evaluate"}) as run:
        run.metrics({"a": 1.0}, step=1)
        assert run.active and not warnings_in(capsys.readouterr().err)
        shutil.rmtree(store)  # the store goes away under a running command
        run.metrics({"a": 2.0}, step=2)
        run.metrics({"a": 3.0}, step=3)
        run.artifact(report)
    (warning,) = warnings_in(capsys.readouterr().err)
    assert "logging metrics failed" in warning and not run.active


def test_a_failing_command_is_a_failed_run_and_its_error_is_unchanged(tmp_path, monkeypatch):
    store = tmp_path / "store"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    with pytest.raises(FileNotFoundError, match="no such fold"):
        with tracked_run("evaluate", params={}, tags={"kind": "evaluate"}):
            raise FileNotFoundError("no such fold")
    _, (run,) = runs_in(store)
    assert run.info.status == "FAILED"


def test_bad_input_starts_no_run(ptbxl_dir, tmp_path, label_space, monkeypatch):
    store = tmp_path / "store"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    weights = write_tiny_weights(tmp_path / "w", label_space)
    with pytest.raises(FileNotFoundError, match="PhysioNet PTB-XL layout"):
        main(["evaluate", "--data-dir", str(tmp_path), "--weights", str(weights)])
    assert not store.exists()  # refused before a run was opened: nothing half-way in the store
    assert main(["evaluate", "--data-dir", str(ptbxl_dir), "--weights", str(weights), "--cache-dir", "",
                 "--bootstrap", "5"]) == 0
    _, runs = runs_in(store)
    assert [(r.data.tags["kind"], r.info.status) for r in runs] == [("evaluate", "FINISHED")]


def test_operating_points_log_every_labels_threshold_support_and_validation(ptbxl_dir, tmp_path, label_space,
                                                                          monkeypatch):
    from training.operating_points import main as operating_points

    store = tmp_path / "store"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    weights = write_tiny_weights(tmp_path / "w", label_space)
    manifest = json.loads((weights / "manifest.json").read_text())
    (weights / "manifest.json").write_text(json.dumps(manifest | {"training_data": {"train_folds": list(range(1, 9))}}))
    assert operating_points(["--data-dir", str(ptbxl_dir), "--weights", str(weights), "--min-support", "2"]) == 0

    client, (run,) = runs_in(store)
    assert run.data.tags["kind"] == "operating_points" and run.data.params["min_support"] == "2"
    fitted = json.loads(Path(client.download_artifacts(run.info.run_id, "operating_points.json",
                                                       str(tmp_path))).read_text())
    m = run.data.metrics
    codes = {"superclass": label_space.superclasses, "statements": label_space.statements}
    for head, names in codes.items():
        for code, t, rec in zip(names, fitted[head]["threshold"], fitted[head]["operating_points"]):
            assert m[f"{head}/threshold/{code}"] == pytest.approx(t)
            assert m[f"{head}/support/{code}"] == rec["support"]
            assert m[f"{head}/validated/{code}"] == int(rec["validated"])
    assert {m[f"statements/validated/{c}"] for c in label_space.statements} == {0.0, 1.0}
