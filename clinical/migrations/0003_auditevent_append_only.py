"""The database itself refuses UPDATE and DELETE on audit events (PostgreSQL and SQLite).

On SQLite, a later migration that rebuilds clinical_auditevent (most AlterFields do) drops these triggers:
such a migration must create them again. tests/clinical/test_audit.py fails if they are missing.
"""
from __future__ import annotations

from django.db import migrations

PG_CREATE = """
CREATE OR REPLACE FUNCTION clinical_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only: %% refused', TG_OP;  -- %% survives Django's param pass
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS clinical_auditevent_append_only ON clinical_auditevent;
CREATE TRIGGER clinical_auditevent_append_only BEFORE UPDATE OR DELETE ON clinical_auditevent
    FOR EACH ROW EXECUTE FUNCTION clinical_auditevent_append_only();
"""
PG_DROP = """
DROP TRIGGER IF EXISTS clinical_auditevent_append_only ON clinical_auditevent;
DROP FUNCTION IF EXISTS clinical_auditevent_append_only();
"""
SQLITE_CREATE = [
    "CREATE TRIGGER IF NOT EXISTS clinical_auditevent_no_update BEFORE UPDATE ON clinical_auditevent "
    "BEGIN SELECT RAISE(ABORT, 'audit events are append-only: UPDATE refused'); END;",
    "CREATE TRIGGER IF NOT EXISTS clinical_auditevent_no_delete BEFORE DELETE ON clinical_auditevent "
    "BEGIN SELECT RAISE(ABORT, 'audit events are append-only: DELETE refused'); END;",
]
SQLITE_DROP = ["DROP TRIGGER IF EXISTS clinical_auditevent_no_update;",
               "DROP TRIGGER IF EXISTS clinical_auditevent_no_delete;"]


def create(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_CREATE)
    elif vendor == "sqlite":
        for sql in SQLITE_CREATE:
            schema_editor.execute(sql)


def drop(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_DROP)
    elif vendor == "sqlite":
        for sql in SQLITE_DROP:
            schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("clinical", "0002_auditevent_at_set_before_hashing")]
    operations = [migrations.RunPython(create, drop)]
