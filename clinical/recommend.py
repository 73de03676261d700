"""Rank clinical actions for a set of findings from the versioned table in recommendations.json."""
from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

TABLE_PATH = Path(__file__).resolve().parent / "recommendations.json"
URGENCY_ORDER = {"immediate": 0, "urgent": 1, "routine": 2}


@dataclass(frozen=True)
class FindingInput:
    key: str  # "superclass:MI" or "statement:AFIB"
    probability: float
    needs_review: bool = False


@dataclass(frozen=True)
class RankedAction:
    action: str
    urgency: str
    reasoning: str
    source: str
    triggered_by: str
    confidence: float
    table_version: str


@functools.lru_cache(maxsize=1)
def load_table(path: str = str(TABLE_PATH)) -> dict:
    table = json.loads(Path(path).read_text())
    for key, actions in table["rules"].items():
        for a in actions:
            if a["urgency"] not in URGENCY_ORDER:
                raise ValueError(f"{key}: unknown urgency {a['urgency']!r}")
    return table


def rank_actions(findings: Iterable[FindingInput], table: dict | None = None) -> list[RankedAction]:
    """Actions for the findings, most urgent first, then by calibrated confidence; never empty.

    Duplicate actions keep their highest-confidence trigger. Findings without a rule add nothing; with no
    action at all, the table's fallback (a routine over-read) is returned.
    """
    table = table or load_table()
    version = table["version"]
    best: dict[str, RankedAction] = {}
    findings = list(findings)
    for f in findings:
        for a in table["rules"].get(f.key, []):
            cand = RankedAction(a["action"], a["urgency"], a["reasoning"], a["source"], f.key, f.probability, version)
            if a["action"] not in best or best[a["action"]].confidence < f.probability:
                best[a["action"]] = cand
    uncertain = [f for f in findings if f.needs_review]
    if uncertain:
        a = table["needs_review"]
        top = max(uncertain, key=lambda f: f.probability)
        best[a["action"]] = RankedAction(a["action"], a["urgency"], a["reasoning"], a["source"], top.key,
                                         top.probability, version)
    if not best:
        a = table["fallback"]
        return [RankedAction(a["action"], a["urgency"], a["reasoning"], a["source"], "none", 1.0, version)]
    return sorted(best.values(), key=lambda r: (URGENCY_ORDER[r.urgency], -r.confidence, r.action))
