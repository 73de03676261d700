"""Ranked actions: the false-reassurance and alarm cases of issue 15, the combination rules and the fallbacks."""
from __future__ import annotations

import pytest

from clinical.recommend import (
    CAVEAT,
    MODELS_DISAGREE,
    QUALITY,
    RULE,
    URGENCY_ORDER,
    FindingInput,
    QualityInput,
    dangerous_keys,
    load_table,
    rank_actions,
)

INJURY = ("INJAS", "INJAL", "INJIN", "INJIL", "INJLA")
FLAT_V2 = QualityInput("flat_line", "Lead V2 is flat (lead off?).", "V2")


def F(key: str, p: float = 0.8, review: bool = False) -> FindingInput:  # noqa: N802 (reads like a finding)
    return FindingInput(key, p, review)


def urgencies(actions) -> list[str]:
    return [a.urgency for a in actions if a.kind != CAVEAT]


def ids(actions) -> list[str]:
    return [a.rule_id for a in actions]


# -- false reassurance -------------------------------------------------------------------------------------------

def test_a_lone_ischaemic_finding_is_never_answered_with_nothing_found():
    actions = rank_actions([F("statement:ISCAS", 0.4)])
    assert not any("No finding" in a.action for a in actions)
    assert actions[0].rule_id == "statement:ISCAS" and actions[0].urgency == "urgent"


def test_a_finding_the_table_does_not_know_gets_the_generic_abnormal_over_read():
    actions = rank_actions([F("measure:SOMETHING_NEW", 1.0)])
    assert [a.rule_id for a in actions] == ["fallback:ABNORMAL_NO_RULE"]
    assert "Abnormal ECG (SOMETHING_NEW)" in actions[0].action and "No finding" not in actions[0].action


def test_nothing_found_only_when_nothing_is_flagged():
    assert ids(rank_actions([])) == ["fallback:NOTHING_FLAGGED"]
    for key in ("statement:LAFB", "statement:SR", "superclass:CD"):
        assert "fallback:NOTHING_FLAGGED" not in ids(rank_actions([F(key)]))


def test_the_conduction_class_alone_asks_the_over_read_to_look_for_the_dangerous_blocks():
    alone = rank_actions([F("superclass:CD", 0.6)])
    assert "AV block" in alone[0].action and "LBBB" in alone[0].action and "pre-excitation" in alone[0].action
    # The specific statements carry the urgency.
    assert rank_actions([F("superclass:CD"), F("statement:3AVB", 0.3)])[0].urgency == "immediate"
    assert rank_actions([F("superclass:CD"), F("statement:CLBBB", 0.5)])[0].urgency == "urgent"


def test_rbbb_is_not_called_benign_without_context():
    rbbb = rank_actions([F("statement:CRBBB")])[0]
    assert "benign" not in (rbbb.action + rbbb.reasoning)
    assert "ischaemic symptoms manage like STEMI" in rbbb.action


def test_lbbb_is_managed_like_stemi_with_ischaemia_whether_new_or_not():
    lbbb = rank_actions([F("statement:CLBBB")])[0]
    assert "if new" not in lbbb.action.lower() and "whether or not the LBBB is known" in lbbb.action
    assert lbbb.urgency == "urgent" and "2023 ESC" in lbbb.source
    with_symptoms = rank_actions([F("statement:CLBBB"), F("context:ISCHAEMIC_SYMPTOMS", 1.0)])
    assert with_symptoms[0].urgency == "immediate" and with_symptoms[0].rule_id == "combination:BBB_OR_PACED_ISCHAEMIA"


@pytest.mark.parametrize("code", INJURY)
def test_subendocardial_injury_is_an_urgent_acs_assessment_not_the_stemi_pathway(code):
    top = rank_actions([F(f"statement:{code}", 0.5)])[0]
    assert top.urgency == "urgent" and "hs-troponin" in top.action
    assert "activate the STEMI pathway" not in top.action
    assert "STEMI pathway only if ST-elevation criteria" in top.action


