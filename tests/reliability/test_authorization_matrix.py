"""Who may read and write what through the API: every role against every endpoint.

Requester A (rita, team brand) owns the objects; requester B (tom, team retail) is the
other team. A write is judged by the database afterwards, not by the status code alone.

Self-approval is refused at every door: the API (tests/web/test_api.py), the review page
(tests/web/test_pages.py), the Django admin and the ``review_output`` command
(tests/governance/approvals/test_separation_of_duties.py) and the browser journey
(tests/browser/test_journey.py) cover outputs of a request; the tests at the end of this
file cover the other path into review, an output of a job a reviewer submitted directly.
"""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from generation.models import GenerationJob, Output, ReviewStatus
from generation.services import job_execute
from governance.approvals.models import GenerationRequest, ReviewDecision
from governance.audit.models import AuditEvent
from governance.integrations.models import TeamQuota, WebhookEndpoint
from governance.registry.models import AliasMoveRequest
from governance.registry.services import model_version_register, sources_from_directory
from governance.roles import Role
from tests.governance.approvals.conftest import (  # noqa: F401  (fixtures)
    CHECKLIST,
    VALUES,
    _fresh_model_cache,
    _no_dispatch,
    generate,
    make_user,
    other_team,
    output,
    submit,
    team,
    template_version,
)

pytestmark = pytest.mark.django_db

PERSONAS = ["anonymous", "requester_a", "requester_b", "reviewer", "auditor", "model_admin",
            "administrator"]  # fmt: skip


@pytest.fixture
def world(output, other_team, requester, tiny_checkpoint_dir):  # noqa: F811
    """Rita's pending output (team brand) and one signed-in client per persona."""
    # demo:2, so that a production move has somewhere to go.
    model_version_register(
        model_name="demo", sources=sources_from_directory(tiny_checkpoint_dir), registered_by=None
    )
    users = {
        "requester_a": requester,
        "requester_b": get_user_model().objects.get(username="tom"),
        "reviewer": make_user("rory", Role.REVIEWER),
        "auditor": make_user("audrey", Role.AUDITOR),
        "model_admin": make_user("mia", Role.MODEL_ADMIN),
        "administrator": make_user("ada-admin", Role.ADMINISTRATOR),
    }
    clients = {"anonymous": APIClient()}
    for name, user in users.items():
        clients[name] = APIClient()
        clients[name].force_authenticate(user)
    ids = {"output": output.pk, "job": output.job_id, "request": output.job.request_id}
    return clients, ids, output


def _row(*statuses):
    return dict(zip(PERSONAS, statuses, strict=True))


# Rita's request, job and output are read by her team and by those who see everything
# (reviewers and auditors); anyone else gets a 404, so existence does not leak.
TEAM_A_OBJECT = _row(401, 200, 404, 200, 200, 404, 404)
EVERY_USER = _row(401, 200, 200, 200, 200, 200, 200)
READS = {
    "/api/v1/me/": EVERY_USER,
    "/api/v1/templates/": EVERY_USER,
    "/api/v1/requests/": EVERY_USER,
    "/api/v1/jobs/": EVERY_USER,
    "/api/v1/audit/outputs/": EVERY_USER,
    "/api/v1/requests/{request}/": TEAM_A_OBJECT,
    "/api/v1/jobs/{job}/": TEAM_A_OBJECT,
    "/api/v1/outputs/{output}/": TEAM_A_OBJECT,
    "/api/v1/outputs/{output}/lineage/": TEAM_A_OBJECT,
    "/api/v1/reviews/queue/": _row(401, 403, 403, 200, 403, 403, 403),
    "/api/v1/models/": _row(401, 403, 403, 403, 200, 200, 403),
    "/api/v1/models/demo/": _row(401, 403, 403, 403, 200, 200, 403),
    "/api/v1/alias-moves/": _row(401, 403, 403, 403, 200, 200, 403),
    "/api/v1/audit/events/": _row(401, 403, 403, 403, 200, 403, 403),
    "/api/v1/audit/chain/": _row(401, 403, 403, 403, 200, 403, 403),
    "/api/v1/dashboard/": _row(401, 403, 403, 200, 200, 200, 200),
    "/api/v1/webhooks/": _row(401, 403, 403, 403, 403, 403, 200),
    "/api/v1/quotas/": _row(401, 403, 403, 403, 403, 403, 200),
}
# Which personas find rita's object in a list.
LISTED = {"requester_a", "reviewer", "auditor"}
LISTS = {
    "/api/v1/requests/": "request",
    "/api/v1/jobs/": "job",
    "/api/v1/audit/outputs/": "output",
}


def test_every_read_answers_each_persona_as_the_matrix_says(world):
    clients, ids, _ = world
    answers = {}
    for persona in PERSONAS:
        for path in READS:
            response = clients[persona].get(path.format(**ids))
            answers[path, persona] = response.status_code
            if path in LISTS and response.status_code == 200:
                body = response.json()
                rows = body["results"] if isinstance(body, dict) else body
                listed = str(ids[LISTS[path]]) in {str(row["id"]) for row in rows}
                assert listed == (persona in LISTED), (path, persona)
    assert answers == {(path, p): row[p] for path, row in READS.items() for p in PERSONAS}


def _approve(client, ids):
    return client.post(
        f"/api/v1/outputs/{ids['output']}/review/",
        {"decision": "approved", "checklist": CHECKLIST},
        format="json",
    )


def _request_changes(client, ids):
    return client.post(
        f"/api/v1/requests/{ids['request']}/changes/", {"comment": "bluer"}, format="json"
    )


