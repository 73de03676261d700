"""Label space: the 5 PTB-XL diagnostic superclasses and the 71 SCP statements ("all" task).

Both come from ``scp_statements.csv``; aggregation follows the PTB-XL benchmark (Strodthoff et al. 2020):
every statement listed in a record's ``scp_codes`` counts, whatever its likelihood value.
"""
from __future__ import annotations

import ast
import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SUPERCLASSES: tuple[str, ...] = ("NORM", "MI", "STTC", "CD", "HYP")
# What the pages, reports and model card call each superclass (the statements' names come from the manifest).
SUPERCLASS_NAMES: dict[str, str] = {"NORM": "Normal ECG", "MI": "Myocardial infarction", "STTC": "ST/T change",
                                    "CD": "Conduction disturbance", "HYP": "Hypertrophy"}
# A label's key is a prefix and its code. Both spellings below are stored, so they stay as they are: finding keys
# ("superclass:MI", "statements:AFIB": the model's head name) in acknowledgement outcomes and verdicts, readings,
# evidence maps and audit details; the action table's keys ("statement:AFIB") in clinical/recommendations.json and
# in Recommendation.triggered_by / rule_id.
SUPERCLASS_KEY = "superclass:"  # a finding and a rule alike
STATEMENT_KEY = "statements:"  # a finding
STATEMENT_RULE_KEY = "statement:"  # a rule of the action table


@dataclass(frozen=True)
class LabelSpace:
    """Statement codes in ``scp_statements.csv`` order, and the superclass of each diagnostic statement."""

    statements: tuple[str, ...]
    superclass_of: Mapping[str, str]  # diagnostic statement -> superclass
    descriptions: Mapping[str, str]
    superclasses: tuple[str, ...] = SUPERCLASSES

    @classmethod
    def from_csv(cls, path: str | Path) -> LabelSpace:
        statements: list[str] = []
        superclass_of: dict[str, str] = {}
        descriptions: dict[str, str] = {}
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                code = row[""].strip()
                statements.append(code)
                descriptions[code] = row["description"].strip()
                if row["diagnostic"].strip() in ("1", "1.0") and row["diagnostic_class"].strip():
                    superclass_of[code] = row["diagnostic_class"].strip()
        return cls(tuple(statements), superclass_of, descriptions)

    def to_dict(self) -> dict:
        return {
            "superclasses": list(self.superclasses),
            "statements": list(self.statements),
            "superclass_of": dict(self.superclass_of),
            "descriptions": dict(self.descriptions),
        }

    @classmethod
    def from_dict(cls, d: dict) -> LabelSpace:
        return cls(tuple(d["statements"]), dict(d["superclass_of"]), dict(d["descriptions"]),
                   tuple(d["superclasses"]))

    def encode(self, scp_codes: Mapping[str, float] | str) -> tuple[np.ndarray, np.ndarray]:
        """Multi-hot (superclass (5,), statement (71,)) float32 vectors for one record's ``scp_codes``.

        ``scp_codes`` is the dict, or its string form as stored in ``ptbxl_database.csv``.
        Codes that are not in the statement table are ignored.
        """
        codes = parse_scp_codes(scp_codes) if isinstance(scp_codes, str) else scp_codes
        sup = np.zeros(len(self.superclasses), dtype=np.float32)
        stm = np.zeros(len(self.statements), dtype=np.float32)
        for code in codes:
            if code in self.superclass_of:
                sup[self.superclasses.index(self.superclass_of[code])] = 1.0
            if code in self.statements:
                stm[self.statements.index(code)] = 1.0
        return sup, stm


def parse_scp_codes(text: str) -> dict[str, float]:
    """Parse the ``scp_codes`` column, a Python dict literal such as "{'NORM': 100.0, 'SR': 0.0}"."""
    value = ast.literal_eval(text)
    if not isinstance(value, dict):
        raise ValueError(f"scp_codes is not a dict: {text!r}")
    return {str(k): float(v) for k, v in value.items()}
