"""Stored predictions drawn from the fold-9 reference, for drift and fairness tests (no model run needed)."""
from __future__ import annotations

import itertools

import numpy as np
from django.contrib.auth.models import User

from clinical.models import Acknowledgement, EcgRecord, Patient, Prediction
from mlcore.labels import SUPERCLASSES
from mlcore.preprocess import LEADS
from mlcore.reference import N_EMBEDDING_PCS, Reference

_serial = itertools.count()


def reference_sample(ref: Reference, n: int, seed: int) -> dict[str, np.ndarray]:
    """n reference rows drawn with replacement (an unshifted production window)."""
    idx = np.random.default_rng(seed).integers(0, len(ref), n)
    return {k: v[idx] for k, v in ref.columns.items()}


def embeddings_for(ref: Reference, cols: dict[str, np.ndarray], seed: int) -> np.ndarray:
    """Embeddings whose projections are exactly the rows' principal coordinates and whitened distance."""
    basis = ref.basis
    k = len(basis.variance)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(len(cols["age"])):
        z = np.zeros(k)
        z[:N_EMBEDDING_PCS] = [cols[f"emb_pc{j + 1}"][i] for j in range(N_EMBEDDING_PCS)]
        head = float((z[:N_EMBEDDING_PCS] ** 2 / basis.variance[:N_EMBEDDING_PCS]).sum())
        rest = np.sqrt(max(cols["emb_distance"][i] ** 2 - head, 0.0))
        u = rng.normal(size=k - N_EMBEDDING_PCS)
        z[N_EMBEDDING_PCS:] = np.sqrt(basis.variance[N_EMBEDDING_PCS:]) * rest * u / np.linalg.norm(u)
        out.append(basis.mean + z @ basis.components)
    return np.array(out)


def _age(value) -> int | None:
    """Whole years, or None (an upload with "Age unknown") for a missing value."""
    return None if value is None or not np.isfinite(value) else int(round(value))


def seed_predictions(cols: dict, *, uploader: User, embeddings: np.ndarray | None = None,
                     urgency: list[str] | None = None, with_features: bool = True) -> list[Prediction]:
    """Store one patient, ECG and prediction per row; returns the predictions (created now)."""
    n = len(cols["age"])
    patients = Patient.objects.bulk_create([
        Patient(pseudonym=f"MON-{next(_serial)}", age=_age(cols["age"][i]), sex=cols["sex"][i] or "U")
        for i in range(n)])
    flags = {"0": 0, "1": 1, "2": 2, "3+": 3}
    records = EcgRecord.objects.bulk_create([
        EcgRecord(patient=patients[i], age_at_ecg=_age(cols["age"][i]), sex_at_ecg=cols["sex"][i] or "U",
                  uploaded_by=uploader,
                  source_format="csv", upload_sha256="0" * 64, fs=100.0, n_samples=0, signal=b"",
                  features=({"heart_rate": float(cols["heart_rate"][i]), "noise": float(cols["noise"][i]),
                             "quality_flags": flags.get(cols["quality_flags"][i], 0),
                             **{f"qrs_amp_{lead}": float(cols[f"qrs_amp_{lead}"][i]) for lead in LEADS}}
                            if with_features else {}))
        for i in range(n)])
    return Prediction.objects.bulk_create([
        Prediction(record=records[i], model_version="test",
                   superclass={c: float(cols[f"p_{c}"][i]) for c in SUPERCLASSES}, statements={}, spread={},
                   embedding=[] if embeddings is None else np.round(embeddings[i], 4).tolist(),
                   top_urgency=(urgency[i] if urgency else "routine"), inference_ms=10.0)
        for i in range(n)])


def seed_reviews(predictions: list[Prediction], outcomes: list[dict[str, str]], reviewer: User) -> None:
    Acknowledgement.objects.bulk_create([
        Acknowledgement(prediction=p, reviewer=reviewer, verdict="agree", note="checked", outcomes=o)
        for p, o in zip(predictions, outcomes)])
