"""audit_verify recomputes the chain and names the first broken link.

Tampering is done as a PostgreSQL superuser could: with the triggers switched off.
"""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from governance.audit import verification
from governance.audit.chain import GENESIS_HASH, ChainHasher, format_time, message_from_row
from governance.audit.models import AuditEvent
from tests.governance.audit.support import raw_sql, triggers_disabled

pytestmark = pytest.mark.django_db


def test_an_untouched_chain_verifies(chain):
    chain(30)

    result = verification.audit_verify(chunk_size=7)

    assert result.ok
    assert (result.checked, result.last_sequence) == (30, 30)


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2025, 1, 2, 3, 4, 5, 0, tzinfo=UTC),
        datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2025, 6, 1, 1, 30, 0, 7, tzinfo=timezone(timedelta(hours=9))),
    ],
)
def test_postgresql_renders_times_exactly_as_the_canonical_format(moment):
    sql = verification.CANONICAL_TIME_SQL.format(column="%s::timestamptz")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {sql}", [moment])
        assert cursor.fetchone()[0] == format_time(moment)


def test_an_empty_trail_verifies():
    assert verification.audit_verify().ok


def test_a_changed_event_is_named_by_its_sequence(chain):
    chain(10)
    with triggers_disabled():
        raw_sql("UPDATE audit_auditevent SET payload_json = '{\"index\":99}' WHERE sequence = 4")

    result = verification.audit_verify()

    assert not result.ok
    first = result.first_broken_link
    assert (first.sequence, first.kind) == (4, verification.HASH_MISMATCH)
    assert [problem.sequence for problem in result.problems] == [4]


def test_a_deleted_event_is_named_as_a_gap(chain):
    chain(10)
    with triggers_disabled():
        raw_sql("DELETE FROM audit_auditevent WHERE sequence = 6")

    first = verification.audit_verify().first_broken_link

    assert (first.sequence, first.kind) == (6, verification.GAP)
    assert "6 are missing" in first.detail


def test_a_forged_event_inserted_at_the_end_is_detected(chain):
    events = chain(5)
    forged_row = (6, events[-1].occurred_at, None, "", "job.created", "job", "forged", "{}", "",
                  "", events[-1].hash)  # fmt: skip
    # The forger knows the format but not the key.
    forged_hash = ChainHasher(b"guessed key").digest(message_from_row(forged_row))
    raw_sql(
        "INSERT INTO audit_auditevent (sequence, occurred_at, actor_id, actor_username, action,"
        " target_type, target_id, payload_json, request_id, client_ip, prev_hash, hash)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [*forged_row, forged_hash],
    )

    result = verification.audit_verify()

    assert (result.first_broken_link.sequence, result.first_broken_link.kind) == (
        6,
        verification.HASH_MISMATCH,
    )
    assert verification.HEAD_MISMATCH in {problem.kind for problem in result.problems}


def test_a_forged_event_inserted_in_the_middle_breaks_the_next_link(chain):
    chain(6)
    with triggers_disabled():
        # Shifting events up to make room is the only way in: sequence is the primary key.
        raw_sql("UPDATE audit_auditevent SET sequence = sequence + 10 WHERE sequence >= 4")
        raw_sql("UPDATE audit_auditevent SET sequence = sequence - 9 WHERE sequence >= 14")
        raw_sql(
            "INSERT INTO audit_auditevent SELECT 4, occurred_at, actor_id, actor_username,"
            " action, target_type, 'forged', payload_json, request_id, client_ip, prev_hash,"
            " hash FROM audit_auditevent WHERE sequence = 3"
        )
        raw_sql("UPDATE audit_auditchainhead SET sequence = 7")

    first = verification.audit_verify().first_broken_link

    assert (first.sequence, first.kind) == (4, verification.PREV_HASH_MISMATCH)


