"""mlcore.criteria: statements from measurements, with the sex- and age-specific limits."""
from __future__ import annotations

import json

import pytest

from mlcore.criteria import AHA_2009_IV, TDP_2010, UDMI_2018, criteria_statements
from mlcore.measure import measure
from mlcore.preprocess import LEADS
from tests.mlcore.synthetic_beats import BeatSpec, ecg

NORMAL = {"heart_rate_bpm": 70, "rr_ms": 857, "p_ms": 100, "pr_ms": 160, "qrs_ms": 90, "qt_ms": 400,
          "qtc_bazett_ms": 420, "qtc_fridericia_ms": 413, "qtc_framingham_ms": 422, "qtc_hodges_ms": 418,
          "p_axis_deg": 50, "qrs_axis_deg": 40, "t_axis_deg": 40, "st_j_uv": {lead: 0 for lead in LEADS},
          "st_j60_uv": {lead: 20 for lead in LEADS}, "reasons": {}}


def _codes(m: dict, age: float | None = 60, sex: str | None = "M") -> dict[str, dict]:
    return {s["code"]: s for s in criteria_statements(m, age=age, sex=sex)["statements"]}


def test_a_normal_ecg_has_no_statement():
    assert _codes(NORMAL) == {}


def test_same_qtc_is_long_for_a_man_and_not_for_a_woman():
    m = {**NORMAL, "qtc_framingham_ms": 455}
    man, woman = _codes(m, sex="M"), _codes(m, sex="F")
    assert man["LONG_QTC"]["values"] == {"qtc_framingham_ms": 455}
    assert man["LONG_QTC"]["source"] == AHA_2009_IV
    assert "men's limit (450 ms)" in man["LONG_QTC"]["notes"][0]
    assert "LONG_QTC" not in woman
    assert "LONG_QTC" in _codes({**m, "qtc_framingham_ms": 460}, sex="F")


def test_long_qtc_with_unknown_sex_says_it_could_not_be_applied():
    out = criteria_statements({**NORMAL, "qtc_framingham_ms": 455}, age=60, sex="U")
    assert not out["statements"]
    assert any(s["code"] == "LONG_QTC" and "sex is unknown" in s["reason"] for s in out["not_assessed"])
    above_both = _codes({**NORMAL, "qtc_framingham_ms": 470}, sex=None)
    assert "both the men's and the women's limit" in above_both["LONG_QTC"]["notes"][0]


def test_qtc_of_500_is_critical_and_bazett_is_the_fallback():
    m = {**NORMAL, "qtc_framingham_ms": None, "qtc_bazett_ms": 505}
    s = _codes(m, sex="F")["LONG_QTC"]
    assert s["severity"] == "critical" and s["source"] == TDP_2010
    assert s["values"] == {"qtc_bazett_ms": 505} and "Bazett" in s["text"]


@pytest.mark.parametrize(("change", "code"), [
    ({"heart_rate_bpm": 45}, "BRADY"), ({"heart_rate_bpm": 110}, "TACHY"), ({"pr_ms": 220}, "AVB1"),
    ({"qrs_ms": 124}, "WIDE_QRS"), ({"qrs_axis_deg": -45}, "LAD"), ({"qrs_axis_deg": 110}, "RAD"),
    ({"qrs_axis_deg": -120}, "EXTREME_AXIS"),
])
def test_each_cut_off_fires_past_its_limit_and_not_at_normal_values(change, code):
    s = _codes({**NORMAL, **change})
    assert list(s) == [code]
    assert s[code]["values"].items() <= change.items()
    assert s[code]["source"]


@pytest.mark.parametrize(("change", "code"), [
    ({"heart_rate_bpm": 50}, "BRADY"), ({"heart_rate_bpm": 100}, "TACHY"), ({"pr_ms": 200}, "AVB1"),
    ({"qrs_ms": 118}, "WIDE_QRS"), ({"qrs_axis_deg": -30}, "LAD"), ({"qrs_axis_deg": 90}, "RAD"),
])
def test_values_at_the_limit_do_not_fire(change, code):
    assert code not in _codes({**NORMAL, **change})


