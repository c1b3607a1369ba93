"""The admin goes through the same services, so separation of duties holds there too."""

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from governance.captions.models import LintTerm, TemplateStatus
from governance.captions.services import template_version_submit
from governance.roles import Role, role_grant

pytestmark = pytest.mark.django_db


def _admin_client(user):
    user.is_staff = user.is_superuser = True
    user.save()
    client = Client()
    client.force_login(user)
    return client


def test_an_author_cannot_publish_their_own_version_from_the_admin(draft, author, audit_trail):
    role_grant(user=author, role=Role.REVIEWER, granted_by=None)
    template_version_submit(version=draft, by=author)
    response = _admin_client(author).post(
        reverse("admin:captions_templateversion_changelist"),
        {"action": "publish_selected", "_selected_action": [draft.pk]},
    )
    assert response.status_code == 302
    messages = [str(m) for m in get_messages(response.wsgi_request)]
    assert messages == ["shapes v1: ada wrote or submitted shapes v1 and cannot approve it"]
    draft.refresh_from_db()
    assert draft.status == TemplateStatus.SUBMITTED
    assert audit_trail("template.version_published") == []


def test_a_reviewer_publishes_from_the_admin(draft, author, reviewer, audit_trail):
    template_version_submit(version=draft, by=author)
    _admin_client(reviewer).post(
        reverse("admin:captions_templateversion_changelist"),
        {"action": "publish_selected", "_selected_action": [draft.pk]},
    )
    draft.refresh_from_db()
    assert (draft.status, draft.published_by) == (TemplateStatus.PUBLISHED, reviewer)
    assert [actor for actor, _ in audit_trail("template.version_published")] == ["rory"]


def test_an_administrator_adds_a_banned_term_in_the_admin_through_the_service(
    administrator, audit_trail
):
    response = _admin_client(administrator).post(
        reverse("admin:captions_lintterm_add"),
        {"kind": "banned", "term": "cheap", "reason": "brand guidelines", "template": ""},
    )
    assert response.status_code == 302
    term = LintTerm.objects.get()
    assert (term.term, term.created_by, term.active) == ("cheap", administrator, True)
    assert [actor for actor, _ in audit_trail("lint_term.added", term.pk)] == ["adele"]


def test_the_term_list_is_closed_to_staff_without_the_administrator_role(reviewer):
    response = _admin_client(reviewer).get(reverse("admin:captions_lintterm_add"))
    assert response.status_code == 403
