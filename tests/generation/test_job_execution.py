"""Running jobs through the engine: outputs, idempotence, failures, retries, the sweeper."""

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from generation import worker
from generation.models import GenerationJob, JobStatus, Output
from generation.services import (
    TransientJobError,
    job_cancel,
    job_create,
    job_execute,
    jobs_sweep,
)
from generation.storage import StorageUnavailable, get_store, sha256_hex

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_dispatch():
    # These tests drive job_execute directly; the broker is exercised by the e2e test.
    with mock.patch("generation.services.dispatch_job") as dispatched:
        yield dispatched


@pytest.fixture(autouse=True)
def _fresh_model_cache():
    worker.clear_pipeline_cache()
    yield
    worker.clear_pipeline_cache()


def _job(requester, **kwargs):
    return job_create(created_by=requester, caption=kwargs.pop("caption", "a red square"), **kwargs)


def test_a_job_produces_one_stored_image_whose_sha256_matches_its_row(
    requester, model_version, s3_bucket
):
    job = _job(requester, seed=3)
    assert job_execute(job_id=job.id, worker="test") == JobStatus.SUCCEEDED
    job.refresh_from_db()
    output = Output.objects.get(job=job)
    data = get_store().get(output.storage_key)
    assert sha256_hex(data) == output.sha256 == output.storage_key.split("/")[-1][:-4]
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert (output.width, output.height) == (32, 32)
    assert (job.status, job.progress, job.scales_done) == (JobStatus.SUCCEEDED, 1.0, 4)
    assert (output.seed, output.caption, output.model_version_id) == (
        3,
        "a red square",
        model_version.pk,
    )


def test_executing_a_finished_job_again_does_not_generate_again(
    requester, model_version, s3_bucket
):
    job = _job(requester, seed=1)
    job_execute(job_id=job.id, worker="test")
    with mock.patch.object(worker, "generate_pngs") as generate:
        assert job_execute(job_id=job.id, worker="test") == JobStatus.SUCCEEDED
    generate.assert_not_called()
    assert Output.objects.filter(job=job).count() == 1


def _pixels(job_id):
    import io

    import numpy as np
    from PIL import Image

    output = GenerationJob.objects.get(pk=job_id).output
    return np.asarray(Image.open(io.BytesIO(get_store().get(output.storage_key))))


def test_same_caption_seed_and_model_give_identical_pixels(requester, model_version, s3_bucket):
    first, second = _job(requester, seed=11), _job(requester, seed=11)
    job_execute(job_id=first.id, worker="test", max_batch=1)
    job_execute(job_id=second.id, worker="test", max_batch=1)
    assert (_pixels(first.id) == _pixels(second.id)).all()
    other = _job(requester, seed=12)
    job_execute(job_id=other.id, worker="test", max_batch=1)
    assert (_pixels(first.id) != _pixels(other.id)).any()


def test_tampered_weights_fail_the_job_with_the_hash_in_the_reason(
    requester, model_version, s3_bucket, tiny_checkpoint_dir, tmp_path
):
    weight = model_version.weights.get(role="vqvae")
    copy = tmp_path / "vqvae.safetensors"
    copy.write_bytes(bytearray(tiny_checkpoint_dir.joinpath("vqvae.safetensors").read_bytes()))
    with copy.open("r+b") as handle:
        handle.seek(-1, 2)
        handle.write(b"\x00" if handle.read(1) != b"\x00" else b"\x01")
    type(weight).objects.filter(pk=weight.pk).update(uri=str(copy))
    job = _job(requester)
    assert job_execute(job_id=job.id, worker="test") == JobStatus.FAILED
    job.refresh_from_db()
    assert "fail their hash" in job.failure_reason
    assert not Output.objects.filter(job=job).exists()


def test_missing_weights_fail_the_job_and_write_nothing(requester, model_version, s3_bucket):
    type(model_version.weights.first()).objects.filter(
        model_version=model_version, role="transformer"
    ).update(uri="/nonexistent/transformer.safetensors")
    job = _job(requester)
    assert job_execute(job_id=job.id, worker="test") == JobStatus.FAILED
    job.refresh_from_db()
    assert "unreadable" in job.failure_reason
    assert list(get_store().iter_keys("outputs")) == []


