"""Teams and requests from the command line, through the same services."""

import pytest
from django.core.management import CommandError, call_command

from governance.approvals.models import GenerationRequest, Team

pytestmark = pytest.mark.django_db


def test_create_team_adds_and_removes_members_with_audit(requester, outsider, audit_trail):
    call_command("create_team", "brand", "Brand marketing", "--add", "rita", "oscar")
    call_command("create_team", "brand", "--remove", "oscar")
    team = Team.objects.get(name="brand")
    assert [m.user.username for m in team.memberships.all()] == ["rita"]
    assert [p["username"] for _, p in audit_trail("team.member_added")] == ["rita", "oscar"]
    assert [p["username"] for _, p in audit_trail("team.member_removed")] == ["oscar"]


def test_only_an_administrator_manages_teams(requester):
    with pytest.raises(CommandError, match="creating a team needs the administrator role"):
        call_command("create_team", "brand", "--by", "rita")


def test_submit_request_renders_and_queues_the_variations(
    team, template_version, capsys, audit_trail
):
    call_command(
        "submit_request", "shapes:1", "--by", "rita",
        "--var", "size=small", "--var", "colour=赤", "--var", "shape=star",
        "--variations", "2", "--seed", "4", "--seed", "5", "--language", "ja",
    )  # fmt: skip
    request = GenerationRequest.objects.get()
    assert request.caption == "a small red star, white background"
    assert sorted(request.jobs.values_list("seed", flat=True)) == [4, 5]
    assert f"request {request.pk}" in capsys.readouterr().out


def test_submit_request_names_the_bad_variable(team, template_version):
    with pytest.raises(CommandError, match=r"values\.colour"):
        call_command("submit_request", "shapes", "--by", "rita", "--var", "colour=green")
