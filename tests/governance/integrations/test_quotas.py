"""Per-team daily image quotas, claimed when a request is made."""

from datetime import timedelta

import pytest
from django.utils import timezone

from generation.models import GenerationJob
from governance.approvals.models import GenerationRequest
from governance.audit.verification import audit_verify
from governance.errors import RoleRequired
from governance.integrations.services import QuotaExceeded, quota_status, team_quota_set

pytestmark = pytest.mark.django_db


def test_a_request_beyond_the_quota_is_refused_with_what_remains(team, submit):
    team_quota_set(team=team, daily_images=4, by=None)
    submit(variations=3)
    with pytest.raises(QuotaExceeded) as refused:
        submit(variations=2)
    assert (refused.value.limit, refused.value.used, refused.value.remaining) == (4, 3, 1)
    assert refused.value.resets_at == timezone.localtime().replace(
        hour=0, minute=0, second=0, microsecond=0
    ) + timedelta(days=1)
    assert GenerationJob.objects.count() == 3
    submit(variations=1)
    assert quota_status(team=team).remaining == 0


def test_a_refusal_is_audited_while_the_refused_request_leaves_nothing(
    team, requester, submit, audit_trail
):
    team_quota_set(team=team, daily_images=2, by=None)
    first = submit(variations=2)
    with pytest.raises(QuotaExceeded) as refused:
        submit(variations=3)
    ((actor, payload),) = audit_trail("quota.exceeded", target_id=team.pk)
    assert actor == requester.username
    assert payload == {
        "team": "brand",
        "template_version": str(first.template_version),
        "requested": 3,
        "limit": 2,
        "used": 2,
        "resets_at": refused.value.resets_at.isoformat(),
    }
    # The refused request itself was rolled back: no request, jobs or request.created event.
    assert GenerationRequest.objects.count() == 1
    assert GenerationJob.objects.count() == 2
    assert len(audit_trail("request.created")) == 1
    assert audit_verify().ok


def test_yesterdays_images_do_not_count(team, submit):
    team_quota_set(team=team, daily_images=2, by=None)
    submit(variations=2)
    GenerationJob.objects.update(created_at=timezone.now() - timedelta(days=1))
    submit(variations=2)


def test_the_default_quota_applies_to_teams_without_their_own(team, submit, settings):
    settings.QUOTA_DEFAULT_DAILY_IMAGES = 1
    with pytest.raises(QuotaExceeded):
        submit(variations=2)
    team_quota_set(team=team, daily_images=None, by=None)
    assert quota_status(team=team).limit == 1


def test_quotas_are_set_by_administrators_and_audited(team, requester, audit_trail):
    with pytest.raises(RoleRequired):
        team_quota_set(team=team, daily_images=3, by=requester)
    team_quota_set(team=team, daily_images=3, by=None)
    team_quota_set(team=team, daily_images=5, by=None)
    assert [payload for _, payload in audit_trail("quota.set")] == [
        {"team": "brand", "from": None, "to": 3},
        {"team": "brand", "from": 3, "to": 5},
    ]
