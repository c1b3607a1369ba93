"""On SQLite (the embedded default), refuse UPDATE and DELETE with SQLite's own triggers.

PostgreSQL gets its triggers from django-pgtrigger (0001). SQLite has no TRUNCATE, and
anyone who can write the database file can drop these triggers: the hash chain and the
anchors are what detect that. Django rebuilds a SQLite table on many schema changes,
which drops its triggers, so a later migration that alters these tables must run
``install`` again.
"""

from django.db import migrations

TRIGGERS = {
    "audit_event_no_update": (
        "BEFORE UPDATE ON audit_auditevent",
        "the audit trail is append-only: UPDATE on audit_auditevent is refused",
    ),
    "audit_event_no_delete": (
        "BEFORE DELETE ON audit_auditevent",
        "the audit trail is append-only: DELETE on audit_auditevent is refused",
    ),
    "audit_head_no_delete": (
        "BEFORE DELETE ON audit_auditchainhead",
        "the audit trail is append-only: DELETE on audit_auditchainhead is refused",
    ),
    "audit_head_forward_only": (
        "BEFORE UPDATE ON audit_auditchainhead WHEN NEW.sequence IS NOT OLD.sequence + 1",
        "the audit chain head only moves forward one event at a time",
    ),
}


def install(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    for name, (when, message) in TRIGGERS.items():
        schema_editor.execute(
            f"CREATE TRIGGER IF NOT EXISTS {name} {when} "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    for name in TRIGGERS:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunPython(install, uninstall, elidable=False)]
