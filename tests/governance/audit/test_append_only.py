"""Recorded events cannot change: PostgreSQL triggers refuse it, and so does Django."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import DatabaseError, transaction

from governance.audit.errors import AuditTrailImmutable
from governance.audit.models import AuditChainHead, AuditEvent
from tests.governance.audit.support import raw_sql

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_auditevent SET payload_json = '{}'",
        "DELETE FROM audit_auditevent",
        "TRUNCATE audit_auditevent",
        "DELETE FROM audit_auditchainhead",
        "TRUNCATE audit_auditchainhead CASCADE",
        "UPDATE audit_auditchainhead SET sequence = 0",
        "UPDATE audit_auditchainhead SET hash = 'rewritten'",
    ],
)
def test_postgresql_refuses_direct_sql_that_would_rewrite_history(append, sql):
    append()
    refused = r"append-only|only moves forward"
    with pytest.raises(DatabaseError, match=refused), transaction.atomic():
        raw_sql(sql)
    assert AuditEvent.objects.count() == 1
    assert AuditChainHead.objects.get().sequence == 1


def test_postgresql_lets_the_head_move_forward_by_exactly_one(append):
    append()
    with transaction.atomic():
        raw_sql("UPDATE audit_auditchainhead SET sequence = sequence + 1, hash = 'next'")
    assert AuditChainHead.objects.get().sequence == 2


@pytest.mark.parametrize(
    "write",
    [
        lambda: AuditEvent.objects.all().update(target_id="x"),
        lambda: AuditEvent.objects.filter(sequence=1).delete(),
        lambda: AuditEvent.objects.get(sequence=1).delete(),
        lambda: AuditEvent.objects.bulk_update(list(AuditEvent.objects.all()), ["target_id"]),
        lambda: AuditEvent.objects.bulk_create([AuditEvent(sequence=9, hash="f" * 64)]),
        lambda: AuditEvent.objects.create(sequence=9, action="job.created", target_type="job"),
        lambda: AuditEvent._base_manager.filter(sequence=1).update(target_id="x"),
    ],
    ids=["update", "queryset-delete", "delete", "bulk-update", "bulk-create", "create", "base"],
)
def test_the_orm_refuses_every_bulk_or_direct_write(append, write):
    append()
    with pytest.raises(AuditTrailImmutable, match=r"append-only|only by"):
        write()
    assert AuditEvent.objects.count() == 1


def test_saving_a_loaded_event_again_is_refused(append):
    event = append()
    loaded = AuditEvent.objects.get(sequence=event.sequence)
    loaded.target_id = "rewritten"
    with pytest.raises(AuditTrailImmutable, match="changing event #1"):
        loaded.save()
    assert AuditEvent.objects.get(sequence=1).target_id == "1"


def test_sqlite_refuses_update_and_delete_with_its_own_triggers(tmp_path):
    # The embedded default (no DATABASE_URL) migrates a fresh SQLite file from scratch.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_URL", "S3_", "CELERY_", "CACHE_URL", "DJANGO_"))
    }
    env.update({"VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "config.settings"})
    probe = """
import json, sqlite3, django
django.setup()
from django.core.management import call_command
from django.db import transaction
from governance.audit.services import audit_append
call_command("migrate", verbosity=0)
with transaction.atomic():
    audit_append(actor=None, action="job.created", target_type="job", target_id="1")
db = sqlite3.connect(str(django.conf.settings.DATABASES["default"]["NAME"]))
refused = {}
for sql in ("UPDATE audit_auditevent SET target_id = 'x'", "DELETE FROM audit_auditevent",
            "DELETE FROM audit_auditchainhead", "UPDATE audit_auditchainhead SET sequence = 0"):
    try:
        db.execute(sql)
        refused[sql] = None
    except sqlite3.DatabaseError as exc:
        refused[sql] = str(exc)
print(json.dumps(refused))
"""
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=90
    )
    assert result.returncode == 0, result.stderr
    refused = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(
        message is not None and ("append-only" in message or "forward" in message)
        for message in refused.values()
    ), refused
