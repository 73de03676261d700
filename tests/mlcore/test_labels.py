from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlcore.labels import SUPERCLASSES, LabelSpace, parse_scp_codes

WEIGHTS = Path(__file__).resolve().parents[2] / "mlcore" / "weights" / "manifest.json"


def names(vec, labels):
    return {labels[i] for i in np.flatnonzero(vec)}


@pytest.mark.parametrize(("scp_codes", "superclasses", "statements"), [
    ("{'NORM': 100.0, 'SR': 0.0}", {"NORM"}, {"NORM", "SR"}),
    # Likelihood 0 still counts (PTB-XL benchmark convention); two MI statements give one MI.
    ("{'IMI': 50.0, 'ASMI': 0.0, 'SR': 0.0}", {"MI"}, {"IMI", "ASMI", "SR"}),
    ("{'LVH': 100.0, 'AFIB': 0.0}", {"HYP"}, {"LVH", "AFIB"}),
    # Form and rhythm statements have no superclass: such a record is out of the superclass task.
    ("{'PVC': 100.0, 'SR': 0.0}", set(), {"PVC", "SR"}),
    ("{'NDT': 100.0, 'CLBBB': 100.0}", {"STTC", "CD"}, {"NDT", "CLBBB"}),
    ("{'ISCAL': 80.0, 'XYZ': 100.0}", {"STTC"}, {"ISCAL"}),  # unknown codes are ignored
])
def test_hand_checked_scp_codes_rows(label_space, scp_codes, superclasses, statements):
    sup, stm = label_space.encode(scp_codes)
    assert names(sup, SUPERCLASSES) == superclasses
    assert names(stm, label_space.statements) == statements


def test_statement_table_order_and_superclass_map(label_space):
    assert label_space.statements[:3] == ("NDT", "NORM", "IMI")
    assert label_space.superclass_of["ASMI"] == "MI"
    assert "PVC" not in label_space.superclass_of


def test_parse_scp_codes_rejects_non_dicts():
    assert parse_scp_codes("{'NORM': 100.0}") == {"NORM": 100.0}
    with pytest.raises(ValueError):
        parse_scp_codes("['NORM']")


@pytest.mark.skipif(not WEIGHTS.exists(), reason="no exported weights")
def test_committed_label_space_is_the_benchmark_one():
    labels = LabelSpace.from_dict(json.loads(WEIGHTS.read_text())["labels"])
    assert labels.superclasses == ("NORM", "MI", "STTC", "CD", "HYP")
    assert len(labels.statements) == 71
    assert set(labels.superclass_of.values()) == set(SUPERCLASSES)
