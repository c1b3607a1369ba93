"""seed_scale_data fills a benchmark database with history whose audit chain still verifies."""

import io
from collections import Counter

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from generation.management.commands.seed_scale_data import check_database_name
from generation.models import GenerationJob, JobStatus, Output
from governance.audit.actions import AuditAction
from governance.audit.models import AuditChainHead, AuditEvent
from governance.audit.services import audit_append, audit_search
from governance.audit.verification import audit_verify

pytestmark = pytest.mark.django_db


def _seed(*arguments, **options):
    call_command("seed_scale_data", *arguments, users=7, seed=3, stdout=io.StringIO(), **options)


def test_seeded_history_continues_the_real_chain_and_verifies(model_version):
    before = AuditChainHead.objects.get().sequence  # registering the model wrote events

    _seed(events=400, outputs=60, chunk=150)

    result = audit_verify(anchors=0, chunk_size=97)
    assert result.ok, result.problems
    assert result.checked == before + 400
    assert AuditChainHead.objects.get().sequence == before + 400


def test_a_second_seeding_and_a_later_real_append_keep_the_chain_valid(model_version):
    _seed(events=120, outputs=20)
    _seed(events=90, outputs=30, chunk=40)
    with transaction.atomic():
        audit_append(actor=None, action=AuditAction.AUDIT_EXPORTED, target_type="audit_trail",
                     target_id="")  # fmt: skip

    result = audit_verify(anchors=0)

    assert result.ok, result.problems
    assert AuditChainHead.objects.get().sequence == result.last_sequence


def test_every_seeded_job_succeeded_with_one_output_and_three_events(model_version):
    _seed(events=300, outputs=50)

    jobs = GenerationJob.objects.all()
    assert jobs.count() == Output.objects.count() == 50
    assert set(jobs.values_list("status", flat=True)) == {JobStatus.SUCCEEDED}
    job = jobs.select_related("output").first()
    assert job.created_at < job.output.created_at <= job.finished_at
    per_job = Counter(
        AuditEvent.objects.filter(target_id=str(job.pk)).values_list("action", flat=True)
    )
    assert per_job == {"job.created": 1, "job.succeeded": 1}
    assert AuditEvent.objects.filter(
        action="output.created", target_id=str(job.output.pk), payload_json__contains=str(job.pk)
    ).exists()


def test_seeded_events_are_found_by_the_auditor_search(model_version):
    _seed(events=300, outputs=50)

    created = audit_search(action=AuditAction.JOB_CREATED, limit=1000)
    by_user = audit_search(actor="scale-user-00000", limit=1000)

    assert len(created.events) == 50
    assert by_user.events and {e.actor_username for e in by_user.events} == {"scale-user-00000"}
    assert [e.sequence for e in created.events] == sorted(e.sequence for e in created.events)


def test_event_times_rise_with_the_sequence(model_version):
    _seed("--since=2023-01-01T00:00:00Z", "--until=2024-01-01T00:00:00Z", events=200, outputs=10)

    times = list(
        AuditEvent.objects.filter(actor_username__startswith="scale-user-", sequence__gt=0)
        .order_by("sequence")
        .values_list("occurred_at", flat=True)
    )
    assert times == sorted(times)
    assert times[0].year == 2023


def test_too_few_events_for_the_jobs_names_the_option(model_version):
    with pytest.raises(CommandError, match="--events must be at least 3 x --outputs"):
        _seed(events=100, outputs=40)
    assert not GenerationJob.objects.exists()


def test_an_unknown_model_is_refused(model_version):
    with pytest.raises(CommandError, match="--model"):
        _seed(events=10, outputs=1, model="nope@production")


@pytest.mark.parametrize("name", ["varclip", "production", "platform_db"])
def test_a_database_not_named_for_benchmarks_is_refused(name):
    with pytest.raises(CommandError, match="refusing to seed"):
        check_database_name(name)


def test_benchmark_and_test_databases_are_accepted():
    check_database_name("varclip_bench")
    check_database_name(str(connection.settings_dict["NAME"]))


@pytest.mark.parametrize("newest_first", [False, True])
def test_keyset_pages_of_a_filtered_seeded_trail_are_the_whole_result_in_order(
    model_version, newest_first
):
    _seed(events=600, outputs=40)
    expected = list(
        AuditEvent.objects.filter(action="webhook.delivered")
        .order_by("-sequence" if newest_first else "sequence")
        .values_list("sequence", flat=True)
    )

    walked, after = [], None
    while True:
        page = audit_search(
            action="webhook.delivered", limit=17, after_sequence=after, newest_first=newest_first
        )
        walked += [event.sequence for event in page.events]
        if page.next_after_sequence is None:
            break
        after = page.next_after_sequence

    assert len(expected) > 17 * 3
    assert walked == expected
