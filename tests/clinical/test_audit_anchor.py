"""Signed checkpoints outside the database let audit_verify see what the chain alone cannot: its newest events
deleted, or a row rewritten with every hash after it recomputed (issue 12, row 12)."""
from __future__ import annotations

import json
import logging

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from clinical.audit import GENESIS, audit_log, audit_verify, chain_hash
from clinical.models import AuditEvent

SQLITE_TRIGGERS = {
    "clinical_auditevent_no_update": "CREATE TRIGGER clinical_auditevent_no_update BEFORE UPDATE ON "
    "clinical_auditevent BEGIN SELECT RAISE(ABORT, 'audit events are append-only: UPDATE refused'); END;",
    "clinical_auditevent_no_delete": "CREATE TRIGGER clinical_auditevent_no_delete BEFORE DELETE ON "
    "clinical_auditevent BEGIN SELECT RAISE(ABORT, 'audit events are append-only: DELETE refused'); END;",
}


@pytest.fixture
def checkpoints(settings, tmp_path):
    """A checkpoint file of this test's own, signed with a dedicated key."""
    settings.ECG_AUDIT_CHECKPOINTS = tmp_path / "audit-checkpoints.jsonl"
    settings.ECG_AUDIT_KEY = "a-key-the-database-administrator-cannot-read"
    return settings.ECG_AUDIT_CHECKPOINTS


def _events(n: int) -> list[AuditEvent]:
    for i in range(n):
        audit_log(actor=None, action="test.event", object_type="Thing", object_id=i, details={"i": i})
    return list(AuditEvent.objects.order_by("id"))


def _as_superuser(statements: list[tuple[str, list]]) -> None:
    """What a database superuser could do: switch the append-only guard off, run the statements, switch it on."""
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            # ALTER TABLE refuses while the test's deferred foreign-key checks are pending: run them now.
            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cur.execute("ALTER TABLE clinical_auditevent DISABLE TRIGGER ALL")
            for sql, params in statements:
                cur.execute(sql, params)
            cur.execute("ALTER TABLE clinical_auditevent ENABLE TRIGGER ALL")
            cur.execute("SET CONSTRAINTS ALL DEFERRED")
        else:
            for name in SQLITE_TRIGGERS:
                cur.execute(f"DROP TRIGGER {name}")
            for sql, params in statements:
                cur.execute(sql, params)
            for create in SQLITE_TRIGGERS.values():
                cur.execute(create)


def _delete_newest(k: int) -> None:
    newest = list(AuditEvent.objects.order_by("-id").values_list("id", flat=True)[:k])
    _as_superuser([("DELETE FROM clinical_auditevent WHERE id = %s", [i]) for i in newest])


def _rewrite_and_rehash(event_id: int) -> None:
    """Change one event's details and recompute every hash from it onwards, so the chain is valid again."""
    rows = list(AuditEvent.objects.order_by("id"))
    prev = GENESIS
    statements = []
    for e in rows:
        if e.id == event_id:
            e.details = {"i": 999}
        if e.id >= event_id:
            e.prev_hash = prev
            e.hash = chain_hash(prev, e)
            statements.append(("UPDATE clinical_auditevent SET details = %s, prev_hash = %s, hash = %s WHERE id = %s",
                               [json.dumps(e.details), e.prev_hash, e.hash, e.id]))
        prev = e.hash
    _as_superuser(statements)


def test_without_a_checkpoint_file_verify_says_only_the_chain_was_checked(db, checkpoints):
    _events(3)
    ok, n, message = audit_verify()
    assert ok and n == 3
    assert "no checkpoints: only the chain itself was checked" in message


def test_a_clean_history_verifies_against_its_checkpoints(db, checkpoints):
    _events(3)
    call_command("audit_checkpoint")
    _events(2)
    call_command("audit_checkpoint")
    ok, n, message = audit_verify()
    assert ok and n == 5, message
    assert "against 2 checkpoints" in message
    lines = [json.loads(line) for line in checkpoints.read_text().splitlines()]
    assert [(c["seq"], c["count"]) for c in lines] == [(1, 3), (2, 5)]


def test_the_newest_events_deleted_are_named(db, checkpoints):
    rows = _events(6)
    call_command("audit_checkpoint")
    _delete_newest(2)
    assert AuditEvent.objects.count() == 4
    ok, _, message = audit_verify()
    assert not ok
    assert message.startswith(f"events after event {rows[3].id} deleted: checkpoint 1 names event {rows[5].id}")
    with pytest.raises(CommandError, match="deleted: checkpoint 1"):
        call_command("audit_verify")


def test_a_row_rewritten_with_the_chain_rehashed_is_named(db, checkpoints):
    rows = _events(4)
    call_command("audit_checkpoint")  # vouches for rows[3]
    _events(2)
    call_command("audit_checkpoint")
    _rewrite_and_rehash(rows[2].id)
    assert AuditEvent.objects.get(pk=rows[2].id).details == {"i": 999}
    ok, _, message = audit_verify()
    assert not ok
    assert message.startswith(f"event {rows[3].id} rewritten: checkpoint 1 hash differs")


def test_a_forged_checkpoint_is_named(db, checkpoints):
    _events(3)
    call_command("audit_checkpoint")
    call_command("audit_checkpoint")
    lines = checkpoints.read_text().splitlines()
    forged = json.loads(lines[1]) | {"count": 2}
    checkpoints.write_text(lines[0] + "\n" + json.dumps(forged) + "\n")
    ok, _, message = audit_verify()
    assert not ok and message == "checkpoint 2 signature invalid"


def test_a_checkpoint_signed_with_another_key_is_refused(db, checkpoints, settings):
    _events(1)
    call_command("audit_checkpoint")
    settings.ECG_AUDIT_KEY = "another-key"
    assert audit_verify() == (False, 0, "checkpoint 1 signature invalid")


def test_without_a_dedicated_key_production_warns(db, checkpoints, settings, caplog):
    settings.ECG_AUDIT_KEY = ""
    settings.DEBUG = False
    settings.DEMO_MODE = False
    _events(1)
    with caplog.at_level(logging.WARNING, logger="clinical.audit"):
        call_command("audit_checkpoint")
    assert "ECGAPP_AUDIT_KEY is not set" in caplog.text
    assert audit_verify()[0]  # the key derived from SECRET_KEY still signs and verifies


def test_the_beat_job_writes_a_checkpoint_every_five_minutes_on_the_monitoring_queue(db, checkpoints):
    from clinical.tasks import audit_checkpoint
    from ecgapp.celery import app

    entry = next(e for e in app.conf.beat_schedule.values() if e["task"] == "clinical.tasks.audit_checkpoint")
    assert entry["schedule"] == 300.0
    assert app.conf.task_routes["clinical.tasks.audit_checkpoint"]["queue"] == "monitoring"
    last = _events(2)[-1]
    assert audit_checkpoint.apply().get() == last.id
    assert json.loads(checkpoints.read_text())["event_id"] == last.id
