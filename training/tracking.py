"""Experiment tracking in MLflow for the training CLI: optional, and never able to stop a run.

Where runs go: ``MLFLOW_TRACKING_URI`` when it is set (a tracking server ``http(s)://...``, or any store MLflow
writes); otherwise the embedded default, a file store in ``mlflow/`` under the app's data directory
(``ecgapp.env.app_data_dir``: ``ECGAPP_DATA_DIR``, default ``var/``). The experiment is ``MLFLOW_EXPERIMENT_NAME``
or ``ecg-ds``; each run is tagged with its ``kind`` (train_member, calibrate, export, evaluate).

The run records beside the weights stay what a later reader trusts; MLflow holds a copy of each (an artefact) to
compare runs. If mlflow is not importable or the store fails (at the start or half-way), the command prints one
warning line on stderr and goes on untracked.
"""
from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

DEFAULT_EXPERIMENT = "ecg-ds"
STORE_DIR = "mlflow"  # under the app's data directory

# MLflow accepts letters, digits, "_ - . / :" and spaces in metric and parameter names; subgroup labels such as
# "<40" or "80+" are spelled out rather than dropped so that two bands never share a name.
_SPELLED = {"<": "lt", ">": "gt", "+": "plus", "=": "_", "%": "pct"}
_NOT_ALLOWED = re.compile(r"[^\w\-. /:]")


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else the file store under the app's data directory (as a file:// URI)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if uri:
        return uri
    from ecgapp.env import app_data_dir  # the one place that says where the app keeps its state

    return (app_data_dir().resolve() / STORE_DIR).as_uri()


def name_part(text: object) -> str:
    """One part of a metric or parameter name, in the characters MLflow accepts."""
    s = str(text)
    for char, word in _SPELLED.items():
        s = s.replace(char, word)
    return _NOT_ALLOWED.sub("_", s)


def metric_name(*parts: object) -> str:
    return "/".join(name_part(p) for p in parts)


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> {"model.widths": "(64, 128, 192)", ...}: MLflow parameters are flat strings."""
    out: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{name_part(key)}"
        if isinstance(value, Mapping):
            out |= flatten(value, f"{name}.")
        else:
            out[name] = str(value)
    return out


def _one_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


class TrackedRun:
    """What a command logs to. Every method is a no-op once tracking is off (never started, or the store failed)."""

    def __init__(self, name: str, client: Any = None, run_id: str | None = None) -> None:
        self.name = name
        self._client = client
        self.run_id = run_id
        self._warned = False

    @property
    def active(self) -> bool:
        return self._client is not None

    def off(self, reason: str) -> None:
        """Stop tracking this run, saying why in one line; the command itself goes on."""
        if not self._warned:
            self._warned = True
            print(f"warning: MLflow tracking is off for run {self.name!r} ({reason}); the command goes on "
                  "untracked and writes its run record and reports as usual", file=sys.stderr, flush=True)
        self._client = None

    def metrics(self, values: Mapping[str, float | int | None], step: int | None = None) -> None:
        """Log numbers. None is skipped (a subgroup without a scorable label has no AUC, not an AUC of 0), and so is
        a bool, which MLflow refuses as a metric (pass int(flag) to log one)."""
        if not self.active:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(key=k, value=float(v), timestamp=now, step=step or 0)
                 for k, v in values.items() if v is not None and not isinstance(v, bool)]
        self._call("logging metrics", lambda: self._client.log_batch(self.run_id, metrics=batch))

    def artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Copy a file (a run record, a report) into the run's artefacts."""
        if self.active:
            self._call(f"storing {Path(path).name}",
                       lambda: self._client.log_artifact(self.run_id, str(path), artifact_path))

    def json_artifact(self, content: Any, name: str) -> None:
        """Store ``content`` as JSON under ``name`` (for a report the command did not write to a file)."""
        if not self.active:
            return
        with tempfile.TemporaryDirectory(prefix="ecgapp-mlflow-") as tmp:
            path = Path(tmp) / name
            path.write_text(json.dumps(content, indent=2))
            self.artifact(path)

    def _call(self, what: str, fn: Any) -> None:
        try:
            fn()
        except Exception as exc:  # the store's failure must never become the command's
            self.off(f"{what} failed: {_one_line(exc)}")

    def _end(self, status: str) -> None:
        if self.active:
            self._call("closing the run", lambda: self._client.set_terminated(self.run_id, status))


def _experiment_id(client: Any, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found:
        return found.experiment_id
    try:
        # The tag makes the MLflow 3 UI open the experiment as model training, not as a GenAI app.
        return client.create_experiment(name, tags={"mlflow.experimentKind": "custom_model_development"})
    except Exception:
        found = client.get_experiment_by_name(name)  # members trained in parallel: another one created it first
        if found is None:
            raise
        return found.experiment_id


def _start(name: str, params: Mapping[str, Any], tags: Mapping[str, str | None]) -> TrackedRun:
    run = TrackedRun(name)
    try:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        run.off(f"mlflow is not importable: {_one_line(exc)}")
        return run
    uri = tracking_uri()
    try:
        if uri.startswith("file:"):
            # mlflow-skinny has no SQLAlchemy, so the file store is the one local store it can write. MLflow 3 keeps
            # it in maintenance mode and refuses it unless this is set (mlflow/store/tracking/file_store.py).
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        else:
            # An unreachable server would otherwise hold the command for minutes (7 retries, 120 s timeout each)
            # before it starts; explicit settings win.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        client = MlflowClient(tracking_uri=uri)
        experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME", "").strip() or DEFAULT_EXPERIMENT
        experiment_id = _experiment_id(client, experiment)
        all_tags = {k: str(v) for k, v in tags.items() if v is not None}
        if all_tags.get("git_commit"):
            # The UI shows this one; "+dirty" stays on our own tag only.
            all_tags["mlflow.source.git.commit"] = all_tags["git_commit"].removesuffix("+dirty")
        created = client.create_run(experiment_id, run_name=name, tags=all_tags)
        run = TrackedRun(name, client, created.info.run_id)
        client.log_batch(run.run_id, params=[Param(k, v) for k, v in flatten(params).items()])
    except Exception as exc:
        if run.active:  # created but half set up: say so in the store too, if it still answers
            with suppress(Exception):
                client.set_terminated(run.run_id, "FAILED")
        run.off(f"the store at {uri} failed: {_one_line(exc)}")
    return run


@contextmanager
def tracked_run(name: str, *, params: Mapping[str, Any], tags: Mapping[str, str | None]) -> Iterator[TrackedRun]:
    """One MLflow run around a command: params and tags at the start, FINISHED or FAILED at the end.

    An exception of the command is re-raised unchanged after the run is marked FAILED; a failure of MLflow is
    reported in one line and swallowed.
    """
    run = _start(name, params, tags)
    try:
        yield run
    except KeyboardInterrupt:
        run._end("KILLED")
        raise
    except BaseException:
        run._end("FAILED")
        raise
    run._end("FINISHED")
