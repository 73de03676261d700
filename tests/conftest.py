"""Fixtures that need no download: a hand-written statement table, a synthetic PTB-XL layout, tiny weights."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import wfdb

from mlcore.ensemble import sha256_file
from mlcore.labels import LabelSpace
from mlcore.model import EcgResNet, ModelConfig
from mlcore.preprocess import LEADS, Standardizer

COMMITTED_WEIGHTS = Path(__file__).resolve().parents[1] / "mlcore" / "weights"

# A few rows of the statement table, typed from scp_statements.csv (code, description, diagnostic, form,
# rhythm, diagnostic_class); enough to hand-check label aggregation.
STATEMENT_ROWS = [
    ("NDT", "non-diagnostic T abnormalities", "1.0", "1.0", "", "STTC"),
    ("NORM", "normal ECG", "1.0", "", "", "NORM"),
    ("IMI", "inferior myocardial infarction", "1.0", "", "", "MI"),
    ("ASMI", "anteroseptal myocardial infarction", "1.0", "", "", "MI"),
    ("LVH", "left ventricular hypertrophy", "1.0", "", "", "HYP"),
    ("ISCAL", "ischemic in anterolateral leads", "1.0", "", "", "STTC"),
    ("CLBBB", "complete left bundle branch block", "1.0", "", "", "CD"),
    ("PVC", "ventricular premature complex", "", "1.0", "", ""),
    ("LVOLT", "low QRS voltages in the frontal and horizontal leads", "", "1.0", "", ""),
    ("SR", "sinus rhythm", "", "", "1.0", ""),
    ("AFIB", "atrial fibrillation", "", "", "1.0", ""),
]
PTBXL_LEAD_NAMES = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def write_statements(path: Path) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["", "description", "diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass"])
        for code, desc, diag, form, rhythm, cls in STATEMENT_ROWS:
            w.writerow([code, desc, diag, form, rhythm, cls, cls])
    return path


def synthetic_ecg(rng: np.random.Generator, fs: float = 100, seconds: float = 10, hr: float = 70) -> np.ndarray:
    """(12, n) mV: a train of Gaussian 'QRS' spikes and a slower 'T' wave with a per-lead gain and noise."""
    t = np.arange(int(fs * seconds)) / fs
    period = 60 / hr
    phase = (t % period) / period
    beat = 1.2 * np.exp(-((phase - 0.3) / 0.02) ** 2) + 0.3 * np.exp(-((phase - 0.6) / 0.08) ** 2)
    gains = rng.uniform(-1.0, 1.5, size=(12, 1))
    return gains * beat + 0.02 * rng.standard_normal((12, len(t)))


@pytest.fixture(autouse=True, scope="session")
def mlflow_store_of_the_test_session(tmp_path_factory) -> Path:
    """The training commands track to MLflow (var/mlflow by default); the suite's runs go to a temporary store."""
    store = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", store.as_uri())
        yield store


@pytest.fixture
def statements_csv(tmp_path: Path) -> Path:
    return write_statements(tmp_path / "scp_statements.csv")


@pytest.fixture
def label_space(statements_csv: Path) -> LabelSpace:
    return LabelSpace.from_csv(statements_csv)


CODES = ["{'NORM': 100.0, 'SR': 0.0}", "{'IMI': 50.0, 'ASMI': 0.0, 'SR': 0.0}", "{'LVH': 100.0, 'AFIB': 0.0}",
         "{'PVC': 100.0, 'SR': 0.0}", "{'NDT': 100.0, 'CLBBB': 100.0}", "{'ISCAL': 80.0, 'LVOLT': 0.0}"]


