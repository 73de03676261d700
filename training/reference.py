"""Build the monitoring reference (``mlcore/weights/reference_fold9.npz``) from fold 9 and the exported ensemble."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mlcore.ensemble import Ensemble
from mlcore.features import intake_features
from mlcore.preprocess import TARGET_FS
from mlcore.ptbxl import load_folds
from mlcore.quality import assess
from mlcore.reference import REFERENCE_FILE, SEXES, EmbeddingBasis, Reference, drift_rows
from training.evaluate import predict_split
from training.train import VALID_FOLDS


def build_reference(*, weights: str, data_dir: str, cache_dir: str | None) -> Path:
    started = time.time()
    ens = Ensemble.load(weights, threads=0)
    split = load_folds(data_dir, VALID_FOLDS, cache_dir)
    pred = predict_split(ens, split)
    features = [intake_features(x, TARGET_FS, assess(x, TARGET_FS))
                for x in tqdm(split.signals, desc="intake features", unit="ecg")]
    basis = EmbeddingBasis.fit(pred.embedding)
    cols = drift_rows(age=[None if not np.isfinite(a) else float(a) for a in split.age],
                      sex=[SEXES[s] if s in (0, 1) else None for s in split.sex], features=features,
                      superclass=pred.superclass, embedding=pred.embedding, basis=basis)
    ref = Reference({k: np.asarray(v, dtype=object if isinstance(v[0], str) or v[0] is None else np.float64)
                     for k, v in cols.items()},
                    labels=split.superclass.astype(np.uint8), has_label=split.has_superclass, basis=basis,
                    model_version=ens.version)
    out = Path(weights) / REFERENCE_FILE
    ref.save(out)
    hr = ref.columns["heart_rate"]
    print(f"reference of {len(ref)} fold-9 records written to {out} ({out.stat().st_size / 1e3:.0f} kB) in "
          f"{time.time() - started:.0f} s; heart rate median {np.nanmedian(hr):.0f}/min "
          f"({np.isnan(hr).sum()} without a rhythm)")
    return out
