"""The demo ECGs read as the cases they are named after by measurement too (clinical.demo + mlcore.measure +
mlcore.criteria): a normal tracing has a normal QTc and PR, the tachycardia is a tachycardia with a normal PR, the
anterior ST elevation meets the STEMI criteria in the anterior leads. Before the T wave followed the cycle length
(QT ∝ √RR), every demo case read a QTc of 520-630 ms and the seeded demo was full of "QTc ≥ 500" actions."""
from __future__ import annotations

import pytest

from clinical import demo
from mlcore.criteria import criteria_statements
from mlcore.measure import measure

EXPECTED = {
    "Normal sinus rhythm": set(),
    "Sinus tachycardia": {"TACHY"},
    "Anterior ST elevation": {"STEMI"},
    "Atrial fibrillation": {"TACHY"},
    "Wide QRS (bundle branch block pattern)": {"WIDE_QRS"},
    "Old inferior infarction pattern": set(),
}


@pytest.mark.parametrize("k", range(len(demo.CASES)), ids=[c.name for c in demo.CASES])
def test_each_demo_case_measures_as_its_name_says(k):
    case = demo.CASES[k]
    m = measure(demo.synthesize(case, fs=500, seed=k), 500)
    codes = {s["code"] for s in criteria_statements(m, age=case.age, sex=case.sex)["statements"]}
    assert codes == EXPECTED[case.name], (case.name, m["pr_ms"], m["qrs_ms"], m["qt_ms"], m["qtc_bazett_ms"])
    assert 360 <= m["qtc_bazett_ms"] <= 460
    if not case.irregular:
        assert 120 <= m["pr_ms"] <= 200


def test_the_anterior_st_elevation_is_anterior():
    case = next(c for c in demo.CASES if c.name == "Anterior ST elevation")
    m = measure(demo.synthesize(case, fs=500, seed=2), 500)
    stemi = next(s for s in criteria_statements(m, age=case.age, sex=case.sex)["statements"] if s["code"] == "STEMI")
    assert "anteroseptal" in stemi["text"] or "anterior" in stemi["text"]  # V1–V4: the LAD territory