def _submit_to_team_a(client, ids):
    request = GenerationRequest.objects.get(pk=ids["request"])
    return client.post(
        "/api/v1/requests/",
        {"template_version": request.template_version_id, "values": VALUES, "team": "brand"},
        format="json",
    )


def _move_alias(client, ids):
    return client.post(
        "/api/v1/alias-moves/",
        {"model": "demo", "alias": "production", "version": 2, "reason": "matrix"},
        format="json",
    )


def _set_quota(client, ids):
    return client.post("/api/v1/quotas/", {"team": "brand", "daily_images": 3}, format="json")


def _add_webhook(client, ids):
    return client.post(
        "/api/v1/webhooks/",
        {"url": "https://hooks.example.com/x", "events": ["review.approved"]},
        format="json",
    )


# (write, expected status per persona, what the database holds afterwards when it happened)
WRITES = {
    "approve rita's output": (
        _approve,
        _row(401, 403, 404, 201, 403, 404, 404),
        lambda ids: Output.objects.get(pk=ids["output"]).review_status == ReviewStatus.APPROVED,
    ),
    "request changes to rita's request": (
        _request_changes,
        _row(401, 403, 404, 201, 403, 404, 404),
        lambda ids: GenerationRequest.objects.filter(parent_id=ids["request"]).exists(),
    ),
    "submit a request for team A": (
        _submit_to_team_a,
        # tom is refused on the team field (400 naming it); the others lack the role.
        _row(401, 201, 400, 403, 403, 403, 403),
        lambda ids: GenerationRequest.objects.count() > 1,
    ),
    "ask to move demo@production": (
        _move_alias,
        _row(401, 403, 403, 403, 403, 201, 403),
        lambda ids: AliasMoveRequest.objects.exists(),
    ),
    "set team A's quota": (
        _set_quota,
        _row(401, 403, 403, 403, 403, 403, 200),
        lambda ids: TeamQuota.objects.filter(team__name="brand", daily_images=3).exists(),
    ),
    "add a webhook": (
        _add_webhook,
        _row(401, 403, 403, 403, 403, 403, 201),
        lambda ids: WebhookEndpoint.objects.exists(),
    ),
}
MATRIX_SIZE = len(PERSONAS) * (len(READS) + len(WRITES))


@pytest.mark.parametrize("write", list(WRITES))
def test_every_write_is_allowed_or_refused_as_the_matrix_says_and_the_database_agrees(world, write):
    clients, ids, _ = world
    send, expected, happened = WRITES[write]
    # The refused personas go first, so the database must still be untouched after each.
    for persona in sorted(PERSONAS, key=lambda p: expected[p] in (200, 201)):
        response = send(clients[persona], ids)
        assert response.status_code == expected[persona], (persona, response.content)
        assert happened(ids) == (expected[persona] in (200, 201)), persona


def test_read_only_fields_cannot_be_smuggled_into_a_write(world):
    clients, ids, made = world
    request = GenerationRequest.objects.get(pk=ids["request"])
    submitted = clients["requester_a"].post(
        "/api/v1/requests/",
        {
            "template_version": request.template_version_id,
            "values": VALUES,
            "requested_by": "tom",
        },
        format="json",
    )
    assert submitted.status_code == 400
    assert "requested_by" in submitted.json()["error"]["fields"]
    decided = clients["reviewer"].post(
        f"/api/v1/outputs/{ids['output']}/review/",
        {"decision": "rejected", "comment": "no", "reviewer": "audrey"},
        format="json",
    )
    assert decided.status_code == 400
    assert GenerationRequest.objects.count() == 1
    assert not ReviewDecision.objects.exists()
    made.refresh_from_db()
    assert made.review_status == ReviewStatus.PENDING


# --- self-approval of a directly submitted job, at every door ------------------------------


@pytest.fixture
def own_job_output(model_version, s3_bucket):
    """An output of a job that rory, a reviewer, submitted himself through the API."""
    rory = make_user("rory", Role.REVIEWER, Role.REQUESTER)
    client = APIClient()
    client.force_authenticate(rory)
    created = client.post("/api/v1/jobs/", {"caption": "a red circle", "seed": 1}, format="json")
    assert created.status_code == 201, created.content
    job_execute(job_id=created.json()["id"], worker="test", max_batch=8)
    return rory, Output.objects.get(job_id=created.json()["id"])


def _by_api(user, made):
    client = APIClient()
    client.force_authenticate(user)
    response = client.post(
        f"/api/v1/outputs/{made.pk}/review/", {"decision": "approved"}, format="json"
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "self_approval_forbidden"


def _by_page(user, made):
    client = Client()
    client.force_login(user)
    response = client.post(f"/review/{made.pk}/", {"action": "approve"})
    assert response.status_code == 403


def _by_admin(user, made):
    user.is_staff = True
    user.save()
    client = Client()
    client.force_login(user)
    client.post(
        reverse("admin:approvals_outputreview_changelist"),
        {"action": "approve_selected", "_selected_action": [made.pk], "apply": "1"},
    )


def _by_command(user, made):
    with pytest.raises(CommandError, match="cannot review"):
        call_command("review_output", str(made.pk), "--by", user.username, "--approve")


@pytest.mark.parametrize("door", [_by_api, _by_page, _by_admin, _by_command])
def test_a_reviewer_cannot_approve_the_output_of_their_own_job(own_job_output, door):
    rory, made = own_job_output
    door(rory, made)
    made.refresh_from_db()
    assert made.review_status == ReviewStatus.PENDING
    assert not ReviewDecision.objects.filter(output=made).exists()
    assert not AuditEvent.objects.filter(action="review.approved").exists()
    assert GenerationJob.objects.filter(pk=made.job_id, created_by=rory).exists()
