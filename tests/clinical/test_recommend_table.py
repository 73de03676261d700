"""The action table as reviewed content: every label code has a rule, and the committed document is current."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinical.recommend import (
    MANIFEST_PATH,
    TABLE_PATH,
    dangerous_keys,
    label_keys,
    load_table,
    main,
    missing_rules,
    render_markdown,
    table_keys,
)

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "action_table.md"


def test_every_superclass_statement_and_measurement_has_a_rule_of_its_own():
    keys = [k for k, _ in label_keys() + table_keys()]
    assert len([k for k in keys if k.startswith("statement:")]) == 71
    assert len([k for k in keys if k.startswith("superclass:")]) == 5
    assert missing_rules(keys) == []


def test_the_dangerous_set_names_label_codes_with_sources():
    labels = {k for k, _ in label_keys()}
    assert dangerous_keys() <= labels and load_table()["dangerous"]["sources"]


def test_the_committed_document_is_the_rendered_table(capsys):
    assert main(["--render"]) == 0
    rendered = capsys.readouterr().out
    assert rendered == render_markdown()
    assert DOCUMENT.read_text() == rendered, (
        "docs/action_table.md is stale: run python -m clinical.recommend --render > docs/action_table.md")
    for key, _ in label_keys():
        assert f"| `{key}`" in rendered


def test_the_document_shows_a_missing_rule_and_the_check_names_it(tmp_path):
    table = json.loads(TABLE_PATH.read_text())
    table["rules"] = [r for r in table["rules"] if r["id"] != "statement:ISCAS"]
    path = tmp_path / "t.json"
    path.write_text(json.dumps(table))
    broken = load_table(str(path))
    assert missing_rules([k for k, _ in label_keys()], broken) == ["statement:ISCAS"]
    document = render_markdown(broken, MANIFEST_PATH)
    assert "| `statement:ISCAS` | ischemic in anteroseptal leads | **NO RULE**" in document


@pytest.mark.parametrize("change, message", [
    (lambda t: t["rules"][0].update(urgency="soon"), "unknown urgency"),
    (lambda t: t["rules"][0].update(sources=["NICE-2099"]), "unknown sources"),
    (lambda t: t["rules"].append(dict(t["rules"][0])), "duplicate id"),
    (lambda t: t["rules"][0].update(when=[["MI"]]), "bad key group"),
])
def test_a_malformed_table_is_refused_with_the_rule_named(tmp_path, change, message):
    table = json.loads(TABLE_PATH.read_text())
    change(table)
    path = tmp_path / "t.json"
    path.write_text(json.dumps(table))
    with pytest.raises(ValueError, match=message):
        load_table(str(path))
