"""Requesters see their team's requests only; only approved outputs leave the platform."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from rest_framework.test import APIClient

from generation.services import job_create
from governance.approvals.selectors import (
    downloadable_outputs,
    visible_job,
    visible_jobs,
    visible_outputs,
    visible_requests,
)
from governance.approvals.services import review_decide, team_member_add
from governance.roles import Role, role_grant, role_revoke

from .conftest import CHECKLIST, make_user

pytestmark = pytest.mark.django_db


def _client(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_team_members_see_their_teams_requests_and_nobody_else_does(
    output, other_team, outsider, auditor, reviewer, requester
):
    request = output.job.request
    tom = get_user_model().objects.get(username="tom")
    assert list(visible_requests(requester)) == [request]
    assert list(visible_requests(tom)) == list(visible_requests(outsider)) == []
    assert list(visible_requests(auditor)) == list(visible_requests(reviewer)) == [request]
    # a colleague who joins the team sees the team's requests and jobs
    team_member_add(team=request.team, user=tom, added_by=None)
    assert list(visible_requests(tom)) == [request]
    assert list(visible_jobs(tom)) == [output.job]
    assert list(visible_outputs(tom)) == [output]


def test_the_api_hides_other_teams_jobs_and_outputs(output, other_team):
    tom = _client(get_user_model().objects.get(username="tom"))
    assert tom.get(f"/api/v1/jobs/{output.job_id}/").status_code == 404
    assert tom.get(f"/api/v1/outputs/{output.pk}/").status_code == 404
    assert tom.get(f"/api/v1/outputs/{output.pk}/download/").status_code == 404


def test_one_job_is_found_by_exactly_the_rule_of_the_job_list(
    output, other_team, outsider, auditor, reviewer, requester
):
    tom = get_user_model().objects.get(username="tom")
    stella = get_user_model().objects.create_user("stella", is_staff=True)
    remy = make_user("remy", Role.AUDITOR)
    remy.is_active = False  # an inactive auditor keeps no role
    remy.save()
    lone = job_create(created_by=outsider, caption="a job of no request")
    users = [requester, tom, outsider, auditor, reviewer, stella, remy]
    assert [u.username for u in users if visible_job(u, output.job_id)] == [
        "rita", "audrey", "rory", "stella"
    ]  # fmt: skip
    assert [u.username for u in users if visible_job(u, lone.pk)] == [
        "oscar", "audrey", "rory", "stella"
    ]  # fmt: skip
    for user in [*users, AnonymousUser(), None]:
        for job in (output.job, lone):
            listed = visible_jobs(user).filter(pk=job.pk).first()
            assert visible_job(user, job.pk) == listed, (user, job.caption)


def test_a_revoked_role_takes_effect_at_the_next_request(output, other_team):
    tom = get_user_model().objects.get(username="tom")
    role_grant(user=tom, role=Role.AUDITOR, granted_by=None)
    client = _client(tom)  # one user object serves every request of this client
    assert client.get(f"/api/v1/jobs/{output.job_id}/").status_code == 200
    assert client.get(f"/api/v1/outputs/{output.pk}/").status_code == 200
    again = get_user_model().objects.get(pk=tom.pk)
    role_revoke(user=again, role=Role.AUDITOR, revoked_by=None)
    assert client.get(f"/api/v1/jobs/{output.job_id}/").status_code == 404
    assert client.get(f"/api/v1/outputs/{output.pk}/").status_code == 404


def test_requesters_download_only_approved_outputs(output, requester, reviewer):
    rita = _client(requester)
    assert rita.get(f"/api/v1/outputs/{output.pk}/").status_code == 200
    refused = rita.get(f"/api/v1/outputs/{output.pk}/download/")
    assert refused.status_code == 403
    assert "only approved outputs are released" in refused.json()["error"]["message"]
    assert list(downloadable_outputs(requester)) == []
    review_decide(output=output, reviewer=reviewer, decision="approved", checklist=CHECKLIST)
    assert rita.get(f"/api/v1/outputs/{output.pk}/download/").status_code == 302
    assert list(downloadable_outputs(requester)) == [output]


def test_a_rejected_output_is_never_released_to_the_requester(output, requester, reviewer):
    review_decide(output=output, reviewer=reviewer, decision="rejected", comment="no")
    assert _client(requester).get(f"/api/v1/outputs/{output.pk}/download/").status_code == 403


def test_auditors_read_and_download_everything_but_cannot_decide(output, auditor):
    from governance.errors import RoleRequired

    assert list(downloadable_outputs(auditor)) == [output]
    assert _client(auditor).get(f"/api/v1/outputs/{output.pk}/download/").status_code == 302
    with pytest.raises(RoleRequired):
        review_decide(output=output, reviewer=auditor, decision="approved", checklist=CHECKLIST)
