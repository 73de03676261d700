"""The audit trail is append-only in the database itself and its hash chain exposes tampering."""
from __future__ import annotations

import threading

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from clinical.audit import GENESIS, audit_log, audit_verify, chain_hash
from clinical.models import AuditEvent


def _events(n: int, actor=None) -> None:
    for i in range(n):
        audit_log(actor=actor, action="test.event", object_type="Thing", object_id=i, details={"i": i})


def test_events_chain_onto_each_other(db, clinician):
    _events(3, clinician)
    rows = list(AuditEvent.objects.order_by("id"))
    assert rows[0].prev_hash == GENESIS
    assert [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]
    assert audit_verify()[0]


def test_orm_update_and_delete_are_refused_by_the_database(db):
    _events(2)
    event = AuditEvent.objects.first()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(action="forged")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        event.delete()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.count() == 2


def test_raw_sql_update_and_delete_are_refused_by_the_database(db):
    _events(1)
    for sql in ("UPDATE clinical_auditevent SET action = 'forged'", "DELETE FROM clinical_auditevent"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cur:
            cur.execute(sql)
    assert AuditEvent.objects.get().action == "test.event"


def _tamper(event_id: int) -> None:
    """What a database superuser could do: switch the guard off, rewrite a row, switch it back on."""
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            # A superuser session can skip ordinary triggers (replication role).
            cur.execute("SET session_replication_role = replica")
            cur.execute("UPDATE clinical_auditevent SET details = '{\"i\": 999}' WHERE id = %s", [event_id])
            cur.execute("SET session_replication_role = DEFAULT")
        else:
            cur.execute("DROP TRIGGER clinical_auditevent_no_update")
            cur.execute("UPDATE clinical_auditevent SET details = '{\"i\": 999}' WHERE id = %s", [event_id])
            cur.execute("CREATE TRIGGER clinical_auditevent_no_update BEFORE UPDATE ON clinical_auditevent "
                        "BEGIN SELECT RAISE(ABORT, 'audit events are append-only: UPDATE refused'); END;")


def test_audit_verify_names_the_first_tampered_event(db):
    _events(5)
    victim = AuditEvent.objects.order_by("id")[2]
    call_command("audit_verify")  # clean history passes
    _tamper(victim.id)
    with pytest.raises(CommandError, match=rf"audit event {victim.id} \(test.event\)"):
        call_command("audit_verify")


def test_audit_verify_checks_a_long_history(db):
    """10,000 events written in bulk with a correct chain verify; how long it takes is in `make bench`."""
    prev, rows, now = GENESIS, [], timezone.now()
    for i in range(10_000):
        e = AuditEvent(at=now, actor=None, actor_label="system", action="bulk", object_type="T", object_id=str(i),
                       request_id="", details={"i": i}, prev_hash=prev)
        e.hash = prev = chain_hash(prev, e)
        rows.append(e)
    AuditEvent.objects.bulk_create(rows, batch_size=2000)
    ok, n, _ = audit_verify()
    assert ok and n == 10_000


@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_do_not_fork_the_chain():
    from django.db import connections

    def writer(k: int) -> None:
        try:
            for i in range(15):
                audit_log(actor=None, action="concurrent", object_type="T", object_id=f"{k}-{i}")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    prevs = list(AuditEvent.objects.values_list("prev_hash", flat=True))
    assert len(prevs) == 90 and len(set(prevs)) == 90  # no two events chained onto the same predecessor
    assert audit_verify()[0]
