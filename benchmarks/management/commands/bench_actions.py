"""Where the action table sends PTB-XL ECGs: how many land per top urgency, and whether the dangerous ones list
their own finding.

Runs the committed ensemble on the given folds (default 9, the calibration fold) and ranks each record's flagged
findings and quality warnings as ``inference_run`` does; nothing is stored. ``--dump`` writes the findings so that
another version of the ranking can be scored on the same inputs.
"""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import torch
from django.conf import settings
from django.core.management.base import BaseCommand

from clinical.recommend import (
    AWAITS_REVIEW,
    CAVEAT,
    FindingInput,
    QualityInput,
    dangerous_keys,
    load_table,
    rank_actions,
)
from mlcore.ensemble import Ensemble, EnsembleOutput
from mlcore.labels import STATEMENT_RULE_KEY, SUPERCLASS_KEY
from mlcore.metrics import wilson
from mlcore.ptbxl import load_folds
from mlcore.quality import assess
from training.operating_points import CI_LEVEL


class Command(BaseCommand):
    help = "Top-urgency distribution of the action table on PTB-XL folds (default fold 9)."

    def add_arguments(self, parser):
        parser.add_argument("--data-dir", required=True, help="PTB-XL in the PhysioNet layout")
        parser.add_argument("--folds", default="9", help="comma-separated strat_folds")
        parser.add_argument("--cache-dir", default=None)
        parser.add_argument("--dump", default=None, help="write the per-record findings as JSON here")

    def handle(self, *args, data_dir: str, folds: str, cache_dir: str | None, dump: str | None, **options):
        torch.set_num_threads(1)
        ens = Ensemble.load(settings.ECG_WEIGHTS_DIR)
        split = load_folds(data_dir, [int(f) for f in folds.split(",")], cache_dir)
        parts = [ens.predict(split.signals[i:i + 256], fs=100) for i in range(0, len(split), 256)]
        pred = EnsembleOutput(**{k: np.concatenate([getattr(p, k) for p in parts])
                             for k in EnsembleOutput.__dataclass_fields__})
        labels = ens.labels
        dangerous = dangerous_keys()
        records = []
        for i in range(len(split)):
            quality = assess(split.signals[i], 100.0)
            if not quality.usable:
                continue  # refused at upload: never reaches the action table
            # The candidates of inference_run: flagged classes, then flagged statements other than the NORM repeat.
            # Members disagree about a label when some, not all, reach its threshold (as inference_run judges it).
            n = len(ens.members)
            split_s, split_t = (0 < pred.superclass_members_above[i]) & (pred.superclass_members_above[i] < n), \
                (0 < pred.statements_members_above[i]) & (pred.statements_members_above[i] < n)
            findings = [(f"{SUPERCLASS_KEY}{c}", float(pred.superclass[i, j]), bool(split_s[j]))
                        for j, c in enumerate(labels.superclasses) if pred.superclass_flags[i, j]]
            findings += [(f"{STATEMENT_RULE_KEY}{c}", float(pred.statements[i, j]), bool(split_t[j]))
                         for j, c in enumerate(labels.statements)
                         if pred.statements_flags[i, j] and c not in labels.superclasses]
            absent = [f"{STATEMENT_RULE_KEY}{c}" for j, c in enumerate(labels.statements)
                      if split_t[j] and not pred.statements_flags[i, j]]
            truth = [f"{STATEMENT_RULE_KEY}{c}" for j, c in enumerate(labels.statements) if split.statements[i, j]]
            records.append({"ecg_id": int(split.ecg_id[i]), "findings": findings, "disputed_absent": absent,
                            "truth": truth,
                            "quality": [[w.code, w.message, w.lead] for w in quality.warnings()]})
        if dump:
            with open(dump, "w") as f:
                json.dump({"dangerous": sorted(dangerous), "records": records}, f)
        result = score(records, dangerous)
        result["dangerous_at_operating_points"] = dangerous_sensitivity(
            pred.statements, split.statements.astype(bool), labels.statements, ens, dangerous)
        self.stdout.write(json.dumps(result, indent=1))


def dangerous_sensitivity(p: np.ndarray, y: np.ndarray, codes, ens: Ensemble, dangerous: frozenset[str]) -> dict:
    """Per dangerous statement on these folds: positives, the threshold and how it was chosen, sensitivity at it
    with its 90 % Wilson interval (null without positives), and specificity."""
    out = {}
    points = ens.operating_points["statements"]
    for j, code in enumerate(codes):
        if f"{STATEMENT_RULE_KEY}{code}" not in dangerous:
            continue
        pos = y[:, j]
        point = points[code]
        hits = int((p[pos, j] >= point["threshold"]).sum())
        ci = wilson(hits, int(pos.sum()), level=CI_LEVEL)
        out[code] = {"positives": int(pos.sum()), "threshold": point["threshold"], "point": point["name"],
                     "validated": point["validated"],
                     "sensitivity": round(hits / pos.sum(), 3) if pos.any() else None,
                     "sensitivity_ci90": [round(ci[0], 3), round(ci[1], 3)] if pos.any() else None,
                     "specificity": round(float((p[~pos, j] < point["threshold"]).mean()), 4)}
    return out


def score(records: list[dict], dangerous: frozenset[str]) -> dict:
    """Counts per top urgency, for all records and for those with and without a dangerous label."""
    top: dict[str, Counter] = {"all": Counter(), "no_dangerous_label": Counter(), "dangerous_label": Counter()}
    own_listed = caveats = quality = 0
    for r in records:
        actions = rank_actions([FindingInput(*f) for f in r["findings"]], [QualityInput(*q) for q in r["quality"]],
                               disputed_absent=r.get("disputed_absent", ()))
        first = next(a for a in actions if a.kind != CAVEAT)
        group = "dangerous_label" if dangerous & set(r["truth"]) else "no_dangerous_label"
        top["all"][first.urgency] += 1
        top[group][first.urgency] += 1
        triggers = {k for a in actions if a.kind != CAVEAT for k in a.triggered_by.split("+")}
        own_listed += bool(group == "dangerous_label" and dangerous & set(r["truth"]) & triggers)
        caveats += any(a.kind == CAVEAT for a in actions)
        quality += bool(r["quality"])
    return {"table_version": load_table()["version"], "records": len(records),
            "top_urgency": {g: dict(sorted(c.items())) for g, c in top.items()},
            "dangerous_label_with_own_finding_listed": own_listed, "with_a_caveat": caveats,
            "with_a_quality_warning": quality,
            "urgent_or_immediate_share_without_dangerous_label": round(
                float(np.divide(sum(top["no_dangerous_label"][u] for u in AWAITS_REVIEW),
                                max(1, sum(top["no_dangerous_label"].values())))), 3)}
