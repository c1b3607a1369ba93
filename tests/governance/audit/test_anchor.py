"""Anchors put the chain head where the database cannot reach: S3 Object Lock or local files."""

import json
import uuid

import pytest
from botocore.exceptions import ClientError
from django.core.management import call_command

from governance.audit import verification
from governance.audit.actions import AuditAction
from governance.audit.anchoring import (
    PROTECTION_LOCAL,
    PROTECTION_OBJECT_LOCK,
    PROTECTION_WRITE_ONCE,
    Anchor,
    S3AnchorStore,
    anchor_key,
    anchor_store,
    audit_anchor,
)
from governance.audit.chain import CHAIN_COLUMNS, ChainHasher, key_fingerprint, message_from_row
from governance.audit.models import AuditEvent
from governance.audit.tasks import anchor_audit_chain
from tests.governance.audit.support import raw_sql, triggers_disabled

pytestmark = pytest.mark.django_db


@pytest.fixture
def s3_anchors(settings, s3_bucket):
    """Anchors on the run's S3 server, in a bucket of this test that does not exist yet."""
    settings.AUDIT_ANCHOR_BACKEND = "s3"
    settings.AUDIT_ANCHOR_BUCKET = f"audit-anchors-{uuid.uuid4().hex[:12]}"
    return settings.AUDIT_ANCHOR_BUCKET


def test_an_anchor_on_s3_is_written_under_compliance_object_lock(chain, s3_anchors, settings):
    events = chain(3)

    anchor = audit_anchor()

    assert (anchor.sequence, anchor.hash) == (3, events[-1].hash)
    assert anchor.protection == PROTECTION_OBJECT_LOCK
    store = anchor_store()
    lock = store.client.get_object_lock_configuration(Bucket=s3_anchors)
    assert lock["ObjectLockConfiguration"]["ObjectLockEnabled"] == "Enabled"
    head = store.client.head_object(Bucket=s3_anchors, Key=anchor_key(3))
    assert head["ObjectLockMode"] == "COMPLIANCE"
    days = (head["ObjectLockRetainUntilDate"] - head["LastModified"]).days
    assert settings.AUDIT_ANCHOR_RETENTION_DAYS - 1 <= days <= settings.AUDIT_ANCHOR_RETENTION_DAYS
    stored = Anchor.from_bytes(store.read(anchor_key(3))[0])
    assert stored == anchor
    assert stored.mac == stored.expected_mac()
    assert stored.key_fingerprint == key_fingerprint()


def test_a_locked_anchor_cannot_be_deleted_and_a_version_on_top_is_reported(chain, s3_anchors):
    chain(1)
    original = audit_anchor()
    store = anchor_store()
    key = anchor_key(1)
    versions = store.client.list_object_versions(Bucket=s3_anchors, Prefix=key)["Versions"]

    with pytest.raises(ClientError, match="AccessDenied"):
        store.client.delete_object(Bucket=s3_anchors, Key=key, VersionId=versions[0]["VersionId"])
    forged = Anchor(**{**original.__dict__, "hash": "f" * 64})
    store.client.put_object(Bucket=s3_anchors, Key=key, Body=forged.to_bytes())

    body, later_writes = store.read(key)
    assert (Anchor.from_bytes(body), later_writes) == (original, 1)
    problems = verification.audit_verify().problems
    assert [problem.kind for problem in problems] == [verification.ANCHOR_OVERWRITTEN]


def test_the_anchoring_is_itself_an_audit_event(chain, s3_anchors):
    events = chain(2)

    anchor = audit_anchor()

    event = AuditEvent.objects.get(sequence=3)
    assert event.action == AuditAction.AUDIT_ANCHORED
    assert (event.target_type, event.target_id) == ("audit_chain", "2")
    assert event.payload == {
        "sequence": 2,
        "hash": events[-1].hash,
        "object": f"s3://{s3_anchors}/audit-anchors/00000000000000000002.json",
        "protection": PROTECTION_OBJECT_LOCK,
        "retain_until": anchor.retain_until,
    }
    assert verification.audit_verify().ok


def test_a_bucket_without_object_lock_gets_write_once_anchors(chain, s3_anchors):
    chain(1)
    plain = S3AnchorStore(s3_anchors)
    plain.client.create_bucket(Bucket=s3_anchors)

    anchor = audit_anchor()

    assert anchor.protection == PROTECTION_WRITE_ONCE
    assert anchor.retain_until is None
    assert AuditEvent.objects.get(sequence=2).payload["protection"] == PROTECTION_WRITE_ONCE


def test_nothing_new_since_the_last_anchor_writes_no_second_anchor(chain):
    chain(2)
    assert audit_anchor().sequence == 2

    assert audit_anchor() is None
    assert AuditEvent.objects.count() == 3
    assert anchor_audit_chain() is None


def test_an_empty_chain_has_nothing_to_anchor():
    assert audit_anchor() is None


def test_the_embedded_default_anchors_to_a_write_once_file(chain, settings):
    chain(2)

    anchor = audit_anchor()

    path = settings.AUDIT_ANCHOR_ROOT / "00000000000000000002.json"
    assert anchor.protection == PROTECTION_LOCAL
    assert json.loads(path.read_text())["hash"] == anchor.hash
    assert AuditEvent.objects.get(sequence=3).payload["object"] == path.as_uri()
    assert path.stat().st_mode & 0o222 == 0


def test_the_beat_task_anchors_the_head(chain):
    chain(3)
    assert anchor_audit_chain() == 3


def test_the_command_says_where_the_anchor_went(chain, capsys):
    chain(1)

    call_command("audit_anchor")

    assert "anchored sequence 1" in capsys.readouterr().out
    call_command("audit_anchor")
    assert "nothing new to anchor" in capsys.readouterr().out


def test_even_a_forger_holding_the_key_cannot_rewrite_anchored_history(chain):
    chain(4)
    audit_anchor()  # anchors event 4, recorded as event 5
    # With the key and the triggers off, event 4 is rewritten and the chain re-hashed.
    with triggers_disabled():
        raw_sql("UPDATE audit_auditevent SET target_id = 'rewritten' WHERE sequence = 4")
        hasher, prev = ChainHasher(), None
        for row in AuditEvent.objects.order_by("sequence").values_list(*CHAIN_COLUMNS):
            row = (*row[:10], prev or row[10])
            prev = hasher.digest(message_from_row(row))
            raw_sql(
                "UPDATE audit_auditevent SET prev_hash = %s, hash = %s WHERE sequence = %s",
                [row[10], prev, row[0]],
            )
        raw_sql("UPDATE audit_auditchainhead SET hash = %s", [prev])

    problems = verification.audit_verify().problems

    assert [(problem.sequence, problem.kind) for problem in problems] == [
        (4, verification.ANCHOR_MISMATCH)
    ]


def test_a_forged_anchor_fails_its_mac(chain, settings):
    chain(1)
    anchor = audit_anchor()
    path = settings.AUDIT_ANCHOR_ROOT / "00000000000000000001.json"
    path.chmod(0o644)
    forged = Anchor(**{**anchor.__dict__, "hash": "f" * 64})
    path.write_bytes(forged.to_bytes())

    problems = verification.audit_verify().problems

    assert [(problem.sequence, problem.kind) for problem in problems] == [
        (1, verification.ANCHOR_INVALID)
    ]