@pytest.fixture
def ptbxl_dir(tmp_path: Path) -> Path:
    """A PhysioNet-style PTB-XL layout with 30 synthetic records: 2 in each of folds 1-8, 7 in folds 9 and 10."""
    root = tmp_path / "ptbxl"
    (root / "records100" / "00000").mkdir(parents=True)
    write_statements(root / "scp_statements.csv")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(30):
        ecg_id = i + 1
        name = f"{ecg_id:05d}_lr"
        sig = synthetic_ecg(rng, hr=50 + 2 * i)  # (12, 1000) mV
        wfdb.wrsamp(name, fs=100, units=["mV"] * 12, sig_name=PTBXL_LEAD_NAMES, p_signal=sig.T,
                    fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12,
                    write_dir=str(root / "records100" / "00000"))
        rows.append({"ecg_id": ecg_id, "patient_id": 100 + i, "age": [25, 45, 65, 85, 300, 55][i % 6],
                     "sex": i % 2, "scp_codes": CODES[i % 6],
                     "strat_fold": i // 2 + 1 if i < 16 else (9 if i < 23 else 10),
                     "filename_lr": f"records100/00000/{name}", "filename_hr": f"records500/00000/{ecg_id:05d}_hr"})
    with open(root / "ptbxl_database.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def write_tiny_weights(dest: Path, labels: LabelSpace, n_members: int = 2) -> Path:
    """An untrained two-member ensemble in the exported layout: member files, sha256 manifest."""
    dest.mkdir(parents=True, exist_ok=True)
    cfg = ModelConfig(n_superclasses=len(labels.superclasses), n_statements=len(labels.statements),
                      stem=8, widths=(8, 16, 16), depths=(1, 1, 1))
    members = []
    for seed in range(n_members):
        torch.manual_seed(seed)
        model = EcgResNet(cfg)
        # Zero-initialised residual BNs make a fresh net ignore its blocks; give them weight so
        # gradients reach every layer as they do in a trained member.
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                torch.nn.init.uniform_(mod.weight, 0.5, 1.5)
        f = dest / f"member-{seed}.pt"
        torch.save({"config": cfg.to_dict(), "state_dict": model.state_dict(),
                    "standardizer": Standardizer.identity().to_dict(), "seed": seed}, f)
        members.append({"file": f.name, "sha256": sha256_file(f), "seed": seed, "config": cfg.to_dict()})
    k_sup, k_stm = len(labels.superclasses), len(labels.statements)
    manifest = {
        "model_version": "tiny-test",
        "standardizer": Standardizer.identity().to_dict(),
        "labels": labels.to_dict(),
        "members": members,
        "input": {"fs": 100, "n_samples": 1000, "leads": list(LEADS)},
        "calibration": {"superclass": {"temperature": [1.0] * k_sup, "threshold": [0.5] * k_sup},
                        "statements": {"temperature": [1.0] * k_stm, "threshold": [0.5] * k_stm}},
    }
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


@pytest.fixture
def tiny_weights(tmp_path: Path, label_space: LabelSpace) -> Path:
    return write_tiny_weights(tmp_path / "weights", label_space)


@pytest.fixture
def weights_dir(tmp_path_factory, settings) -> Path:
    """The committed ensemble when present (real behaviour), else a tiny untrained one (same code path)."""
    if (COMMITTED_WEIGHTS / "manifest.json").exists():
        path = COMMITTED_WEIGHTS
    else:
        tmp = tmp_path_factory.mktemp("w")
        path = write_tiny_weights(tmp / "weights", LabelSpace.from_csv(write_statements(tmp / "s.csv")))
    settings.ECG_WEIGHTS_DIR = str(path)
    return path


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """Each test database starts with the roles' groups, as `setup_roles` leaves a real one but without the audit
    events of their making (tests of the audit trail count from an empty one): making them in every test that makes
    a user cost ~15 ms of each. A transactional test flushes them with the rest; UserFactory makes them again where
    they are missing."""
    from django.contrib.auth.models import Group
    from django.db.models.signals import m2m_changed

    from clinical import auth
    from clinical.roles import roles_ensure

    with django_db_blocker.unblock():
        m2m_changed.disconnect(sender=Group.permissions.through, dispatch_uid=auth.PERMISSIONS_CHANGED_UID)
        try:
            roles_ensure()
        finally:
            auth.connect()
