"""Indexes for auditor searches on a large trail (issue 9).

- ``audit_actor_name_seq``: search by username in sequence order (the model declares it).
- Trigram GIN indexes (``pg_trgm``) on the three expressions the case-insensitive text search
  compares (``UPPER(column) LIKE UPPER('%text%')``, as Django writes ``icontains``), so a text
  search no longer reads the whole trail. PostgreSQL only: SQLite has no GIN.

On PostgreSQL every index is built CONCURRENTLY, so a trail of millions of events keeps
accepting appends (every governed write) while it is built; hence ``atomic = False``.
``pg_trgm`` is a trusted extension: the database owner may create it.
"""

from django.db import migrations, models

TRIGRAM_INDEXES = {
    "audit_payload_trgm": 'UPPER("payload_json")',
    "audit_target_id_trgm": 'UPPER("target_id"::text)',
    "audit_actor_name_trgm": 'UPPER("actor_username"::text)',
}
NAME_INDEX = '"audit_actor_name_seq" ON "audit_auditevent" ("actor_username", "sequence")'


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {NAME_INDEX}")
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {NAME_INDEX}")
    for name, expression in TRIGRAM_INDEXES.items():
        schema_editor.execute(
            f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{name}" ON "audit_auditevent" '
            f"USING gin ({expression} gin_trgm_ops)"
        )


def drop(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    names = ["audit_actor_name_seq"]
    if concurrently:
        names += list(TRIGRAM_INDEXES)
    for name in names:
        schema_editor.execute(f'DROP INDEX {concurrently}IF EXISTS "{name}"')


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("audit", "0002_sqlite_append_only_triggers"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddIndex(
                    model_name="auditevent",
                    index=models.Index(
                        fields=["actor_username", "sequence"], name="audit_actor_name_seq"
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(create, drop)],
        ),
    ]
