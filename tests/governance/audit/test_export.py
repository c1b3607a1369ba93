"""Exports stream in keyset batches, parse back exactly, and are audited themselves."""

import csv
import io
import json
import tracemalloc
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from governance.audit.actions import AuditAction
from governance.audit.chain import format_time
from governance.audit.errors import AuditInvalid
from governance.audit.models import AuditEvent
from governance.audit.services import EXPORT_COLUMNS, audit_export
from tests.governance.audit.support import raw_sql

pytestmark = pytest.mark.django_db


def _bulk(count: int) -> None:
    """Insert ``count`` export-sized events at once (their hashes are placeholders)."""
    raw_sql(
        "INSERT INTO audit_auditevent (sequence, occurred_at, actor_id, actor_username, action,"
        " target_type, target_id, payload_json, request_id, client_ip, prev_hash, hash)"
        " SELECT n, now(), NULL, '', 'output.created', 'output', n::text,"
        " '{\"index\":' || n || ',\"note\":\"' || repeat('evidence, with commas; ', 16) || '\"}',"
        " '', '', lpad(to_hex(n - 1), 64, '0'), lpad(to_hex(n), 64, '0')"
        " FROM generate_series(1, %s) AS n",
        [count],
    )
    raw_sql(
        "INSERT INTO audit_auditchainhead (id, sequence, hash, updated_at)"
        " VALUES (1, %s, lpad(to_hex(%s), 64, '0'), now())",
        [count, count],
    )


def _peak_while_exporting(source) -> tuple[int, int]:
    """Return the peak traced memory while streaming an export, and the output size."""
    tracemalloc.start()
    try:
        total = sum(len(chunk.encode()) for chunk in audit_export(source, "csv"))
        return tracemalloc.get_traced_memory()[1], total
    finally:
        tracemalloc.stop()


def test_a_csv_export_parses_back_to_the_stored_events(chain, requester):
    chain(5)

    text = "".join(audit_export({}, "csv", actor=requester))

    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    assert [int(row["sequence"]) for row in rows] == [1, 2, 3, 4, 5]
    event = AuditEvent.objects.get(sequence=3)
    assert rows[2] == {
        "sequence": "3",
        "occurred_at": format_time(event.occurred_at),
        "actor_id": "",
        "actor_username": "",
        "action": "job.created",
        "target_type": "job",
        "target_id": "2",
        "payload": '{"index":2}',
        "request_id": "",
        "client_ip": "",
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def test_a_jsonl_export_has_one_event_per_line_with_its_payload_as_json(chain):
    chain(3)

    lines = "".join(audit_export({}, "jsonl")).splitlines()

    items = [json.loads(line) for line in lines]
    assert [item["sequence"] for item in items] == [1, 2, 3]
    assert items[1]["payload"] == {"index": 1}
    assert items[1]["hash"] == AuditEvent.objects.get(sequence=2).hash


def test_the_export_is_audited_when_it_starts_and_when_it_ends(chain, requester):
    chain(4)

    list(audit_export({"action": "job.created", "target_type": "job"}, "csv", actor=requester))

    started, completed = AuditEvent.objects.filter(action=AuditAction.AUDIT_EXPORTED)
    assert started.actor_username == completed.actor_username == "rita"
    filters = {"action": "job.created", "target_type": "job"}
    assert started.payload == {
        "status": "started", "format": "csv", "filters": filters, "up_to_sequence": 4,
    }  # fmt: skip
    assert completed.payload == {**started.payload, "status": "completed", "count": 4}


def test_an_abandoned_export_records_how_far_it_got():
    _bulk(2000)

    stream = audit_export({}, "jsonl")
    handed_out = len(next(stream).splitlines())
    stream.close()

    last = AuditEvent.objects.order_by("-sequence").first()
    assert last.payload["status"] == "abandoned"
    assert 0 < last.payload["count"] == handed_out < 2000


def test_the_export_excludes_events_appended_while_it_streams(append):
    _bulk(1000)

    stream = audit_export({}, "jsonl", batch_size=50)
    first = next(stream)
    append(target_id="late")
    rest = "".join(stream)

    sequences = [json.loads(line)["sequence"] for line in (first + rest).splitlines()]
    assert sequences == list(range(1, 1001))


def test_filters_select_the_exported_events(chain, append, requester):
    chain(3)
    append(actor=requester, action=AuditAction.REVIEW_APPROVED, target_type="review")
    since = timezone.now() - timedelta(minutes=1)

    text = "".join(audit_export({"actor": requester, "since": since}, "jsonl"))

    assert [json.loads(line)["action"] for line in text.splitlines()] == ["review.approved"]
    recorded = AuditEvent.objects.filter(action=AuditAction.AUDIT_EXPORTED).first().payload
    assert recorded["filters"] == {"actor": "rita", "since": format_time(since)}


def test_a_queryset_can_be_exported(chain):
    chain(6)

    text = "".join(audit_export(AuditEvent.objects.filter(sequence__gt=4), "jsonl"))

    assert [json.loads(line)["sequence"] for line in text.splitlines()] == [5, 6]


@pytest.mark.parametrize(
    ("source", "fmt", "field"),
    [({}, "xml", "fmt"), ({"colour": "red"}, "csv", "filters"), ("actor=1", "csv", "source")],
)
def test_bad_export_arguments_are_refused_before_anything_streams(source, fmt, field):
    with pytest.raises(AuditInvalid) as err:
        audit_export(source, fmt)
    assert err.value.field == field
    assert not AuditEvent.objects.exists()


def test_streaming_thousands_of_events_keeps_memory_flat():
    _bulk(8000)

    small_peak, small_total = _peak_while_exporting(AuditEvent.objects.filter(sequence__lte=2000))
    peak, total = _peak_while_exporting({})

    assert total > 3 * small_total > 3_000_000
    assert peak < total / 5, f"peak {peak} bytes for {total} bytes of output"
    assert peak < 1.5 * small_peak, f"peak {peak} for 8000 events, {small_peak} for 2000"


def test_the_command_writes_the_export_to_stdout(chain, append, capsys):
    chain(2)
    append(action=AuditAction.ROLE_GRANTED, target_type="role")

    call_command("audit_export", "--format", "jsonl", "--action", "role.granted")

    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["action"] for line in lines] == ["role.granted"]
    started, completed = AuditEvent.objects.filter(action=AuditAction.AUDIT_EXPORTED)
    assert started.request_id and started.request_id == completed.request_id


def test_the_command_reads_in_batches_of_the_given_size_and_loses_no_row(chain, capsys):
    chain(7)

    with CaptureQueriesContext(connection) as queries:
        call_command("audit_export", "--format", "jsonl", "--batch-size", "3")

    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["sequence"] for line in lines] == list(range(1, 8))
    batches = [q for q in queries.captured_queries if "LIMIT 3" in q["sql"]]
    assert len(batches) == 4  # 3 + 3 + 1 rows, then an empty batch ends the walk


def test_the_command_refuses_a_batch_size_of_zero(chain):
    with pytest.raises(CommandError, match="batch_size"):
        call_command("audit_export", "--batch-size", "0")
