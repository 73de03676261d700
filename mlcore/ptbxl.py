"""Read PTB-XL in the PhysioNet layout and cache it as arrays, one file per fold.

Layout (as published, or as restored by ``shared/ptbxl/unpack.py``)::

    DIR/ptbxl_database.csv  DIR/scp_statements.csv  DIR/records100/NNNNN/NNNNN_lr.{hea,dat}

Cite: Wagner et al., PTB-XL, a large publicly available electrocardiography dataset, Sci Data 7, 154 (2020).
"""
from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import wfdb
from tqdm import tqdm

from mlcore.labels import LabelSpace
from mlcore.preprocess import LEADS, N_SAMPLES, TARGET_FS, to_model_rate

AGE_90_PLUS_CODE = 300  # PTB-XL v1.0.3 writes ages of 90 and over as 300.


@dataclass
class Split:
    """Signals in mV at 100 Hz, standard lead order, and their labels and demographics."""

    ecg_id: np.ndarray  # (n,) int64
    signals: np.ndarray  # (n, 12, 1000) float32, mV, not standardised
    superclass: np.ndarray  # (n, 5) float32 multi-hot
    statements: np.ndarray  # (n, 71) float32 multi-hot
    age: np.ndarray  # (n,) float32, NaN when unknown; 90 for the 300 code
    sex: np.ndarray  # (n,) int8, 0 male, 1 female, -1 unknown
    fold: np.ndarray  # (n,) int8

    def __len__(self) -> int:
        return len(self.ecg_id)

    @property
    def has_superclass(self) -> np.ndarray:
        """Records with at least one diagnostic superclass (the benchmark scores only these)."""
        return self.superclass.sum(axis=1) > 0

    def subset(self, mask: np.ndarray) -> Split:
        return Split(**{k: getattr(self, k)[mask] for k in self.__dataclass_fields__})

    @staticmethod
    def concat(splits: Iterable[Split]) -> Split:
        splits = list(splits)
        return Split(**{k: np.concatenate([getattr(s, k) for s in splits])
                        for k in Split.__dataclass_fields__})


def read_record(path: str | Path) -> tuple[np.ndarray, float, list[str]]:
    """Read one WFDB record; returns ((leads, samples) float64 in mV, fs, lead names)."""
    signal, fields = wfdb.rdsamp(str(path))
    return signal.T, float(fields["fs"]), list(fields["sig_name"])


def read_database(data_dir: str | Path) -> list[dict[str, str]]:
    with open(Path(data_dir) / "ptbxl_database.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _parse_age(text: str) -> float:
    if not text:
        return float("nan")
    age = float(text)
    return 90.0 if age >= AGE_90_PLUS_CODE else age


def build_fold(data_dir: Path, rows: list[dict[str, str]], labels: LabelSpace, fold: int) -> Split:
    rows = [r for r in rows if int(float(r["strat_fold"])) == fold]
    n = len(rows)
    signals = np.zeros((n, len(LEADS), N_SAMPLES), dtype=np.float32)
    sup = np.zeros((n, len(labels.superclasses)), dtype=np.float32)
    stm = np.zeros((n, len(labels.statements)), dtype=np.float32)
    for i, row in enumerate(tqdm(rows, desc=f"fold {fold}", unit="rec", leave=False)):
        sig, fs, leads = read_record(data_dir / row["filename_lr"])
        signals[i] = to_model_rate(sig, fs, leads)  # (12, 1000) mV
        sup[i], stm[i] = labels.encode(row["scp_codes"])
    return Split(
        ecg_id=np.array([int(r["ecg_id"]) for r in rows], dtype=np.int64),
        signals=signals,
        superclass=sup,
        statements=stm,
        age=np.array([_parse_age(r["age"]) for r in rows], dtype=np.float32),
        sex=np.array([int(float(r["sex"])) if r["sex"] else -1 for r in rows], dtype=np.int8),
        fold=np.full(n, fold, dtype=np.int8),
    )


def load_folds(data_dir: str | Path, folds: Iterable[int], cache_dir: str | Path | None = None) -> Split:
    """Load the given strat_folds, building a per-fold cache under ``cache_dir`` on first use.

    The cache key is the sha256 of ``ptbxl_database.csv`` so a different download never reuses stale arrays.
    Raises FileNotFoundError with a readable message when the layout is not there or a fold is empty.
    """
    data_dir = Path(data_dir)
    db = data_dir / "ptbxl_database.csv"
    if not db.exists():
        raise FileNotFoundError(f"{db} not found: --data-dir must hold the PhysioNet PTB-XL layout.")
    labels = LabelSpace.from_csv(data_dir / "scp_statements.csv")
    key = file_sha256(db)[:16]
    rows: list[dict[str, str]] | None = None
    parts = []
    for fold in folds:
        cached = Path(cache_dir) / key / f"fold{fold}.npz" if cache_dir else None
        if cached and cached.exists():
            with np.load(cached) as z:
                parts.append(Split(**{k: z[k] for k in Split.__dataclass_fields__}))
            continue
        rows = rows if rows is not None else read_database(data_dir)
        split = build_fold(data_dir, rows, labels, fold)
        if len(split) == 0:
            raise FileNotFoundError(f"No records of strat_fold {fold} in {db}.")
        if cached:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(".tmp.npz")
            np.savez(tmp, **{k: getattr(split, k) for k in Split.__dataclass_fields__})
            tmp.replace(cached)
        parts.append(split)
    return Split.concat(parts)


def fingerprint(split: Split) -> str:
    """sha256 over record ids, signals and labels: identifies exactly what a model saw."""
    h = hashlib.sha256()
    for k in ("ecg_id", "signals", "superclass", "statements"):
        h.update(np.ascontiguousarray(getattr(split, k)).tobytes())
    return h.hexdigest()


__all__ = ["Split", "load_folds", "fingerprint", "read_record", "to_model_rate", "TARGET_FS"]
