"""How many members reach each label's threshold: the count the "needs review" rule reads (members that disagree)."""
from __future__ import annotations

import numpy as np
import torch

from mlcore.calibration import HEADS
from mlcore.ensemble import Ensemble
from tests.conftest import synthetic_ecg


def member_probabilities(ens: Ensemble, ecg: np.ndarray, fs: float) -> dict[str, np.ndarray]:
    """Each member's own calibrated probabilities, (members, k) per head, computed here member by member."""
    x = ens.prepare([ecg], fs)  # (1, 12, 1000)
    with torch.inference_mode():
        outs = [m.forward_all(x) for m in ens.members]
    return {h: np.stack([1 / (1 + np.exp(-getattr(o, h)[0].double().numpy() / ens.temperature[h])) for o in outs])
            for h in HEADS}


def test_members_above_counts_the_members_at_or_over_each_threshold(tiny_weights):
    ecg = synthetic_ecg(np.random.default_rng(5), fs=500)  # (12, 5000) mV
    ens = Ensemble.load(tiny_weights)
    member_p = member_probabilities(ens, ecg, 500)
    # Thresholds between the two members for every label: each one is "some, not all" (1 of 2).
    for h in HEADS:
        ens.threshold[h] = member_p[h].mean(0)
    pred = ens.predict([ecg], 500)
    for h in HEADS:
        lo, hi = member_p[h].min(0), member_p[h].max(0)
        split = hi > lo  # two untrained members of different seeds differ on (nearly) every label
        assert split.sum() >= len(split) - 1
        expected = (member_p[h] >= ens.threshold[h]).sum(0)
        assert np.array_equal(getattr(pred, f"{h}_members_above")[0], expected)
        assert (getattr(pred, f"{h}_members_above")[0][split] == 1).all()
    # Thresholds below both members: all agree; above both: none.
    for h in HEADS:
        ens.threshold[h] = member_p[h].min(0) - 1e-6
    assert all((getattr(ens.predict([ecg], 500), f"{h}_members_above")[0] == 2).all() for h in HEADS)
    for h in HEADS:
        ens.threshold[h] = member_p[h].max(0) + 1e-6
    assert all((getattr(ens.predict([ecg], 500), f"{h}_members_above")[0] == 0).all() for h in HEADS)
