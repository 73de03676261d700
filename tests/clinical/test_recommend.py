from __future__ import annotations

from clinical.recommend import URGENCY_ORDER, FindingInput, load_table, rank_actions


def test_a_normal_ecg_gets_a_routine_action_and_nothing_is_never_empty():
    normal = rank_actions([FindingInput("superclass:NORM", 0.93), FindingInput("statement:SR", 0.97)])
    assert [a.urgency for a in normal] == ["routine"]
    nothing = rank_actions([])
    assert len(nothing) == 1 and nothing[0].urgency == "routine" and "over-read" in nothing[0].action


def test_established_mi_is_not_treated_as_acute_but_injury_is():
    old_mi = rank_actions([FindingInput("superclass:MI", 0.9), FindingInput("statement:IMI", 0.8)])
    assert all(a.urgency != "immediate" for a in old_mi)
    acute = rank_actions([FindingInput("superclass:MI", 0.9), FindingInput("statement:INJAS", 0.4)])
    assert acute[0].urgency == "immediate" and acute[0].triggered_by == "statement:INJAS"
    assert "STEMI" in acute[0].action


def test_ranking_is_by_urgency_then_confidence():
    actions = rank_actions([FindingInput("statement:LVH", 0.99), FindingInput("statement:AFIB", 0.55),
                            FindingInput("superclass:STTC", 0.7), FindingInput("statement:3AVB", 0.3)])
    urgencies = [URGENCY_ORDER[a.urgency] for a in actions]
    assert urgencies == sorted(urgencies)
    assert actions[0].triggered_by == "statement:3AVB"
    urgent = [a for a in actions if a.urgency == "urgent"]
    assert [a.confidence for a in urgent] == sorted((a.confidence for a in urgent), reverse=True)


def test_member_disagreement_adds_an_over_read_action():
    actions = rank_actions([FindingInput("superclass:CD", 0.6, needs_review=True)])
    assert any("disagree" in a.action for a in actions)


def test_every_action_carries_the_table_version_and_a_source():
    table = load_table()
    actions = rank_actions([FindingInput(k, 0.5) for k in table["rules"]])
    assert {a.table_version for a in actions} == {table["version"]}
    assert all(a.source and a.reasoning for a in actions)
    assert all(set(URGENCY_ORDER) >= {x["urgency"] for x in v} for v in table["rules"].values())