def test_store_outage_requeues_the_job_and_raises_for_a_retry(requester, model_version, s3_bucket):
    job = _job(requester)
    with (
        mock.patch.object(
            type(get_store()), "put", side_effect=StorageUnavailable("connection refused")
        ),
        pytest.raises(TransientJobError),
    ):
        job_execute(job_id=job.id, worker="test")
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert "object store unavailable" in job.failure_reason
    assert not Output.objects.filter(job=job).exists()
    assert job_execute(job_id=job.id, worker="test") == JobStatus.SUCCEEDED


def test_cancel_of_a_running_job_stops_it_at_the_next_scale(requester, model_version, s3_bucket):
    job = _job(requester)
    from generation.services import _Progress

    class CancelAfterFirstScale(_Progress):
        def __call__(self, done, total):
            if done == 1:
                job_cancel(job_id=self.job_ids[0])
            super().__call__(done, total)

    with mock.patch("generation.services._Progress", CancelAfterFirstScale):
        assert job_execute(job_id=job.id, worker="test") == JobStatus.CANCELLED
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job.scales_done == 1
    assert not Output.objects.filter(job=job).exists()


def test_a_job_held_by_a_live_worker_is_not_taken_twice(requester, model_version, s3_bucket):
    job = _job(requester)
    GenerationJob.objects.filter(pk=job.id).update(
        status=JobStatus.RUNNING, heartbeat_at=timezone.now(), attempts=1
    )
    assert job_execute(job_id=job.id, worker="second") == JobStatus.RUNNING
    assert not Output.objects.filter(job=job).exists()


def test_sweeper_redispatches_forgotten_queued_jobs(
    requester, model_version, _no_dispatch, settings
):
    job = _job(requester)
    _no_dispatch.reset_mock()
    old = timezone.now() - timedelta(seconds=settings.GENERATION_REDISPATCH_AFTER + 5)
    GenerationJob.objects.filter(pk=job.id).update(dispatched_at=old)
    # The shared test queue may hold other tests' messages; this job's message is gone.
    with mock.patch("generation.services.queued_message_count", return_value=0):
        assert jobs_sweep()["redispatched"] == 1
    _no_dispatch.assert_called_once_with(job_id=job.id, priority=job.priority)


def test_sweeper_recovers_a_job_whose_worker_died_and_then_it_completes(
    requester, model_version, s3_bucket, _no_dispatch, settings
):
    job = _job(requester)
    stale = timezone.now() - timedelta(seconds=settings.GENERATION_HEARTBEAT_TIMEOUT + 5)
    GenerationJob.objects.filter(pk=job.id).update(
        status=JobStatus.RUNNING, heartbeat_at=stale, attempts=1
    )
    assert jobs_sweep()["recovered"] == 1
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert job_execute(job_id=job.id, worker="test") == JobStatus.SUCCEEDED


def test_sweeper_fails_a_job_that_lost_its_worker_too_often(requester, model_version, settings):
    job = _job(requester)
    stale = timezone.now() - timedelta(seconds=settings.GENERATION_HEARTBEAT_TIMEOUT + 5)
    GenerationJob.objects.filter(pk=job.id).update(
        status=JobStatus.RUNNING, heartbeat_at=stale, attempts=settings.GENERATION_MAX_ATTEMPTS
    )
    assert jobs_sweep()["failed"] == 1
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "worker lost" in job.failure_reason


def test_a_missing_job_id_is_dropped_without_error(db):
    import uuid

    assert job_execute(job_id=uuid.uuid4(), worker="test") == "missing"


def test_the_worker_loads_a_model_version_once_and_reuses_it(model_version):
    with mock.patch.object(worker, "weights_verify", wraps=worker.weights_verify) as verify:
        first = worker.load_pipeline(model_version)
        second = worker.load_pipeline(model_version)
    assert first is second
    assert verify.call_count == 1


