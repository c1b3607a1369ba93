"""Nobody reviews an output of their own request, whichever door they use.

The service itself is tested in test_review.py; here the Django admin and the command.
(Template publication and production alias moves obey the same rule: see the captions and
registry tests.)
"""

import pytest
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from generation.models import ReviewStatus
from governance.approvals.models import ReviewDecision
from governance.roles import Role, role_grant

from .conftest import CHECKLIST

pytestmark = pytest.mark.django_db

QUEUE = "admin:approvals_outputreview_changelist"


def _staff_client(user):
    user.is_staff = True
    user.save()
    client = Client()
    client.force_login(user)
    return client


def _approve_in_admin(client, output, ticks, **extra):
    return client.post(
        reverse(QUEUE),
        {
            "action": "approve_selected",
            "_selected_action": [output.pk],
            "apply": "1",
            "checklist": ticks,
            **extra,
        },
    )


def test_the_admin_review_form_lists_the_checklist_of_the_selected_outputs(output, reviewer):
    response = _staff_client(reviewer).post(
        reverse(QUEUE), {"action": "approve_selected", "_selected_action": [output.pk]}
    )
    assert response.status_code == 200
    for item in CHECKLIST:
        assert item.replace("'", "&#x27;") in response.content.decode()


def test_a_requester_who_reviews_cannot_approve_their_own_output_in_the_admin(
    output, requester, audit_trail
):
    role_grant(user=requester, role=Role.REVIEWER, granted_by=None)
    response = _approve_in_admin(_staff_client(requester), output, CHECKLIST)
    assert response.status_code == 302
    messages = [str(m) for m in get_messages(response.wsgi_request)]
    assert messages == [f"rita requested output {output.pk} and cannot review it"]
    output.refresh_from_db()
    assert output.review_status == ReviewStatus.PENDING
    assert audit_trail("review.approved") == []


def test_a_reviewer_approves_in_the_admin_through_the_service(output, reviewer, audit_trail):
    response = _approve_in_admin(_staff_client(reviewer), output, CHECKLIST)
    assert [str(m) for m in get_messages(response.wsgi_request)] == ["1 output(s) approved"]
    output.refresh_from_db()
    assert output.review_status == ReviewStatus.APPROVED
    assert [actor for actor, _ in audit_trail("review.approved", output.pk)] == ["rory"]


def test_the_admin_refuses_an_approval_with_an_unticked_item(output, reviewer):
    response = _approve_in_admin(_staff_client(reviewer), output, CHECKLIST[:1])
    (message,) = get_messages(response.wsgi_request)
    assert "not ticked" in str(message)
    assert ReviewDecision.objects.count() == 0


def test_a_reviewer_rejects_in_the_admin_with_a_comment(output, reviewer, audit_trail):
    _staff_client(reviewer).post(
        reverse(QUEUE),
        {"action": "reject_selected", "_selected_action": [output.pk], "apply": "1",
         "comment": "colour is off"},
    )  # fmt: skip
    output.refresh_from_db()
    assert output.review_status == ReviewStatus.REJECTED
    assert audit_trail("review.rejected", output.pk)[0][1]["comment"] == "colour is off"


def test_a_requester_who_reviews_cannot_approve_their_own_output_by_command(
    output, requester, audit_trail
):
    role_grant(user=requester, role=Role.REVIEWER, granted_by=None)
    args = ["review_output", str(output.pk), "--by", "rita", "--approve"]
    ticks = [arg for item in CHECKLIST for arg in ("--tick", item)]
    with pytest.raises(CommandError, match=r"rita requested output .* cannot review it"):
        call_command(*args, *ticks)
    assert audit_trail("review.approved") == []


def test_a_reviewer_approves_and_rejects_by_command(output, reviewer, capsys, audit_trail):
    ticks = [arg for item in CHECKLIST for arg in ("--tick", item)]
    call_command("review_output", str(output.pk), "--by", "rory", "--approve", *ticks)
    assert f"output {output.pk} approved by rory" in capsys.readouterr().out
    call_command("review_output", str(output.pk), "--by", "rory", "--reject", "recalled")
    output.refresh_from_db()
    assert output.review_status == ReviewStatus.REJECTED
    assert [a for a, _ in audit_trail("review.rejected", output.pk)] == ["rory"]


def test_request_changes_by_the_requester_is_refused_by_command(output, requester):
    role_grant(user=requester, role=Role.REVIEWER, granted_by=None)
    request_id = str(output.job.request_id)
    with pytest.raises(CommandError, match="cannot review it"):
        call_command("request_changes", request_id, "--by", "rita", "--comment", "again")