def test_stemi_criteria_by_measurement_are_immediate_and_right_sided_leads_belong_to_inferior_stemi():
    for territory in ("ANTERIOR", "INFERIOR", "LATERAL"):
        top = rank_actions([F(f"measure:STEMI_{territory}", 1.0)])[0]
        assert top.urgency == "immediate" and "STEMI pathway" in top.action
    assert "V4R" in rank_actions([F("measure:STEMI_INFERIOR", 1.0)])[0].action
    assert not any("V4R" in a.action for a in rank_actions([F("statement:INJIN")]))


def test_a_flat_lead_turns_a_normal_reading_into_repeat_the_ecg():
    actions = rank_actions([F("superclass:NORM", 0.9), F("statement:SR", 0.97)], quality=[FLAT_V2])
    assert actions[0].kind == QUALITY and actions[0].action.startswith("Repeat the ECG") and "V2" in actions[0].action
    assert not any("Normal ECG" in a.action or "Sinus rhythm" in a.action for a in actions)


def test_quality_problems_are_listed_once_with_their_reasons_and_keep_the_findings_actions():
    noisy = QualityInput("high_frequency_noise", "Lead I has marked high-frequency noise.", "I")
    reversal = QualityInput("limb_lead_reversal", "Lead I is inverted and aVR upright.")
    actions = rank_actions([F("statement:AFIB", 0.7)], quality=[noisy, reversal, reversal])
    assert ids(actions) == ["statement:AFIB", "quality:REPEAT_ECG"]
    assert "lead I noisy" in actions[1].action and "limb electrodes" in actions[1].action
    with_nothing = rank_actions([], quality=[FLAT_V2])
    assert ids(with_nothing) == ["quality:REPEAT_ECG", "fallback:NOTHING_FLAGGED"]


def test_normal_reassurance_is_shown_once_and_only_when_nothing_is_abnormal():
    normal = rank_actions([F("superclass:NORM", 0.93), F("statement:NORM", 0.9), F("statement:SR", 0.97)])
    assert ids(normal) == ["superclass:NORM"] and urgencies(normal) == ["routine"]
    with_block = rank_actions([F("superclass:NORM", 0.93), F("statement:SR", 0.97), F("statement:LAFB", 0.4)])
    assert ids(with_block) == ["statement:LAFB"]
    assert "no action beyond the clinician's over-read" in with_block[0].action


# -- alarm fatigue -----------------------------------------------------------------------------------------------

def test_disagreement_about_a_benign_finding_raises_nothing():
    actions = rank_actions([F("superclass:NORM", 0.8), F("statement:SR", 0.7, review=True),
                            F("statement:STACH", 0.5, review=True)])
    assert urgencies(actions) == ["routine"] and not any(a.kind == CAVEAT for a in actions)


def test_disagreement_about_a_dangerous_finding_is_a_caveat_last_and_sets_no_urgency():
    actions = rank_actions([F("superclass:CD", 0.6), F("statement:AFIB", 0.5, review=True)])
    assert actions[0].rule_id == "statement:AFIB" and actions[0].kind == RULE
    caveat = actions[-1]
    assert caveat.kind == CAVEAT and caveat.rule_id == MODELS_DISAGREE and "AFIB" in caveat.action
    assert rank_actions([F("superclass:CD", 0.6), F("statement:AFIB", 0.5)])[0].urgency == actions[0].urgency


def test_a_dangerous_label_one_member_flags_is_a_caveat_not_a_finding():
    """A possible miss: the ensemble does not flag AFIB but one member is above its threshold."""
    actions = rank_actions([F("superclass:NORM", 0.8), F("statement:SR", 0.7)],
                           disputed_absent=["statement:AFIB", "statement:SR"])
    assert [a.kind for a in actions] == [RULE, CAVEAT] and actions[0].urgency == "routine"
    assert "AFIB" in actions[-1].action and "SR" not in actions[-1].action.replace("AFIB", "")
    assert not any("Atrial fibrillation" in a.action for a in actions if a.kind == RULE)