def test_a_store_that_stays_down_fails_the_job_with_the_reason(
    requester, model_version, s3_bucket, settings
):
    from generation.dispatch import run_inprocess

    settings.GENERATION_MAX_ATTEMPTS = 2
    job = _job(requester)
    with (
        mock.patch.object(
            type(get_store()), "put", side_effect=StorageUnavailable("connection refused")
        ) as put,
        mock.patch("generation.dispatch.time.sleep"),
    ):
        run_inprocess(str(job.id))
    job.refresh_from_db()
    assert put.call_count == 2
    assert job.status == JobStatus.FAILED
    assert "gave up after 2 attempts" in job.failure_reason
    assert "object store unavailable" in job.failure_reason


def test_celery_task_retries_a_transient_failure_then_succeeds(requester, model_version, s3_bucket):
    from generation.tasks import run_generation_job

    job = _job(requester)
    real_put = type(get_store()).put
    calls = {"n": 0}

    def flaky_put(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise StorageUnavailable("timeout")
        return real_put(self, *args, **kwargs)

    with mock.patch.object(type(get_store()), "put", flaky_put):
        result = run_generation_job.apply(args=(str(job.id),))
    assert result.get() == JobStatus.SUCCEEDED
    assert calls["n"] == 2
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED


def test_compatible_queued_jobs_share_one_engine_batch_with_identical_pixels(
    requester, model_version, s3_bucket
):
    alone = _job(requester, caption="a red circle", seed=21)
    job_execute(job_id=alone.id, worker="test", max_batch=1)
    mixed = [
        _job(requester, caption="a blue star", seed=5),
        _job(requester, caption="a red circle", seed=21),
        _job(requester, caption="green cross on the left", seed=9),
    ]
    with mock.patch.object(worker, "generate_pngs", wraps=worker.generate_pngs) as generate:
        job_execute(job_id=mixed[0].id, worker="test", max_batch=8)
    assert generate.call_count == 1
    assert len(generate.call_args.args[0]) == 3
    statuses = {j.status for j in GenerationJob.objects.filter(pk__in=[j.id for j in mixed])}
    assert statuses == {JobStatus.SUCCEEDED}
    assert (_pixels(mixed[1].id) == _pixels(alone.id)).all()


def test_jobs_with_other_settings_are_not_batched_together(requester, model_version, s3_bucket):
    first = _job(requester, seed=1)
    other = _job(requester, seed=2, sampling={"cfg": 1.5})
    job_execute(job_id=first.id, worker="test", max_batch=8)
    assert GenerationJob.objects.get(pk=other.id).status == JobStatus.QUEUED


def test_cancelling_one_job_of_a_batch_keeps_the_others(requester, model_version, s3_bucket):
    from generation.services import _Progress

    keep, drop = _job(requester, seed=1), _job(requester, seed=2)

    class CancelOne(_Progress):
        def __call__(self, done, total):
            if done == 1:
                job_cancel(job_id=drop.id)
            super().__call__(done, total)

    with mock.patch("generation.services._Progress", CancelOne):
        job_execute(job_id=keep.id, worker="test", max_batch=8)
    assert GenerationJob.objects.get(pk=keep.id).status == JobStatus.SUCCEEDED
    assert GenerationJob.objects.get(pk=drop.id).status == JobStatus.CANCELLED
    assert not Output.objects.filter(job_id=drop.id).exists()


def test_sweeper_resends_only_the_jobs_the_broker_backlog_cannot_cover(
    requester, model_version, _no_dispatch, settings
):
    jobs = [_job(requester, seed=i) for i in range(5)]
    _no_dispatch.reset_mock()
    old = timezone.now() - timedelta(seconds=settings.GENERATION_REDISPATCH_AFTER + 5)
    GenerationJob.objects.filter(pk__in=[j.id for j in jobs]).update(dispatched_at=old)
    with mock.patch("generation.services.queued_message_count", return_value=3):
        assert jobs_sweep()["redispatched"] == 2
    with mock.patch("generation.services.queued_message_count", return_value=0):
        # an empty queue covers nobody: the three not re-sent yet go now; the two are fresh
        assert jobs_sweep()["redispatched"] == 3
        assert jobs_sweep()["redispatched"] == 0
