"""Retention: rejected outputs lose their image after N days, audited; holds stop it."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from generation.storage import ObjectMissing, get_store
from governance.approvals.lineage import output_lineage
from governance.approvals.retention import retention_purge
from governance.approvals.services import (
    request_legal_hold_release,
    request_legal_hold_set,
    review_decide,
)
from governance.errors import InvalidTransition, RoleRequired

from .conftest import CHECKLIST

pytestmark = pytest.mark.django_db

LATER = timedelta(days=31)


@pytest.fixture
def rejected(output, reviewer):
    review_decide(output=output, reviewer=reviewer, decision="rejected", comment="off-brand")
    return output


def test_a_rejected_output_past_retention_is_purged_its_row_and_lineage_kept(
    rejected, settings, audit_trail
):
    settings.RETENTION_REJECTED_DAYS = 30
    report = retention_purge(now=timezone.now() + LATER)
    assert report.purged == [str(rejected.pk)]
    assert report.objects_deleted == 1
    with pytest.raises(ObjectMissing):
        get_store().get(rejected.storage_key)
    rejected.refresh_from_db()
    assert rejected.purged_at is not None and rejected.object_deleted_at is not None
    ((actor, payload),) = audit_trail("retention.purged", rejected.pk)
    assert (actor, payload["sha256"], payload["retention_days"]) == ("", rejected.sha256, 30)
    lineage = output_lineage(output=rejected)
    assert lineage["retention"]["purged_at"] is not None
    assert [r["decision"] for r in lineage["reviews"]] == ["rejected"]


def test_a_recent_rejection_is_kept(rejected, settings):
    settings.RETENTION_REJECTED_DAYS = 30
    assert retention_purge(now=timezone.now() + timedelta(days=29)).purged == []
    assert get_store().get(rejected.storage_key)


def test_approved_outputs_are_never_purged(output, reviewer):
    review_decide(output=output, reviewer=reviewer, decision="approved", checklist=CHECKLIST)
    assert retention_purge(older_than_days=0, now=timezone.now() + LATER).purged == []
    assert get_store().get(output.storage_key)


def test_a_legal_hold_stops_the_purge_until_released(rejected, audit_trail):
    request = rejected.job.request
    request_legal_hold_set(request=request, by=None, reason="case 2024-17")
    report = retention_purge(older_than_days=30, now=timezone.now() + LATER)
    assert (report.purged, report.held) == ([], [str(rejected.pk)])
    assert get_store().get(rejected.storage_key)
    assert audit_trail("retention.purged") == []
    request_legal_hold_release(request=request, by=None, reason="case closed")
    assert retention_purge(older_than_days=30, now=timezone.now() + LATER).purged == [
        str(rejected.pk)
    ]
    assert [p["reason"] for _, p in audit_trail("request.legal_hold_set")] == ["case 2024-17"]
    assert [p["reason"] for _, p in audit_trail("request.legal_hold_released")] == ["case closed"]


def test_only_administrators_set_legal_holds_and_a_held_request_cannot_be_held_twice(
    output, reviewer
):
    with pytest.raises(RoleRequired):
        request_legal_hold_set(request=output.job.request, by=reviewer, reason="x")
    request_legal_hold_set(request=output.job.request, by=None, reason="x")
    with pytest.raises(InvalidTransition):
        request_legal_hold_set(request=output.job.request, by=None, reason="again")


def test_the_purge_command_and_the_periodic_task_run_the_same_purge(rejected, settings, capsys):
    from governance.approvals.tasks import purge_rejected_outputs

    settings.RETENTION_REJECTED_DAYS = 0
    call_command("set_legal_hold", str(rejected.job.request_id), "--reason", "hold")
    assert purge_rejected_outputs.apply().get() == {"purged": 0, "held": 1}
    call_command("set_legal_hold", str(rejected.job.request_id), "--reason", "go", "--release")
    call_command("purge_rejected")
    assert f"purged {rejected.pk}" in capsys.readouterr().out


def test_the_beat_schedule_runs_the_purge():
    from config.celery import app

    entries = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert "governance.approvals.tasks.purge_rejected_outputs" in entries
