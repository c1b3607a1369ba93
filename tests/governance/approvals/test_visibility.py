"""Requesters see their team's requests only; only approved outputs leave the platform."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from governance.approvals.selectors import (
    downloadable_outputs,
    visible_jobs,
    visible_outputs,
    visible_requests,
)
from governance.approvals.services import review_decide, team_member_add

from .conftest import CHECKLIST

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
