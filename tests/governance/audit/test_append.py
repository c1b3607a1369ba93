"""Appending events: the chain links, the transaction rule, the checks on every field."""

import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import RequestFactory
from hypothesis import given, settings
from hypothesis import strategies as st

from governance.audit.actions import AuditAction
from governance.audit.chain import (
    GENESIS_HASH,
    HASHED_FIELDS,
    canonical_message,
    chain_key,
)
from governance.audit.context import audit_context, current_context
from governance.audit.errors import (
    AuditChainBroken,
    AuditInvalid,
    AuditOutsideTransaction,
    AuditPayloadTooLarge,
)
from governance.audit.middleware import AuditContextMiddleware
from governance.audit.models import AuditChainHead, AuditEvent
from governance.audit.services import audit_append
from governance.audit.verification import audit_verify
from tests.governance.audit.support import raw_sql, triggers_disabled

pytestmark = pytest.mark.django_db


def _documented_message(event: AuditEvent) -> bytes:
    """The canonical serialisation exactly as docs/audit.md defines it."""
    record = {
        "action": event.action,
        "actor_id": event.actor_id,
        "actor_username": event.actor_username,
        "client_ip": event.client_ip,
        "occurred_at": event.occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "payload": json.loads(event.payload_json),
        "prev_hash": event.prev_hash,
        "request_id": event.request_id,
        "sequence": event.sequence,
        "target_id": event.target_id,
        "target_type": event.target_type,
    }
    assert sorted(record) == list(HASHED_FIELDS)
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def test_each_event_links_to_the_previous_one_with_a_keyed_hash(append, requester):
    first = append(actor=requester, payload={"caption": "ein rotes Quadrat ✓"})
    second = append(action=AuditAction.JOB_SUCCEEDED)

    assert (first.sequence, second.sequence) == (1, 2)
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    for event in (first, second):
        stored = AuditEvent.objects.get(sequence=event.sequence)
        expected = hmac.new(chain_key(), _documented_message(stored), hashlib.sha256).hexdigest()
        assert stored.hash == expected
    head = AuditChainHead.objects.get()
    assert (head.sequence, head.hash) == (2, second.hash)


def test_the_event_records_actor_action_target_and_payload(append, requester):
    event = append(actor=requester, target_type="job", target_id=42, payload={"seed": 7})

    stored = AuditEvent.objects.get(sequence=event.sequence)
    assert (stored.actor_id, stored.actor_username) == (requester.pk, "rita")
    assert (stored.action, stored.target_type, stored.target_id) == ("job.created", "job", "42")
    assert stored.payload == {"seed": 7}
    assert stored.action_label == "Job created"


@pytest.mark.django_db(transaction=True)
def test_appending_outside_a_transaction_is_refused():
    with pytest.raises(AuditOutsideTransaction, match=r"transaction\.atomic"):
        audit_append(actor=None, action=AuditAction.JOB_CREATED, target_type="job", target_id="1")
    assert not AuditEvent.objects.exists()


def test_the_event_rolls_back_with_the_write_it_records(append):
    append()
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_append(actor=None, action=AuditAction.JOB_FAILED, target_type="job", target_id="1")
        raise RuntimeError("the governed write failed")

    assert list(AuditEvent.objects.values_list("sequence", flat=True)) == [1]
    assert AuditChainHead.objects.get().sequence == 1
    assert append().sequence == 2
    assert audit_verify().ok


def test_appending_after_the_head_row_was_lost_is_refused(append):
    append()
    with triggers_disabled():
        raw_sql("DELETE FROM audit_auditchainhead")

    with pytest.raises(AuditChainBroken, match="head is missing while events exist"):
        append()
    assert AuditEvent.objects.count() == 1


def test_deleting_a_user_leaves_their_events_and_the_chain_intact(append):
    user = get_user_model().objects.create_user("leaver", password="pw-leaver-123456")
    event = append(actor=user)

    user.delete()

    stored = AuditEvent.objects.get(sequence=event.sequence)
    assert (stored.actor_id, stored.actor_username) == (event.actor_id, "leaver")
    assert audit_verify().ok


def test_a_system_action_has_no_actor(append):
    event = append(actor=None)
    assert (event.actor_id, event.actor_username) == (None, "")


def test_an_unknown_action_is_refused_naming_the_field(append):
    with pytest.raises(AuditInvalid, match=r"action: unknown audit action 'job\.exploded'") as err:
        append(action="job.exploded")
    assert err.value.field == "action"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("target_type", "", "must not be blank"),
        ("target_type", "x" * 65, "above 64"),
        ("target_id", "x" * 129, "above 128"),
        ("target_id", "a\x00b", "NUL"),
        ("request_id", "has spaces", "1-64 characters"),
        ("client_ip", "not-an-ip", "not an IP address"),
    ],
)
def test_a_malformed_field_is_refused_naming_it(append, field, value, message):
    with pytest.raises(AuditInvalid, match=message) as err:
        append(**{field: value})
    assert err.value.field == field
    assert not AuditEvent.objects.exists()


