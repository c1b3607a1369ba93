"""Auditor search over outputs, and its export as CSV and JSON Lines, streamed and audited."""

import csv
import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from governance.approvals.search import output_export, output_search
from governance.approvals.services import ApprovalInputError, review_decide

from .conftest import CHECKLIST, VALUES

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewed(submit, generate, reviewer, s3_bucket):
    """Three outputs: red (approved by rory), red (rejected), blue (pending)."""
    red = generate(submit(variations=2, seeds=[1, 2]))
    blue = generate(submit(values={**VALUES, "colour": "blue"}, seeds=[3]))
    review_decide(output=red[0], reviewer=reviewer, decision="approved", checklist=CHECKLIST)
    review_decide(output=red[1], reviewer=reviewer, decision="rejected", comment="blurry")
    return [*red, *blue]


def _ids(outputs):
    return {str(output.pk) for output in outputs}


def test_search_by_person_template_model_status_dates_and_caption(reviewed, auditor):
    approved, rejected, pending = reviewed

    def search(**filters):
        return _ids(output_search(viewer=auditor, **filters))

    assert search() == _ids(reviewed)
    assert search(person="rita") == _ids(reviewed)
    assert search(person="rory") == _ids([approved, rejected])
    assert search(template="shapes:1") == search(template="shapes") == _ids(reviewed)
    assert search(template="shapes:2") == set()
    assert search(model_version="demo:1") == _ids(reviewed)
    assert search(review_status="rejected") == _ids([rejected])
    assert search(caption="BLUE circle") == _ids([pending])
    now = timezone.now()
    assert search(since=now - timedelta(hours=1), until=now + timedelta(hours=1)) == _ids(reviewed)
    assert search(since=now + timedelta(hours=1)) == set()
    with pytest.raises(ApprovalInputError) as refused:
        search(review_status="maybe")
    assert "review_status" in refused.value.errors


def test_search_never_shows_what_the_viewer_may_not_read(reviewed, outsider):
    assert _ids(output_search(viewer=outsider)) == set()


def test_export_as_csv_and_json_lines_carries_every_output_and_is_audited(
    reviewed, auditor, audit_trail
):
    outputs = output_search(viewer=auditor, template="shapes")
    text = "".join(output_export(outputs=outputs, fmt="csv", actor=auditor, filters={"t": 1}))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {row["output"] for row in rows} == _ids(reviewed)
    approved = next(row for row in rows if row["output"] == str(reviewed[0].pk))
    assert (approved["review_status"], approved["last_reviewer"]) == ("approved", "rory")
    assert approved["template_version"] == "shapes:1"
    lines = "".join(output_export(outputs=outputs, fmt="jsonl", actor=auditor)).splitlines()
    records = [json.loads(line) for line in lines]
    assert {record["output"] for record in records} == _ids(reviewed)
    assert {record["requested_by"] for record in records} == {"rita"}
    statuses = [
        (p["format"], p["status"], p.get("count")) for _, p in audit_trail("outputs.exported")
    ]
    assert statuses == [
        ("csv", "started", None), ("csv", "completed", 3),
        ("jsonl", "started", None), ("jsonl", "completed", 3),
    ]  # fmt: skip


def test_export_reads_keyset_batches_instead_of_loading_every_row(reviewed, auditor):
    outputs = output_search(viewer=auditor)
    with CaptureQueriesContext(connection) as queries:
        chunks = list(output_export(outputs=outputs, fmt="jsonl", actor=None, batch_size=1))
    selects = [q["sql"] for q in queries if 'FROM "generation_output"' in q["sql"]]
    assert len(selects) == 4  # three batches of one row, then an empty one
    assert all("LIMIT 1" in sql for sql in selects)
    assert sum(chunk.count("\n") for chunk in chunks) == 3


def test_an_abandoned_export_is_audited_as_abandoned(reviewed, auditor, audit_trail):
    stream = output_export(outputs=output_search(viewer=auditor), fmt="csv", actor=auditor)
    next(stream)  # the header
    stream.close()
    assert audit_trail("outputs.exported")[-1][1]["status"] == "abandoned"


def test_the_export_command_streams_the_search_to_standard_output(reviewed, auditor, capsys):
    call_command("export_outputs", "--by", "audrey", "--format", "jsonl", "--person", "rory")
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {record["output"] for record in records} == _ids(reviewed[:2])
