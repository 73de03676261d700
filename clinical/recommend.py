"""Rank clinical actions for a set of findings from the versioned action table in recommendations.json.

A rule matches findings by key: ``superclass:CODE`` and ``statement:CODE`` (the model), ``measure:CODE`` (a criterion
met by measurement), ``context:CODE`` (a clinical fact given with the ECG). Its ``when`` is a list of groups; the
rule fires when every group has at least one key present (a combination rule has several groups). Every label code
has a rule of its own: an action, or "no action beyond the clinician's over-read" stated as such. Render the table
for review with ``python -m clinical.recommend --render > docs/action_table.md``.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlcore.calibration import FLOOR, MIN_THRESHOLD
from mlcore.labels import STATEMENT_RULE_KEY, SUPERCLASS_KEY, SUPERCLASS_NAMES

TABLE_PATH = Path(__file__).resolve().parent / "recommendations.json"
MANIFEST_PATH = Path(__file__).resolve().parents[1] / "mlcore" / "weights" / "manifest.json"
# How soon a ranked line asks to act (Recommendation.Urgency); results at the first two wait in the reviewers'
# queue for an acknowledgement and are escalated when they wait too long.
IMMEDIATE, URGENT, ROUTINE = "immediate", "urgent", "routine"
URGENCY_ORDER = {IMMEDIATE: 0, URGENT: 1, ROUTINE: 2}
AWAITS_REVIEW = (IMMEDIATE, URGENT)
KEY_PREFIXES = (SUPERCLASS_KEY, STATEMENT_RULE_KEY, "measure:", "context:")
# What a ranked line is. A caveat is a note on how far to trust the findings: never first, never raising urgency.
RULE, CAVEAT, QUALITY, FALLBACK = "rule", "caveat", "quality", "fallback"
KINDS = (RULE, CAVEAT, QUALITY, FALLBACK)
# How a table rule acts: a specific action; an explicit "no action beyond over-read"; a reassurance shown only when
# nothing abnormal and no recording problem is present; or a caveat.
EFFECTS = ("action", "over_read", "normal", "caveat")
# Within one urgency, a recording problem comes before the rules it undermines; fallbacks come last.
_KIND_ORDER = {QUALITY: 0, RULE: 1, FALLBACK: 2, CAVEAT: 3}
MODELS_DISAGREE = "caveat:MODELS_DISAGREE"
# Recommendation.action / rule_id / triggered_by / source column sizes (clinical/models.py).
MAX_ACTION, MAX_RULE_ID, MAX_TRIGGER, MAX_SOURCE = 255, 64, 255, 255
# Short reasons for the "repeat the ECG" action, per mlcore.quality code.
_QUALITY_REASON = {"flat_line": "lead {lead} flat", "clipping": "lead {lead} clipped",
                   "high_frequency_noise": "lead {lead} noisy", "baseline_wander": "lead {lead} baseline wander",
                   "limb_lead_reversal": "limb electrodes possibly misplaced",
                   "limb_lead_scaling": "limb leads scaled inconsistently in the file"}


@dataclass(frozen=True)
class FindingInput:
    key: str  # "superclass:MI", "statement:AFIB", "measure:QTC_500" or "context:ISCHAEMIC_SYMPTOMS"
    probability: float
    needs_review: bool = False  # the ensemble members disagree about this finding (some, not all, above threshold)


@dataclass(frozen=True)
class QualityInput:
    """A recording-quality warning (mlcore.quality.QualityIssue with severity "warn")."""

    code: str
    message: str
    lead: str | None = None


@dataclass(frozen=True)
class RankedAction:
    action: str
    urgency: str
    reasoning: str
    source: str
    triggered_by: str
    confidence: float
    table_version: str
    kind: str = RULE
    rule_id: str = ""


def _source_text(table: dict, ids: Sequence[str]) -> str:
    return "; ".join(table["sources"][i] for i in ids)


@functools.lru_cache(maxsize=4)
def load_table(path: str = str(TABLE_PATH)) -> dict:
    """The action table, checked: unique ids, known keys, urgencies, effects and sources, texts that fit."""
    table = json.loads(Path(path).read_text())
    entries = [*table["rules"], *table["fallbacks"].values(), *table["caveats"].values()]
    seen: set[str] = set()
    for rule in entries:
        rid = rule["id"]
        problems = []
        if rid in seen:
            problems.append("duplicate id")
        seen.add(rid)
        if rule["urgency"] not in URGENCY_ORDER:
            problems.append(f"unknown urgency {rule['urgency']!r}")
        if rule.get("effect", "action") not in EFFECTS:
            problems.append(f"unknown effect {rule['effect']!r}")
        if unknown := [s for s in rule["sources"] if s not in table["sources"]]:
            problems.append(f"unknown sources {unknown}")
        elif len(_source_text(table, rule["sources"])) > MAX_SOURCE:
            problems.append("sources too long")
        if len(rule["action"]) > MAX_ACTION or len(rid) > MAX_RULE_ID:
            problems.append("action or id too long")
        if rule in table["rules"] and not rule.get("when"):
            problems.append("no 'when'")
        for group in rule.get("when", []):
            if not group or any(not k.startswith(KEY_PREFIXES) for k in group):
                problems.append(f"bad key group {group}")
        for sid in rule.get("supersedes", []):
            if sid not in {r["id"] for r in table["rules"]}:
                problems.append(f"supersedes unknown rule {sid}")
        if problems:
            raise ValueError(f"{path}: rule {rid}: {'; '.join(problems)}")
    limits = table["not_assessed"]
    for item in [*limits["items"], limits["no_validated_threshold"]]:
        if item["id"] in seen or not item["id"].startswith("not_assessed:") or not item["pattern"].strip():
            raise ValueError(f"{path}: not-assessed item {item['id']}: duplicate, misnamed or empty")
        seen.add(item["id"])
        if unknown := [s for s in item["sources"] if s not in table["sources"]]:
            raise ValueError(f"{path}: not-assessed item {item['id']}: unknown sources {unknown}")
    return table


def dangerous_keys(table: dict | None = None) -> frozenset[str]:
    """The dangerous findings, defined once in the table (with its sources): a miss risks serious harm soon."""
    return frozenset((table or load_table())["dangerous"]["keys"])


def _line(table: dict, entry: dict, kind: str, triggered_by: str, confidence: float, **fmt: str) -> RankedAction:
    # Only fallbacks and caveats have placeholders; a rule's text is shown as written.
    action, reasoning = (entry["action"].format(**fmt), entry["reasoning"].format(**fmt)) if fmt else (
        entry["action"], entry["reasoning"])
    return RankedAction(
        action=action[:MAX_ACTION], urgency=entry["urgency"],
        reasoning=reasoning, source=_source_text(table, entry["sources"]),
        triggered_by=triggered_by[:MAX_TRIGGER], confidence=round(float(confidence), 4),
        table_version=table["version"], kind=kind, rule_id=entry["id"])


def rank_actions(findings: Iterable[FindingInput], quality: Iterable[QualityInput] = (),
                 table: dict | None = None, disputed_absent: Iterable[str] = ()) -> list[RankedAction]:
    """Actions for the flagged findings, most urgent first, then by confidence; caveats last; never empty.

    - Each table rule fires when each of its key groups has a present finding; its confidence is the lowest of the
      matched probabilities. A firing rule can supersede lesser ones (e.g. wide-QRS tachycardia hides "wide QRS").
    - A finding no rule knows gets the generic "abnormal ECG: over-read" action, never "nothing found".
    - "Normal" reassurance (NORM, sinus rhythm) is shown only when nothing abnormal and no quality problem is present.
    - Quality warnings add "repeat the ECG (reasons)".
    - "No finding above its threshold" only when nothing is flagged at all.
    - Members' disagreement is a caveat, and only for a dangerous finding: one flagged with ``needs_review`` (not
      every member above its threshold), or one in ``disputed_absent`` (keys the ensemble did not flag although a
      member is above the threshold: a possible miss).
    """
    table = table or load_table()
    present: dict[str, FindingInput] = {}
    for f in findings:
        if f.key not in present or present[f.key].probability < f.probability:
            present[f.key] = f
    issues = list(quality)

    fired: list[tuple[dict, list[FindingInput]]] = []
    for rule in table["rules"]:
        matched = []
        for group in rule["when"]:
            hits = [present[k] for k in group if k in present]
            if not hits:
                break
            matched.append(max(hits, key=lambda f: f.probability))
        else:
            fired.append((rule, matched))
    handled = {f.key for _, matched in fired for f in matched}
    superseded = {sid for rule, _ in fired for sid in rule.get("supersedes", [])}
    fired = [(rule, matched) for rule, matched in fired if rule["id"] not in superseded]

    lines: list[RankedAction] = []
    normal: list[RankedAction] = []
    for rule, matched in fired:
        kind = CAVEAT if rule["effect"] == "caveat" else RULE
        line = _line(table, rule, kind, "+".join(f.key for f in matched), min(f.probability for f in matched))
        (normal if rule["effect"] == "normal" else lines).append(line)
    if unknown := sorted(k for k in present if k not in handled):
        top = max(present[k].probability for k in unknown)
        codes = ", ".join(k.split(":", 1)[1] for k in unknown)
        lines.append(_line(table, table["fallbacks"]["abnormal_no_rule"], FALLBACK, "+".join(unknown), top,
                           codes=codes))
    if issues:
        reasons = ", ".join(dict.fromkeys(_QUALITY_REASON.get(i.code, i.code).format(lead=i.lead) for i in issues))
        messages = " ".join(dict.fromkeys(i.message for i in issues))
        lines.append(_line(table, table["fallbacks"]["quality_repeat"], QUALITY,
                           "+".join(dict.fromkeys(f"quality:{i.code}" for i in issues)), 1.0,
                           reasons=reasons, messages=messages))
    if not present:
        lines.append(_line(table, table["fallbacks"]["nothing_flagged"], FALLBACK, "none", 1.0))
    elif normal and not issues and not any(line.kind != CAVEAT for line in lines):
        # One reassurance line: the first normal rule in table order (the NORM class before sinus rhythm).
        lines.append(normal[0])

    dangerous = dangerous_keys(table)
    disputed = [f.key for f in sorted(present.values(), key=lambda f: -f.probability)
                if f.needs_review and f.key in dangerous]
    disputed += [k for k in dict.fromkeys(disputed_absent) if k in dangerous and k not in present]
    if disputed:
        codes = ", ".join(k.split(":", 1)[1] for k in disputed)
        confidence = max((present[k].probability for k in disputed if k in present), default=0.0)
        lines.append(_line(table, table["caveats"]["models_disagree"], CAVEAT, "+".join(disputed), confidence,
                           codes=codes))

    best: dict[str, RankedAction] = {}
    for line in lines:  # the same wording from two rules (the NORM class and statement) is listed once
        if line.action not in best or best[line.action].confidence < line.confidence:
            best[line.action] = line
    return sorted(best.values(), key=lambda r: (r.kind == CAVEAT, URGENCY_ORDER[r.urgency], _KIND_ORDER[r.kind],
                                                -r.confidence, r.action))


# -- what the system cannot see ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class NotAssessed:
    """A pattern this system cannot detect, with why; ``labels`` names the statements an item is about, if any."""

    code: str
    pattern: str
    reason: str
    source: str
    labels: tuple[str, ...] = ()


def not_assessed(operating_points: dict | None = None, table: dict | None = None) -> list[NotAssessed]:
    """What the model and the rules cannot detect (the table's fixed list), then the labels of this result whose
    threshold is not a validated operating point: those the manifest marks not validated, and those whose threshold
    is the floor rather than a cut-off fitted on data (``operating_points`` as a Prediction stores it)."""
    table = table or load_table()
    limits = table["not_assessed"]
    out = [NotAssessed(i["id"], i["pattern"], i["reason"], _source_text(table, i["sources"]))
           for i in limits["items"]]
    marked, floor = [], []
    for head in ("superclass", "statements"):
        for code, point in (operating_points or {}).get(head, {}).items():
            if point.get("validated") is False:
                marked.append(code)
            elif point.get("validated") is None and point.get("name") == FLOOR:
                floor.append(code)
    if marked or floor:
        why = []
        if marked:
            why.append(f"the model's manifest marks {len(marked)} as not validated (too little validation data)")
        if floor:
            folds = ", ".join(str(f) for f in operating_points.get("folds", [])) or "the calibration folds"
            why.append(f"for {len(floor)} the F1-optimal cut-off on fold {folds} fell below {MIN_THRESHOLD:.0%}, so "
                       f"their threshold is that floor (project policy), not a cut-off fitted on data")
        entry = limits["no_validated_threshold"]
        codes = [*marked, *floor]
        out.append(NotAssessed(entry["id"], entry["pattern"].format(codes=f"{len(codes)} statements"),
                               entry["reason"].format(why="; ".join(why)[:1].upper() + "; ".join(why)[1:]),
                               _source_text(table, entry["sources"]), tuple(codes)))
    return out


# -- the reviewable document -------------------------------------------------------------------------------------

def label_keys(manifest_path: str | Path = MANIFEST_PATH) -> list[tuple[str, str]]:
    """(key, description) for every superclass and statement the committed model emits."""
    labels = json.loads(Path(manifest_path).read_text())["labels"]
    # In a sentence: "normal ECG", "ST/T change" (an initial of an abbreviation stays a capital).
    names = {c: n[:1].lower() + n[1:] if n[1:2].islower() else n for c, n in SUPERCLASS_NAMES.items()}
    return ([(f"{SUPERCLASS_KEY}{c}", names.get(c, c)) for c in labels["superclasses"]]
            + [(f"{STATEMENT_RULE_KEY}{c}", labels["descriptions"].get(c, c)) for c in labels["statements"]])


def table_keys(table: dict | None = None) -> list[tuple[str, str]]:
    """(key, description) for the measurement and context keys the table declares."""
    table = table or load_table()
    return ([(f"measure:{c}", d) for c, d in table["measurements"].items()]
            + [(f"context:{c}", d) for c, d in table["contexts"].items()])


def missing_rules(keys: Iterable[str], table: dict | None = None) -> list[str]:
    """Keys without a rule of their own (a rule whose only condition is that key)."""
    rules = (table or load_table())["rules"]
    own = {r["when"][0][0] for r in rules if len(r["when"]) == 1 and len(r["when"][0]) == 1}
    return [k for k in keys if k not in own]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _ids(rule: dict) -> str:
    return ", ".join(rule["sources"])


def render_markdown(table: dict | None = None, manifest_path: str | Path = MANIFEST_PATH) -> str:
    """The action table as a document a clinician can review: every code, its rule, urgency and source."""
    table = table or load_table()
    by_id = {r["id"]: r for r in table["rules"]}
    dangerous = dangerous_keys(table)
    keys = label_keys(manifest_path) + table_keys(table)
    combined = [r for r in table["rules"] if len(r["when"]) > 1]
    out = [
        f"# Action table {table['version']}",
        "",
        "Generated by `python -m clinical.recommend --render > docs/action_table.md` from "
        "`clinical/recommendations.json`; a test fails when this file is stale or a label code has no rule.",
        "",
        table["notes"],
        "",
        "Keys: " + "; ".join(f"`{p}CODE` {d}" for p, d in table["key_convention"].items()) + ".",
        "",
        "Urgency: " + "; ".join(f"**{u}**: {d}" for u, d in table["urgency"].items()) + ".",
        "",
        "Effect: **action** a specific action; **over-read** no action beyond the clinician's over-read, stated as "
        "such; **normal** reassurance, shown only when nothing abnormal and no recording problem is present; "
        "**caveat** a note on how far to trust the findings, never ranked first and never raising urgency.",
        "",
        f"Dangerous findings (models-disagree caveat; † below): {', '.join(sorted(dangerous))}. "
        f"{table['dangerous']['reasoning']} Sources: {_ids(table['dangerous'])}.",
        "",
        "## Every code",
        "",
        "| Key | Meaning | Effect | Urgency | Action | Source | Also in |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, meaning in keys:
        rule = by_id.get(key)
        also = ", ".join(r["id"] for r in combined if any(key in g for g in r["when"]))
        mark = " †" if key in dangerous else ""
        if rule is None:
            out.append(f"| `{key}`{mark} | {_cell(meaning)} | **NO RULE** | | | | {also} |")
            continue
        out.append(f"| `{key}`{mark} | {_cell(meaning)} | {rule['effect'].replace('_', '-')} | {rule['urgency']} | "
                   f"{_cell(rule['action'])} | {_ids(rule)} | {also} |")
    out += ["", "## Combination rules", "",
            "A combination rule fires when each group has a present key (any key of the group).", "",
            "| Rule | When | Effect | Urgency | Action | Source | Hides |", "|---|---|---|---|---|---|---|"]
    for r in combined:
        when = " **and** ".join("(" + " or ".join(f"`{k}`" for k in g) + ")" for g in r["when"])
        out.append(f"| `{r['id']}` | {when} | {r['effect'].replace('_', '-')} | {r['urgency']} | "
                   f"{_cell(r['action'])} | {_ids(r)} | "
                   f"{', '.join(r.get('supersedes', []))} |")
    out += ["", "## Fallbacks, recording quality and caveats", "", "| Rule | When | Urgency | Action | Source |",
            "|---|---|---|---|---|"]
    when = {"fallback:NOTHING_FLAGGED": "nothing flagged at all",
            "fallback:ABNORMAL_NO_RULE": "a flagged key that no rule knows",
            "quality:REPEAT_ECG": "any recording-quality warning (flat lead, clipping, noise, wander, limb leads)",
            MODELS_DISAGREE: "members disagree about a dangerous finding"}
    for entry in [*table["fallbacks"].values(), *table["caveats"].values()]:
        out.append(f"| `{entry['id']}` | {when.get(entry['id'], '')} | "
                   f"{'none (caveat)' if entry['id'].startswith('caveat:') else entry['urgency']} | "
                   f"{_cell(entry['action'])} | {_ids(entry)} |")
    limits = table["not_assessed"]
    out += ["", "## Not assessed by this system", "", limits["reasoning"], "", "| Item | Pattern | Why | Source |",
            "|---|---|---|---|"]
    for item in [*limits["items"], limits["no_validated_threshold"]]:
        out.append(f"| `{item['id']}` | {_cell(item['pattern'])} | {_cell(item['reason'])} | {_ids(item)} |")
    out += ["", "## Sources", "", "The table cites these by id; the app shows the full name.", ""]
    out += [f"- `{k}`: {v}" for k, v in table["sources"].items()]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clinical.recommend", description=__doc__.splitlines()[0])
    parser.add_argument("--render", action="store_true", help="print the action table as Markdown")
    args = parser.parse_args(argv)
    if not args.render:
        parser.print_help()
        return 2
    sys.stdout.write(render_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