def test_a_payload_above_8_kb_is_refused_with_its_size(append):
    with pytest.raises(AuditPayloadTooLarge, match=r"payload: is 9\d{3} bytes .* 8192-byte cap"):
        append(payload={"blob": "x" * 9000})


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (["not", "an", "object"], "must be a JSON object"),
        ({"value": float("nan")}, "not JSON-serialisable"),
        ({"value": object()}, "not JSON-serialisable"),
    ],
)
def test_a_payload_that_is_not_a_json_object_is_refused(append, payload, message):
    with pytest.raises(AuditInvalid, match=message) as err:
        append(payload=payload)
    assert err.value.field == "payload"


def test_uuids_and_times_in_a_payload_are_stored_as_text(append):
    job_id = uuid.UUID("12345678-1234-5678-1234-567812345678")
    moment = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

    event = append(payload={"job": job_id, "at": moment, 10: "ten", 9: "nine"})

    assert AuditEvent.objects.get(sequence=event.sequence).payload == {
        "job": str(job_id),
        "at": "2025-01-02T03:04:05Z",
        "10": "ten",
        "9": "nine",
    }
    assert audit_verify().ok


def test_request_id_and_client_address_come_from_the_request_context(append):
    with audit_context(request_id="req-123", client_ip="2001:DB8::1"):
        event = append()
    explicit = append(request_id="given-id", client_ip="192.0.2.7")

    assert (event.request_id, event.client_ip) == ("req-123", "2001:db8::1")
    assert (explicit.request_id, explicit.client_ip) == ("given-id", "192.0.2.7")
    assert current_context().request_id == ""
    assert audit_verify().ok


@pytest.mark.parametrize(
    ("given", "kept"),
    [("abc-123", True), ("", False), ("bad id with spaces", False), ("x" * 65, False)],
)
def test_middleware_keeps_a_plain_request_id_and_echoes_it(given, kept):
    seen = {}

    def view(request):
        from django.http import HttpResponse

        seen["context"] = current_context()
        return HttpResponse("ok")

    request = RequestFactory().get("/", HTTP_X_REQUEST_ID=given, REMOTE_ADDR="198.51.100.4")
    response = AuditContextMiddleware(view)(request)

    request_id = seen["context"].request_id
    assert (request_id == given) is kept
    assert len(request_id) == 32 or kept
    assert seen["context"].client_ip == "198.51.100.4"
    assert response["X-Request-ID"] == request_id
    assert current_context().request_id == ""


def test_the_action_enum_covers_every_governed_write():
    required = {
        "template.created",
        "template.version_created",
        "template.version_submitted",
        "template.version_published",
        "template.version_rejected",
        "registry.version_registered",
        "registry.alias_move_requested",
        "registry.alias_moved",
        "registry.alias_move_rejected",
        "request.created",
        "request.changes_requested",
        "request.legal_hold_set",
        "request.legal_hold_released",
        "job.created",
        "job.succeeded",
        "job.failed",
        "job.cancelled",
        "output.created",
        "output.check_recorded",
        "review.approved",
        "review.rejected",
        "role.granted",
        "role.revoked",
        "retention.purged",
        "audit.exported",
        "audit.anchored",
        "replay.recorded",
        "webhook.delivered",
        "webhook.failed",
        "quota.exceeded",
    }
    assert required <= set(AuditAction.values)
    assert all(value.count(".") == 1 for value in AuditAction.values)


_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=20)
_scalar = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
)
_json = st.recursive(
    _scalar | _text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_text, children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(
    payload=st.dictionaries(_text, _json, max_size=4),
    username=_text,
    target_id=_text,
    actor_id=st.none() | st.integers(min_value=1, max_value=2**62),
)
def test_the_fast_serialisation_equals_the_documented_json(payload, username, target_id, actor_id):
    from governance.audit.chain import canonical_payload

    event = AuditEvent(
        sequence=12,
        occurred_at=datetime(2025, 5, 6, 7, 8, 9, 123, tzinfo=UTC),
        actor_id=actor_id,
        actor_username=username,
        action="job.created",
        target_type="job",
        target_id=target_id,
        payload_json=canonical_payload(payload),
        request_id="r",
        client_ip="",
        prev_hash=GENESIS_HASH,
    )
    fields = {name: getattr(event, name) for name in HASHED_FIELDS if name != "payload"}
    assert canonical_message(**fields, payload_json=event.payload_json) == _documented_message(
        event
    )


@settings(max_examples=200, deadline=None)
@given(
    # Keys shorter than, as long as and longer than SHA-256's 64-byte block (hashed first).
    key=st.binary(min_size=1, max_size=64) | st.binary(min_size=65, max_size=300),
    message=st.binary(max_size=300),
)
def test_the_chain_hasher_is_hmac_sha256(key, message):
    from governance.audit.chain import ChainHasher

    hasher = ChainHasher(key)
    expected = hmac.new(key, message, hashlib.sha256).hexdigest()
    assert hasher.digest(message) == expected
    assert hasher.digest(message) == expected  # the key schedule is reused, not consumed
