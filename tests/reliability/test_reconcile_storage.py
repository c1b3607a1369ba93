"""reconcile_storage reports each kind of drift between the store and the rows, and fixes none."""

import io
import json
from unittest import mock

import pytest
from django.core.management import call_command

from generation.models import Output
from generation.services import job_create, job_execute
from generation.storage import get_store, sha256_hex

pytestmark = pytest.mark.django_db(transaction=True)


def _run(*args):
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        call_command("reconcile_storage", "--json", *args, stdout=out, stderr=err)
    except SystemExit as exc:
        code = exc.code
    findings = [json.loads(line) for line in out.getvalue().splitlines()]
    return code, findings, err.getvalue()


@pytest.fixture
def outputs(requester, model_version, s3_bucket):
    with mock.patch("generation.services.dispatch_job"):
        jobs = [job_create(created_by=requester, caption="a red circle", seed=i) for i in range(3)]
    job_execute(job_id=jobs[0].id, worker="test")
    return list(Output.objects.order_by("created_at"))


def test_a_consistent_store_reports_nothing(outputs):
    code, findings, err = _run()
    assert (code, findings) == (0, [])
    assert "0 finding(s)" in err


def test_each_planted_fault_is_reported_and_nothing_is_fixed(outputs):
    store = get_store()
    missing, mismatched, _fine = outputs
    # a row whose object is gone
    store.delete(missing.storage_key)
    # a row whose object holds other bytes (replaced behind the platform's back)
    store.delete(mismatched.storage_key)
    other = b"not the image"
    store.put(mismatched.storage_key, other, sha256_hex(other), "image/png")
    # an object no row refers to
    orphan = b"stray upload"
    orphan_key = f"outputs/00/{sha256_hex(orphan)}.png"
    store.put(orphan_key, orphan, sha256_hex(orphan), "image/png")

    code, findings, err = _run("--deep")

    assert code == 1
    kinds = {(f["kind"], f["key"]) for f in findings}
    assert ("missing_object", missing.storage_key) in kinds
    assert ("checksum_mismatch", mismatched.storage_key) in kinds
    assert ("size_mismatch", mismatched.storage_key) in kinds
    assert ("orphan_object", orphan_key) in kinds
    assert len(findings) == 4
    assert "4 finding(s)" in err
    # nothing repaired: the orphan is still there, the missing object still missing
    assert store.get(orphan_key) == orphan
    assert Output.objects.count() == 3


def test_the_shallow_check_uses_the_checksum_the_store_recorded(outputs):
    store = get_store()
    target = outputs[0]
    store.delete(target.storage_key)
    other = b"different bytes, same key"
    store.put(target.storage_key, other, sha256_hex(other), "image/png")
    code, findings, _ = _run()
    assert code == 1
    assert {f["kind"] for f in findings} == {"checksum_mismatch", "size_mismatch"}
