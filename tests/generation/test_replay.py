"""Replay: regenerate an output from its record and say whether the pixels are identical."""

from unittest import mock

import pytest
from django.core.management import call_command
from django.utils import timezone

from generation import worker
from generation.models import Output, OutputReplay, ReplayOutcome
from generation.replay import compare_pixels, output_replay
from generation.services import job_create, job_execute
from governance.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def make_output(requester, model_version, s3_bucket):
    worker.clear_pipeline_cache()

    def _make(seed):
        with mock.patch("generation.services.dispatch_job"):
            job = job_create(created_by=requester, caption="a blue star", seed=seed)
        job_execute(job_id=job.id, worker="test", max_batch=1)
        return Output.objects.get(job=job)

    return _make


def test_replaying_a_fresh_output_gives_identical_pixels_and_is_recorded(make_output, capsys):
    output = make_output(5)
    call_command("replay", str(output.pk))
    assert "identical: yes" in capsys.readouterr().out
    replay = OutputReplay.objects.get(output=output)
    assert (replay.outcome, replay.max_abs_diff, replay.mean_abs_diff) == ("identical", 0, 0.0)
    event = AuditEvent.objects.get(action="replay.recorded", target_id=str(output.pk))
    assert event.payload["outcome"] == "identical"


def test_a_replay_that_differs_reports_how_far_and_exits_1(make_output, capsys):
    output, other = make_output(5), make_output(6)
    # The stored image no longer matches the record: as if the engine had drifted.
    Output.objects.filter(pk=output.pk).update(storage_key=other.storage_key)
    with pytest.raises(SystemExit) as exited:
        call_command("replay", str(output.pk))
    assert exited.value.code == 1
    printed = capsys.readouterr().out
    assert "identical: no (max abs diff" in printed
    replay = OutputReplay.objects.get(output=output)
    assert replay.outcome == ReplayOutcome.DRIFTED
    assert replay.max_abs_diff > 0 and 0 < replay.differing_fraction <= 1


def test_a_purged_output_cannot_be_compared_and_says_so(make_output):
    output = make_output(5)
    Output.objects.filter(pk=output.pk).update(purged_at=timezone.now())
    replay = output_replay(output=output)
    assert replay.outcome == ReplayOutcome.UNAVAILABLE
    assert "purged" in replay.detail


def test_the_periodic_task_replays_a_sample_and_records_each(make_output, settings):
    from config.celery import app
    from generation.tasks import replay_sample_outputs

    make_output(5)
    make_output(6)
    settings.REPLAY_SAMPLE_SIZE = 2
    assert replay_sample_outputs.apply().get() == {"identical": 2}
    assert OutputReplay.objects.count() == 2
    schedule = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert "generation.tasks.replay_sample_outputs" in schedule
    route = app.conf.task_routes["generation.tasks.replay_sample_outputs"]
    assert route["queue"] == settings.GENERATION_QUEUE


def test_compare_pixels_measures_the_difference():
    import numpy as np

    stored = np.zeros((2, 2, 3), dtype=np.uint8)
    changed = stored.copy()
    changed[0, 0] = (4, 0, 0)
    assert compare_pixels(stored, stored)["identical"] is True
    found = compare_pixels(stored, changed)
    assert (found["max_abs_diff"], found["differing_fraction"]) == (4, 0.25)
    assert found["mean_abs_diff"] == pytest.approx(4 / 12)
