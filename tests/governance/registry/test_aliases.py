"""Aliases: movable pointers with a full history; production moves need a second person."""

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, transaction

from governance.errors import InvalidTransition, RoleRequired, SelfApprovalForbidden
from governance.registry.models import AliasMove, AliasMoveRequest, AliasMoveRequestStatus
from governance.registry.services import (
    RegistryError,
    alias_history,
    alias_move,
    alias_move_approve,
    alias_move_reject,
    alias_move_request,
    model_version_register,
    model_version_resolve,
    sources_from_directory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def versions(tiny_checkpoint_dir, registrant):
    """shapes:1 and shapes:2, both registered by reggie; production on shapes:1."""
    registered = [
        model_version_register(
            model_name="shapes",
            sources=sources_from_directory(tiny_checkpoint_dir),
            registered_by=registrant,
        )
        for _ in range(2)
    ]
    alias_move(model_name="shapes", alias="production", version=1, moved_by=None, reason="setup")
    return registered


def request_v2(requester, reason="v2 wins the evaluation"):
    return alias_move_request(
        model_name="shapes", alias="production", version=2, requested_by=requester, reason=reason
    )


def test_an_unprotected_alias_moves_directly_and_every_move_is_kept(versions, model_admin):
    alias_move(model_name="shapes", alias="candidate", version=1, moved_by=model_admin, reason="a")
    alias_move(model_name="shapes", alias="candidate", version=2, moved_by=model_admin, reason="b")
    assert str(model_version_resolve("shapes@candidate")) == "shapes:2"
    history = [
        (str(m.from_version), str(m.to_version), m.moved_by.username, m.reason)
        for m in alias_history(model_name="shapes", alias="candidate")
    ]
    assert history == [
        ("shapes:1", "shapes:2", "mia", "b"),
        ("None", "shapes:1", "mia", "a"),
    ]


def test_only_model_admins_move_or_ask_to_move_an_alias(versions, outsider, reviewer):
    # The web and API check the role too; the services check it for every other way in.
    for person in (outsider, reviewer):
        with pytest.raises(RoleRequired, match="moving an alias needs the model_admin role"):
            alias_move(
                model_name="shapes", alias="candidate", version=2, moved_by=person, reason="x"
            )
        with pytest.raises(RoleRequired, match="requesting an alias move needs the model_admin"):
            request_v2(person)
    assert not AliasMove.objects.filter(alias__name="candidate").exists()
    assert not AliasMoveRequest.objects.exists()


def test_production_cannot_be_moved_directly(versions, model_admin):
    with pytest.raises(RegistryError, match="moves only through an approved request"):
        alias_move(
            model_name="shapes", alias="production", version=2, moved_by=model_admin, reason="x"
        )
    with pytest.raises(RegistryError, match="moves only through an approved request"):
        alias_move(model_name="shapes", alias="production", version=2, moved_by=None, reason="x")
    assert str(model_version_resolve("shapes@production")) == "shapes:1"


def test_a_model_admin_who_did_not_register_the_version_approves_the_move(
    versions, registrant, model_admin, audit_trail
):
    move_request = request_v2(registrant)
    assert str(model_version_resolve("shapes@production")) == "shapes:1"
    move = alias_move_approve(move_request=move_request, approved_by=model_admin)
    move_request.refresh_from_db()
    assert move_request.status == AliasMoveRequestStatus.APPROVED
    assert (str(move.from_version), str(move.to_version), move.moved_by) == (
        "shapes:1",
        "shapes:2",
        model_admin,
    )
    assert str(model_version_resolve("shapes@production")) == "shapes:2"
    assert audit_trail("registry.alias_move_requested", move_request.pk) == [
        (
            "reggie",
            {
                "model": "shapes",
                "alias": "production",
                "from": "shapes:1",
                "to": "shapes:2",
                "reason": "v2 wins the evaluation",
            },
        )
    ]
    (moved,) = [e for e in audit_trail("registry.alias_moved") if e[1]["move"] == move.pk]
    assert moved[0] == "mia"
    assert (moved[1]["from"], moved[1]["to"], moved[1]["requested_by"]) == (
        "shapes:1",
        "shapes:2",
        "reggie",
    )


def test_the_person_who_registered_the_version_cannot_approve_moving_production_to_it(
    versions, registrant, model_admin, audit_trail
):
    move_request = request_v2(model_admin)
    with pytest.raises(SelfApprovalForbidden, match="reggie registered shapes:2"):
        alias_move_approve(move_request=move_request, approved_by=registrant)
    move_request.refresh_from_db()
    assert move_request.status == AliasMoveRequestStatus.PENDING
    assert str(model_version_resolve("shapes@production")) == "shapes:1"
    assert [e for e in audit_trail("registry.alias_moved") if e[1]["to"] == "shapes:2"] == []


def test_the_requester_cannot_approve_their_own_move(versions, outsider, model_admin):
    from governance.roles import Role, role_grant

    role_grant(user=outsider, role=Role.MODEL_ADMIN, granted_by=None)
    move_request = request_v2(outsider)
    with pytest.raises(SelfApprovalForbidden, match="requested this move"):
        alias_move_approve(move_request=move_request, approved_by=outsider)


def test_approving_needs_the_model_admin_role(versions, registrant, outsider):
    with pytest.raises(RoleRequired, match="model_admin"):
        alias_move_approve(move_request=request_v2(registrant), approved_by=outsider)


def test_rollback_is_a_move_back_through_the_same_approval(versions, registrant, model_admin):
    alias_move_approve(move_request=request_v2(registrant), approved_by=model_admin)
    back = alias_move_request(
        model_name="shapes",
        alias="production",
        version=1,
        requested_by=registrant,
        reason="v2 draws stars badly",
    )
    alias_move_approve(move_request=back, approved_by=model_admin)
    assert str(model_version_resolve("shapes@production")) == "shapes:1"
    history = [
        (str(m.from_version), str(m.to_version), m.reason)
        for m in alias_history(model_name="shapes", alias="production")
    ]
    assert history == [
        ("shapes:2", "shapes:1", "v2 draws stars badly"),
        ("shapes:1", "shapes:2", "v2 wins the evaluation"),
        ("None", "shapes:1", "setup"),
    ]


def test_a_rejected_request_leaves_production_alone_and_cannot_be_approved_later(
    versions, registrant, model_admin, audit_trail
):
    move_request = request_v2(registrant)
    alias_move_reject(move_request=move_request, rejected_by=model_admin, reason="not evaluated")
    assert str(model_version_resolve("shapes@production")) == "shapes:1"
    assert audit_trail("registry.alias_move_rejected", move_request.pk)[0][1]["reason"] == (
        "not evaluated"
    )
    with pytest.raises(InvalidTransition, match="rejected; it cannot become approved"):
        alias_move_approve(move_request=move_request, approved_by=model_admin)


def test_a_request_made_before_production_moved_elsewhere_cannot_be_approved(
    tiny_checkpoint_dir, versions, registrant, model_admin
):
    model_version_register(
        model_name="shapes",
        sources=sources_from_directory(tiny_checkpoint_dir),
        registered_by=registrant,
    )
    stale = request_v2(registrant)
    fresh = alias_move_request(
        model_name="shapes", alias="production", version=3, requested_by=registrant, reason="v3"
    )
    alias_move_approve(move_request=fresh, approved_by=model_admin)
    with pytest.raises(RegistryError, match="has moved since request"):
        alias_move_approve(move_request=stale, approved_by=model_admin)


def test_a_job_keeps_the_version_its_alias_pointed_at_when_submitted(
    versions, registrant, model_admin, requester
):
    from generation.services import job_create

    job = job_create(
        created_by=requester, caption="a red star", model_reference="shapes@production"
    )
    alias_move_approve(move_request=request_v2(registrant), approved_by=model_admin)
    job.refresh_from_db()
    assert str(job.model_version) == "shapes:1"


def test_alias_history_cannot_be_rewritten_even_bypassing_the_model(versions):
    with pytest.raises(DatabaseError), transaction.atomic():
        AliasMove.objects.update(reason="nothing to see")


def test_the_commands_request_approve_and_show_a_production_move(
    versions, registrant, model_admin, capsys
):
    call_command("move_alias", "shapes", "production", "2", "--by", "reggie", "--reason", "eval")
    out = capsys.readouterr().out
    request_id = out.split("#")[1].split(":")[0]
    with pytest.raises(CommandError, match="reggie registered shapes:2"):
        call_command("approve_alias_move", request_id, "--by", "reggie")
    call_command("approve_alias_move", request_id, "--by", "mia")
    call_command("show_alias_history", "shapes@production")
    out = capsys.readouterr().out
    assert "approved: shapes@production shapes:1 -> shapes:2" in out
    assert "mia (requested by reggie): shapes:1 -> shapes:2  because: eval" in out


def test_the_move_alias_command_moves_an_unprotected_alias_at_once(
    versions, model_admin, outsider, capsys
):
    call_command("move_alias", "shapes", "candidate", "2", "--by", "mia", "--reason", "try")
    assert "shapes@candidate -> shapes:2" in capsys.readouterr().out
    with pytest.raises(CommandError, match="no model version shapes:9"):
        call_command("move_alias", "shapes", "candidate", "9", "--by", "mia", "--reason", "x")
    with pytest.raises(CommandError, match="needs the model_admin role, which oscar"):
        call_command("move_alias", "shapes", "candidate", "1", "--by", "oscar", "--reason", "x")
    assert str(model_version_resolve("shapes@candidate")) == "shapes:2"


def test_registering_with_the_production_alias_places_it_once_then_only_requests_it(
    tiny_checkpoint_dir, registrant, capsys
):
    from governance.registry.models import ModelVersion

    def register(*extra):
        call_command(
            "register_model_version", "--name", "fresh", "--dir", str(tiny_checkpoint_dir),
            "--alias", "production", *extra,
        )  # fmt: skip

    register()
    assert str(model_version_resolve("fresh@production")) == "fresh:1"
    with pytest.raises(CommandError, match="moves only through an approved request"):
        register()
    assert ModelVersion.objects.filter(model__name="fresh").count() == 1
    register("--by", "reggie")
    move_request = AliasMoveRequest.objects.get()
    assert (str(move_request.to_version), move_request.requested_by) == ("fresh:2", registrant)
    assert "as move request #" in capsys.readouterr().out
    assert str(model_version_resolve("fresh@production")) == "fresh:1"


def test_the_registrant_cannot_approve_a_production_move_from_the_admin(
    versions, registrant, model_admin
):
    from django.contrib.messages import get_messages
    from django.test import Client
    from django.urls import reverse

    move_request = request_v2(model_admin)
    registrant.is_staff = registrant.is_superuser = True
    registrant.save()
    client = Client()
    client.force_login(registrant)
    response = client.post(
        reverse("admin:registry_aliasmoverequest_changelist"),
        {"action": "approve_selected", "_selected_action": [move_request.pk]},
    )
    (message,) = [str(m) for m in get_messages(response.wsgi_request)]
    assert "reggie registered shapes:2 and cannot approve" in message
    assert str(model_version_resolve("shapes@production")) == "shapes:1"
