"""Every job and output write appends its audit event in the same transaction."""

from unittest import mock

import pytest

from generation import worker
from generation.models import Output
from generation.services import job_cancel, job_create, job_execute, job_fail
from governance.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def _trail(target_id):
    events = AuditEvent.objects.filter(target_id=str(target_id)).order_by("sequence")
    return [(event.action, event.actor_username) for event in events]


@pytest.fixture
def queued(requester, model_version):
    with mock.patch("generation.services.dispatch_job"):
        return job_create(created_by=requester, caption="a red square", seed=2)


def test_a_job_that_runs_is_audited_from_creation_to_its_output(queued, s3_bucket):
    worker.clear_pipeline_cache()
    job_execute(job_id=queued.id, worker="test", max_batch=1)
    output = Output.objects.get(job=queued)
    assert _trail(queued.id) == [("job.created", "rita"), ("job.succeeded", "")]
    assert _trail(output.id)[:1] == [("output.created", "")]
    created = AuditEvent.objects.get(action="output.created")
    assert (created.payload["sha256"], created.payload["job"]) == (output.sha256, str(queued.id))


def test_cancelled_and_failed_jobs_are_audited(queued, requester):
    job_cancel(job_id=queued.id)
    with mock.patch("generation.services.dispatch_job"):
        other = job_create(created_by=requester, caption="a blue star", seed=3)
    job_fail(job_id=other.id, reason="weights missing")
    assert _trail(queued.id) == [("job.created", "rita"), ("job.cancelled", "")]
    assert _trail(other.id)[-1] == ("job.failed", "")
    failed = AuditEvent.objects.get(action="job.failed")
    assert failed.payload == {"reason": "weights missing"}


def test_a_job_that_cannot_be_written_leaves_no_event(requester, model_version):
    from generation.services import JobInputError

    with pytest.raises(JobInputError):
        job_create(created_by=requester, caption="   ")
    assert not AuditEvent.objects.filter(action="job.created").exists()