def test_rate_statements_do_not_claim_sinus_rhythm():
    s = _codes({**NORMAL, "heart_rate_bpm": 45})["BRADY"]
    assert "sinus" not in s["text"].lower()
    assert any("sinus is not decided by measurement" in n for n in s["notes"])


def test_missing_pr_is_listed_as_not_assessed_with_its_reason():
    reason = "no consistent P wave before the QRS (atrial fibrillation or flutter, junctional rhythm, or noise)"
    out = criteria_statements({**NORMAL, "pr_ms": None, "reasons": {"pr_ms": reason}}, age=60, sex="M")
    assert {"code": "AVB1", "reason": f"pr_ms not measured: {reason}"} in out["not_assessed"]


def test_generated_anterior_stemi_is_called_with_its_territory():
    spec = BeatSpec(st_uv={"V2": 300, "V3": 300, "V4": 300})
    m = measure(ecg(500, spec)[0], 500)
    s = _codes(m, age=55, sex="M")
    stemi = s["STEMI"]
    assert stemi["severity"] == "critical" and stemi["source"] == UDMI_2018
    assert list(stemi["values"]["territories"]) == ["anterior"]
    assert set(stemi["values"]["st_j_uv"]) == {"V2", "V3", "V4"}
    assert "anterior" in stemi["text"]
    assert "STEMI" not in _codes(measure(ecg(500, BeatSpec())[0], 500), age=55, sex="M")
    json.dumps(s)


@pytest.mark.parametrize(("sex", "age", "fires"), [
    ("F", 30, True), ("M", 45, False), ("M", 35, False), (None, None, True)])
def test_v2_v3_limit_depends_on_sex_and_age(sex, age, fires):
    """1.8 mm in V2-V3 only: above the women's 1.5 mm, below the men's 2 / 2.5 mm."""
    m = {**NORMAL, "st_j_uv": {**NORMAL["st_j_uv"], "V2": 180, "V3": 180}}
    s = _codes(m, age=age, sex=sex)
    assert ("STEMI" in s) is fires
    if fires:
        assert s["STEMI"]["values"]["territories"] == {"anterior": [["V2", "V3"]]}


def test_men_under_40_need_2_5_mm_in_v2_v3():
    m = {**NORMAL, "st_j_uv": {**NORMAL["st_j_uv"], "V2": 230, "V3": 230}}
    assert "STEMI" in _codes(m, age=45, sex="M")
    assert "STEMI" not in _codes(m, age=35, sex="M")


def test_inferior_elevation_of_1_mm_in_two_contiguous_leads():
    st = {**NORMAL["st_j_uv"], "II": 120, "III": 150, "aVF": 130}
    s = _codes({**NORMAL, "st_j_uv": st})["STEMI"]
    assert list(s["values"]["territories"]) == ["inferior"]
    one_lead = {**NORMAL["st_j_uv"], "III": 150, "V5": 150}  # not contiguous
    assert "STEMI" not in _codes({**NORMAL, "st_j_uv": one_lead})


def test_marked_st_depression_must_be_horizontal_or_downsloping():
    j = {**NORMAL["st_j_uv"], "V5": -80, "V6": -70}
    flat = {**NORMAL["st_j60_uv"], "V5": -90, "V6": -80}
    upsloping = {**NORMAL["st_j60_uv"], "V5": 20, "V6": 10}
    s = _codes({**NORMAL, "st_j_uv": j, "st_j60_uv": flat})
    assert list(s) == ["ST_DEPRESSION"] and list(s["ST_DEPRESSION"]["values"]["territories"]) == ["lateral"]
    assert "ST_DEPRESSION" not in _codes({**NORMAL, "st_j_uv": j, "st_j60_uv": upsloping})


def test_wide_qrs_says_when_it_was_read_in_the_wider_ludb_convention():
    ludb = _codes({**NORMAL, "qrs_ms": 124, "convention": "ludb"})["WIDE_QRS"]
    exact = _codes({**NORMAL, "qrs_ms": 124, "convention": "exact"})["WIDE_QRS"]
    assert any("LUDB annotators' convention" in n for n in ludb["notes"])
    assert exact["notes"] == []
