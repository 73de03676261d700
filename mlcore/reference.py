"""The monitoring reference: one row of drift features per fold-9 record, with its labels.

Drift monitoring compares production rows with these rows; fairness monitoring computes per-group AUC from the
labels and calibrated probabilities; the model card draws its calibration curves from them. Production rows are
built by :func:`drift_row`, the same function that built the reference rows, so both are measured alike.

The file holds derived numbers only (no signals, no record ids): features, probabilities, labels, age and sex.
Derived from PTB-XL (Wagner et al. 2020, CC BY 4.0).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlcore.features import FEATURE_NAMES
from mlcore.labels import SUPERCLASSES
from mlcore.preprocess import LEADS

REFERENCE_FILE = "reference_fold9.npz"
N_EMBEDDING_PCS = 3  # principal components of the embedding tracked one by one
N_DISTANCE_PCS = 16  # the whitened distance from the reference centre uses this many components

SEXES = ("M", "F")  # PTB-XL codes 0 = male, 1 = female
QUALITY_FLAG_BUCKETS = ("0", "1", "2", "3+")

# Each drift feature and whether it is compared as a number or as a category.
NUMERICAL = ("age", "heart_rate", "noise", *(f"qrs_amp_{lead}" for lead in LEADS),
             *(f"p_{c}" for c in SUPERCLASSES), *(f"emb_pc{i + 1}" for i in range(N_EMBEDDING_PCS)), "emb_distance")
CATEGORICAL = ("sex", "quality_flags", "top_class")
FEATURES = NUMERICAL + CATEGORICAL
assert set(FEATURE_NAMES) <= set(FEATURES)


@dataclass(frozen=True)
class EmbeddingBasis:
    """Principal axes of the fold-9 embeddings: production embeddings are projected onto the same axes."""

    mean: np.ndarray  # (d,)
    components: np.ndarray  # (k, d), rows are unit principal axes, largest variance first
    variance: np.ndarray  # (k,)

    @classmethod
    def fit(cls, embedding: np.ndarray, k: int = N_DISTANCE_PCS) -> EmbeddingBasis:
        emb = np.asarray(embedding, dtype=np.float64)
        mean = emb.mean(axis=0)
        _, s, vt = np.linalg.svd(emb - mean, full_matrices=False)
        # A principal axis has no sign of its own; fix it so the largest loading is positive (reproducible).
        signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
        vt = vt * signs[:, None]
        return cls(mean, vt[:k], (s[:k] ** 2) / (len(emb) - 1))

    def project(self, embedding: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, d) embeddings -> ((n, N_EMBEDDING_PCS) coordinates, (n,) whitened distance from the centre)."""
        z = (np.atleast_2d(np.asarray(embedding, dtype=np.float64)) - self.mean) @ self.components.T
        distance = np.sqrt(((z**2) / np.maximum(self.variance, 1e-12)).sum(axis=1))
        return z[:, :N_EMBEDDING_PCS], distance


def quality_bucket(n_flags: int | None) -> str | None:
    if n_flags is None:
        return None
    return QUALITY_FLAG_BUCKETS[min(int(n_flags), len(QUALITY_FLAG_BUCKETS) - 1)]


def drift_rows(*, age: Sequence[float | None], sex: Sequence[str | None], features: Sequence[Mapping],
               superclass: np.ndarray, embedding: np.ndarray | None, basis: EmbeddingBasis) -> dict[str, list]:
    """Column-wise drift features for n records.

    age (n,), sex (n,) "M"/"F"/other, features: the intake_features dict per record (may be empty), superclass
    (n, 5) calibrated probabilities in SUPERCLASSES order, embedding (n, d) or None when not stored.
    Missing values are None (numbers: NaN), so a record without intake features still counts for the rest.
    """
    n = len(age)
    p = np.asarray(superclass, dtype=np.float64).reshape(n, len(SUPERCLASSES))
    cols: dict[str, list] = {"age": [np.nan if a is None else float(a) for a in age],
                             "sex": [s if s in SEXES else None for s in sex]}
    for name in ("heart_rate", "noise", *(f"qrs_amp_{lead}" for lead in LEADS)):
        cols[name] = [np.nan if f.get(name) is None else float(f[name]) for f in features]
    cols["quality_flags"] = [quality_bucket(f.get("quality_flags")) for f in features]
    for j, c in enumerate(SUPERCLASSES):
        cols[f"p_{c}"] = p[:, j].tolist()
    cols["top_class"] = [SUPERCLASSES[j] for j in p.argmax(axis=1)] if n else []
    if embedding is not None and len(embedding):
        pcs, distance = basis.project(embedding)
    else:
        pcs, distance = np.full((n, N_EMBEDDING_PCS), np.nan), np.full(n, np.nan)
    for i in range(N_EMBEDDING_PCS):
        cols[f"emb_pc{i + 1}"] = pcs[:, i].tolist()
    cols["emb_distance"] = distance.tolist()
    return cols


@dataclass(frozen=True)
class Reference:
    """Fold-9 drift rows plus superclass labels (for per-group AUC and calibration curves)."""

    columns: dict[str, np.ndarray]  # feature -> (n,) float64 (numerical) or object (categorical)
    labels: np.ndarray  # (n, 5) uint8 multi-hot, SUPERCLASSES order
    has_label: np.ndarray  # (n,) bool: at least one superclass (the benchmark scores only these)
    basis: EmbeddingBasis
    model_version: str

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def probabilities(self) -> np.ndarray:
        return np.stack([self.columns[f"p_{c}"] for c in SUPERCLASSES], axis=1)  # (n, 5)

    def save(self, path: str | Path) -> None:
        arrays = {f"col_{k}": (np.asarray(v, dtype=np.float32) if k in NUMERICAL
                               else np.asarray(["" if x is None else x for x in v], dtype="U4"))
                  for k, v in self.columns.items()}
        np.savez_compressed(path, labels=self.labels.astype(np.uint8), has_label=self.has_label,
                            basis_mean=self.basis.mean.astype(np.float32),
                            basis_components=self.basis.components.astype(np.float32),
                            basis_variance=self.basis.variance.astype(np.float64),
                            model_version=np.array(self.model_version), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> Reference:
        """Read a reference file; raises FileNotFoundError with the path when it is not there."""
        path = Path(path)
        if path.is_dir():
            path = path / REFERENCE_FILE
        if not path.exists():
            raise FileNotFoundError(f"No monitoring reference at {path}; build it with `python -m training "
                                    "reference`.")
        with np.load(path, allow_pickle=False) as z:
            columns = {}
            for k in FEATURES:
                raw = z[f"col_{k}"]
                columns[k] = (raw.astype(np.float64) if k in NUMERICAL
                              else np.array([v if v else None for v in raw.tolist()], dtype=object))
            basis = EmbeddingBasis(z["basis_mean"].astype(np.float64), z["basis_components"].astype(np.float64),
                                   z["basis_variance"])
            return cls(columns, z["labels"], z["has_label"], basis, str(z["model_version"]))
