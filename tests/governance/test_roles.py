"""Governance roles: Django groups, checked by the services, granted and revoked with audit."""

import json

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command

from governance.audit.models import AuditEvent
from governance.errors import GovernanceError, RoleRequired
from governance.roles import Role, role_grant, role_require, role_revoke, user_has_role

pytestmark = pytest.mark.django_db


def events(action):
    return [
        (e.actor_username, e.target_id, json.loads(e.payload_json))
        for e in AuditEvent.objects.filter(action=action).order_by("sequence")
    ]


def test_the_migrations_create_one_group_per_role():
    names = set(Group.objects.values_list("name", flat=True))
    assert {"requester", "reviewer", "auditor", "model_admin", "administrator"} <= names


def test_granting_a_role_gives_it_and_is_audited_with_the_granting_administrator(
    requester, outsider
):
    role_grant(user=outsider, role=Role.ADMINISTRATOR, granted_by=None)
    assert role_grant(user=requester, role="reviewer", granted_by=outsider) is True
    assert user_has_role(requester, Role.REVIEWER)
    assert not user_has_role(requester, Role.MODEL_ADMIN)
    assert events("role.granted")[-1] == (
        "oscar",
        str(requester.pk),
        {"username": "rita", "role": "reviewer"},
    )


def test_granting_a_held_role_changes_nothing(requester):
    role_grant(user=requester, role=Role.AUDITOR, granted_by=None)
    assert role_grant(user=requester, role=Role.AUDITOR, granted_by=None) is False
    assert len(events("role.granted")) == 1


def test_only_an_administrator_grants_roles(requester, outsider):
    with pytest.raises(RoleRequired, match="granting a role needs the administrator role"):
        role_grant(user=outsider, role=Role.MODEL_ADMIN, granted_by=requester)
    assert not user_has_role(outsider, Role.MODEL_ADMIN)
    assert events("role.granted") == []


def test_revoking_takes_the_role_away_and_is_audited(requester):
    role_grant(user=requester, role=Role.REVIEWER, granted_by=None)
    assert role_revoke(user=requester, role=Role.REVIEWER, revoked_by=None) is True
    assert not user_has_role(requester, Role.REVIEWER)
    assert events("role.revoked") == [
        ("", str(requester.pk), {"username": "rita", "role": "reviewer"})
    ]


def test_an_inactive_user_holds_no_role_and_a_superuser_is_not_exempt(requester, outsider):
    role_grant(user=requester, role=Role.REVIEWER, granted_by=None)
    requester.is_active = False
    requester.save()
    assert not user_has_role(requester, Role.REVIEWER)
    outsider.is_superuser = True
    outsider.save()
    with pytest.raises(RoleRequired):
        role_require(outsider, Role.REVIEWER, action="reviewing")


def test_an_unknown_role_is_refused_naming_the_roles(requester):
    with pytest.raises(GovernanceError, match="unknown role 'boss'; roles are requester"):
        role_grant(user=requester, role="boss", granted_by=None)


def test_the_assign_role_command_grants_and_revokes(requester, capsys):
    call_command("assign_role", "rita", "model_admin")
    assert user_has_role(requester, Role.MODEL_ADMIN)
    call_command("assign_role", "rita", "model_admin", "--revoke")
    assert not user_has_role(requester, Role.MODEL_ADMIN)
    assert capsys.readouterr().out.splitlines() == [
        "rita: model_admin granted",
        "rita: model_admin revoked",
    ]
    with pytest.raises(CommandError, match="no user 'nobody'"):
        call_command("assign_role", "nobody", "reviewer")


def test_inside_one_request_roles_are_read_once_and_a_grant_is_seen_at_once(
    requester, django_assert_num_queries
):
    from governance.roles import roles_memoised

    with roles_memoised():
        with django_assert_num_queries(1):
            assert not user_has_role(requester, Role.REVIEWER)
            assert not user_has_role(requester, Role.AUDITOR)
            assert not user_has_role(requester, Role.MODEL_ADMIN)
        role_grant(user=requester, role=Role.REVIEWER, granted_by=None)
        assert user_has_role(requester, Role.REVIEWER)
        role_revoke(user=requester, role=Role.REVIEWER, revoked_by=None)
        assert not user_has_role(requester, Role.REVIEWER)
    # Outside a request nothing is remembered: every check reads the database.
    with django_assert_num_queries(2):
        assert not user_has_role(requester, Role.REVIEWER)
        assert not user_has_role(requester, Role.AUDITOR)


def test_the_roles_of_a_request_are_forgotten_when_it_ends(requester):
    from django.contrib.auth.models import Group
    from django.test import RequestFactory

    from config.middleware import RolesMemoMiddleware

    def view(request):  # a grant made behind the memo's back, mid-request
        seen = user_has_role(requester, Role.AUDITOR)
        requester.groups.add(Group.objects.get(name=Role.AUDITOR.value))
        return seen, user_has_role(requester, Role.AUDITOR)

    middleware = RolesMemoMiddleware(view)
    assert middleware(RequestFactory().get("/")) == (False, False)
    assert middleware(RequestFactory().get("/")) == (True, True)