def test_the_mi_and_sttc_classes_alone_are_routine_over_reads():
    for findings in ([F("superclass:MI", 0.9)], [F("superclass:MI", 0.9), F("statement:IMI", 0.8)],
                     [F("superclass:STTC", 0.7)], [F("superclass:STTC", 0.7), F("statement:NDT", 0.5)]):
        actions = rank_actions(findings)
        assert set(urgencies(actions)) == {"routine"}
    assert "prior ECG" in rank_actions([F("superclass:MI", 0.9)])[0].action


def test_a_low_psvt_output_on_sinus_tachycardia_gives_no_urgent_ablation_referral():
    actions = rank_actions([F("statement:STACH", 0.8), F("statement:PSVT", 0.12)])
    assert set(urgencies(actions)) == {"routine"}
    assert not any("ablation" in a.action and a.urgency != "routine" for a in actions)


# -- combination rules -------------------------------------------------------------------------------------------

def test_af_with_a_rapid_rate_and_af_with_pre_excitation():
    rapid = rank_actions([F("statement:AFIB", 0.7), F("measure:TACHY", 1.0)])
    assert "combination:AF_RAPID_RATE" in ids(rapid) and "statement:AFIB" in ids(rapid)
    assert next(a for a in rapid if a.rule_id == "combination:AF_RAPID_RATE").triggered_by == (
        "statement:AFIB+measure:TACHY")
    preexcited = rank_actions([F("statement:WPW", 0.4), F("statement:AFIB", 0.7)])
    rule = next(a for a in preexcited if a.rule_id == "combination:AF_PREEXCITED")
    assert rule.urgency == "urgent" and "avoid AV-nodal blockers" in rule.action and rule.confidence == 0.4


def test_a_wide_qrs_tachycardia_is_treated_as_vt_and_hides_its_parts():
    actions = rank_actions([F("measure:WIDE_QRS", 1.0), F("measure:TACHY", 1.0)])
    assert ids(actions) == ["combination:WIDE_QRS_TACHYCARDIA"] and actions[0].urgency == "immediate"
    assert "ventricular tachycardia until proven otherwise" in actions[0].action
    svt_bbb = rank_actions([F("statement:SVTAC", 0.6), F("statement:CRBBB", 0.7)])
    assert svt_bbb[0].rule_id == "combination:SVT_WIDE_QRS" and "statement:SVTAC" not in ids(svt_bbb)


def test_a_qtc_of_500_ms_is_urgent_and_hides_the_milder_rule():
    actions = rank_actions([F("measure:QTC_LONG", 1.0), F("measure:QTC_500", 1.0)])
    assert ids(actions) == ["measure:QTC_500"] and actions[0].urgency == "urgent"


def test_lbbb_or_pacing_with_ischaemia_findings_adds_a_caveat_not_an_action():
    actions = rank_actions([F("statement:PACE", 0.9), F("superclass:MI", 0.6)])
    assert actions[-1].rule_id == "caveat:ISCHAEMIA_UNRELIABLE" and actions[-1].kind == CAVEAT
    assert actions[0].kind == RULE


# -- ranking -----------------------------------------------------------------------------------------------------

def test_ranking_is_by_urgency_then_confidence_and_every_line_carries_version_source_and_rule():
    actions = rank_actions([F("statement:LVH", 0.99), F("statement:AFIB", 0.55), F("statement:ISCAL", 0.7),
                            F("statement:3AVB", 0.3)])
    order = [URGENCY_ORDER[a.urgency] for a in actions]
    assert order == sorted(order) and actions[0].triggered_by == "statement:3AVB"
    urgent = [a for a in actions if a.urgency == "urgent"]
    assert [a.confidence for a in urgent] == sorted((a.confidence for a in urgent), reverse=True)
    table = load_table()
    everything = rank_actions([F(r["when"][0][0], 0.5, review=True) for r in table["rules"]], quality=[FLAT_V2])
    assert {a.table_version for a in everything} == {table["version"]}
    assert all(a.source and a.reasoning and a.rule_id for a in everything)
    assert everything[0].kind != CAVEAT


def test_every_dangerous_finding_is_urgent_or_immediate_on_its_own():
    table = load_table()
    own = {r["id"]: r for r in table["rules"]}
    assert dangerous_keys(table) and all(own[k]["urgency"] in ("urgent", "immediate") for k in dangerous_keys(table))