def test_a_truncated_tail_with_a_rewound_head_is_caught_by_the_head_or_an_anchor(chain):
    from governance.audit.anchoring import audit_anchor

    chain(5)
    audit_anchor()  # anchors event 5, recorded as event 6
    with triggers_disabled():
        raw_sql("DELETE FROM audit_auditevent WHERE sequence >= 4")

    head_only = verification.audit_verify(anchors=0)
    assert head_only.first_broken_link.kind == verification.HEAD_MISMATCH
    assert "events removed" in head_only.first_broken_link.detail

    with triggers_disabled():
        last_hash = AuditEvent.objects.values_list("hash", flat=True).get(sequence=3)
        raw_sql("UPDATE audit_auditchainhead SET sequence = 3, hash = %s", [last_hash])
    result = verification.audit_verify()

    assert [(problem.sequence, problem.kind) for problem in result.problems] == [
        (5, verification.ANCHOR_BEYOND_CHAIN)
    ]


def test_a_missing_head_is_reported(chain):
    chain(2)
    with triggers_disabled():
        raw_sql("DELETE FROM audit_auditchainhead")

    assert verification.audit_verify().first_broken_link.kind == verification.MISSING_HEAD


def test_the_wrong_key_fails_from_the_first_event_with_a_hint(chain, settings):
    chain(3)
    settings.AUDIT_HMAC_KEY = "a-different-key-of-at-least-32-characters!"

    first = verification.audit_verify().first_broken_link

    assert (first.sequence, first.kind) == (1, verification.HASH_MISMATCH)
    assert "AUDIT_HMAC_KEY" in first.detail


def test_the_first_event_must_follow_the_genesis_hash(chain):
    chain(2)
    with triggers_disabled():
        raw_sql("UPDATE audit_auditevent SET prev_hash = %s WHERE sequence = 1", ["1" * 64])

    first = verification.audit_verify().first_broken_link

    assert first.sequence == 1
    assert first.kind == verification.PREV_HASH_MISMATCH
    assert GENESIS_HASH[:12] in first.detail


def test_the_command_reports_an_intact_chain_with_its_speed(chain, capsys):
    chain(4)

    call_command("audit_verify")

    out = capsys.readouterr().out
    assert "checked 4 events (last sequence 4)" in out
    assert "events/s" in out
    assert "audit chain intact" in out


def test_the_command_fails_naming_the_first_broken_link(chain):
    chain(4)
    with triggers_disabled():
        raw_sql("UPDATE audit_auditevent SET target_id = 'edited' WHERE sequence = 2")

    with pytest.raises(CommandError, match="first broken link at sequence 2: hash mismatch"):
        call_command("audit_verify")


def test_each_verification_is_recorded_in_the_chain_it_checked(chain, django_user_model):
    chain(5)
    auditor = django_user_model.objects.create_user("ayumi")

    result, summary = verification.audit_verify_recorded(actor=auditor, anchors=0)

    event = AuditEvent.objects.get(action="audit.verified")
    assert (event.sequence, event.actor_username, event.target_id) == (6, "ayumi", "5")
    assert (summary["ok"], summary["checked"], summary["verified_by"]) == (True, 5, "ayumi")
    assert summary == verification.last_recorded_verification()
    assert result.ok
    # The record is itself a link: the next verification covers it.
    assert verification.audit_verify(anchors=0).checked == 6


def test_a_failed_verification_is_recorded_with_its_problems(chain):
    chain(4)
    with triggers_disabled():
        raw_sql("UPDATE audit_auditevent SET target_id = 'edited' WHERE sequence = 3")

    _, summary = verification.audit_verify_recorded(actor=None, anchors=0)

    latest = verification.last_recorded_verification()
    assert latest == summary
    assert (latest["ok"], latest["problem_count"], latest["verified_by"]) == (False, 1, "system")
    assert len(latest["problems"]) == 1
    assert latest["problems"][0].startswith("sequence 3: hash mismatch")


def test_the_command_records_its_verification_unless_told_not_to(chain):
    chain(3)

    call_command("audit_verify", "--no-record")
    assert verification.last_recorded_verification() is None
    call_command("audit_verify")

    latest = verification.last_recorded_verification()
    assert (latest["ok"], latest["checked"], latest["verified_by"]) == (True, 3, "system")
