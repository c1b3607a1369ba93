"""The pages: who may open what, forms that call the services, refusals shown, text escaped."""

import pytest
from django.test import Client
from django.utils.html import escape

from generation.models import ReviewStatus
from governance.approvals.models import GenerationRequest
from governance.registry.models import AliasMoveRequest
from governance.roles import Role, role_grant
from tests.web.conftest import CHECKLIST, make_user

pytestmark = pytest.mark.django_db


def test_pages_need_a_signed_in_user(client):
    response = client.get("/requests/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


@pytest.mark.parametrize(
    "url",
    ["/review/", "/audit/", "/audit/events/", "/models/", "/dashboard/", "/integrations/"],
)
def test_role_pages_are_refused_to_a_plain_requester(client, requester, url):
    client.force_login(requester)
    response = client.get(url)
    assert response.status_code == 403
    assert "needs one of these roles" in response.content.decode()


def test_the_request_form_submits_a_request_and_shows_its_progress(
    client, requester, team, template_version
):
    client.force_login(requester)
    url = f"/templates/{template_version.pk}/new/"
    form = client.get(url).content.decode()
    assert 'data-lint-url="/api/v1/templates/' in form and 'name="shape"' in form
    response = client.post(
        url, {"size": "large", "colour": "red", "shape": "star", "variations": 2}
    )
    created = GenerationRequest.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/requests/{created.pk}/"
    assert created.variations == 2 and created.caption == "a large red star, white background"
    page = client.get(response["Location"]).content.decode()
    assert (
        page.count("<progress") == 2 and f'data-poll-url="/api/v1/requests/{created.pk}/"' in page
    )


def test_a_bad_value_is_shown_next_to_its_field(client, requester, team, template_version):
    client.force_login(requester)
    response = client.post(
        f"/templates/{template_version.pk}/new/",
        {"size": "large", "colour": "red", "variations": 1},
    )
    assert response.status_code == 400
    assert "shape" in response.content.decode() and "must not be empty" in response.content.decode()
    assert GenerationRequest.objects.count() == 0


def test_the_quota_refusal_is_shown_with_what_remains(client, requester, team, template_version):
    from governance.integrations.services import team_quota_set

    team_quota_set(team=team, daily_images=1, by=None)
    client.force_login(requester)
    response = client.post(
        f"/templates/{template_version.pk}/new/",
        {"size": "large", "colour": "red", "shape": "star", "variations": 2},
    )
    assert response.status_code == 429
    page = response.content.decode()
    assert "daily image quota" in page and "1 remain today" in page


def test_other_teams_requests_are_not_found(client, submit):
    request = submit()
    tom = make_user("tom", Role.REQUESTER)
    client.force_login(tom)
    assert client.get(f"/requests/{request.pk}/").status_code == 404


def test_a_reviewer_approves_from_the_review_page(client, reviewer, output):
    client.force_login(reviewer)
    page = client.get(f"/review/{output.pk}/").content.decode()
    assert escape(CHECKLIST[0]) in page and 'data-shortcuts="review"' in page
    response = client.post(f"/review/{output.pk}/", {"action": "approve", "checklist": CHECKLIST})
    assert response.status_code == 302
    output.refresh_from_db()
    assert output.review_status == ReviewStatus.APPROVED


def test_the_review_page_refuses_a_reviewer_on_their_own_request(client, requester, output):
    role_grant(user=requester, role=Role.REVIEWER, granted_by=None)
    client.force_login(requester)
    response = client.post(f"/review/{output.pk}/", {"action": "approve", "checklist": CHECKLIST})
    assert response.status_code == 403
    assert "Separation of duties" in response.content.decode()
    output.refresh_from_db()
    assert output.review_status == ReviewStatus.PENDING


def test_user_text_is_escaped_on_every_page(client, reviewer, auditor, output):
    client.force_login(reviewer)
    client.post(f"/review/{output.pk}/", {"action": "reject", "comment": "<script>x()</script>"})
    client.force_login(auditor)
    page = client.get(f"/audit/outputs/{output.pk}/").content.decode()
    assert "&lt;script&gt;x()&lt;/script&gt;" in page and "<script>x()" not in page


def test_forms_are_csrf_protected(requester, team, template_version):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(requester)
    response = strict.post(
        f"/templates/{template_version.pk}/new/", {"size": "large", "colour": "red"}
    )
    assert response.status_code == 403
    assert GenerationRequest.objects.count() == 0


def test_the_audit_search_filters_and_links_exports_and_lineage(client, auditor, output):
    client.force_login(auditor)
    page = client.get("/audit/?person=rita&review_status=pending").content.decode()
    assert f"/audit/outputs/{output.pk}/" in page
    assert (
        "/api/v1/audit/outputs/export/?person=rita&amp;review_status=pending&amp;file_format=csv"
        in page
    )
    assert "No outputs match" in client.get("/audit/?person=nobody").content.decode()
    assert "review_status" in client.get("/audit/?review_status=maybe").content.decode()


def test_an_auditor_verifies_the_chain_from_the_page(client, auditor, output):
    client.force_login(auditor)
    response = client.post("/audit/verify/?person=rita")
    assert response.status_code == 302 and response["Location"] == "/audit/?person=rita"
    assert "events intact" in client.get(response["Location"]).content.decode()


def test_a_model_admin_requests_a_production_move_from_the_page(
    client, model_admin, model_version, tiny_checkpoint_dir
):
    from governance.registry.services import model_version_register, sources_from_directory

    model_version_register(
        model_name="demo", sources=sources_from_directory(tiny_checkpoint_dir), registered_by=None
    )
    client.force_login(model_admin)
    page = client.get("/models/demo/").content.decode()
    assert model_version.weights.first().sha256 in page
    client.post("/models/demo/", {"action": "request", "alias": "production", "version": 2,
                                  "reason": "sharper"})  # fmt: skip
    move = AliasMoveRequest.objects.get()
    assert move.requested_by == model_admin and move.status == "pending"
    response = client.post("/models/demo/", {"action": "approve", "move": move.pk})
    refused = client.get(response["Location"]).content.decode()
    assert "Separation of duties" in refused


def test_an_administrator_registers_a_webhook_and_sets_a_quota(client, team):
    admin = make_user("adele", Role.ADMINISTRATOR)
    client.force_login(admin)
    page = client.post(
        "/integrations/",
        {"action": "create", "url": "https://hooks.example.test/x", "events": ["review.approved"]},
    ).content.decode()
    assert 'id="webhook-secret"' in page
    client.post("/integrations/", {"action": "quota", "team": "brand", "daily_images": "5"})
    assert team.quota.daily_images == 5


def test_the_dashboard_draws_its_charts(client, reviewer, output):
    client.force_login(reviewer)
    page = client.get("/dashboard/").content.decode()
    assert page.count('<svg class="chart"') == 2 and "shapes" in page
    bad = client.get("/dashboard/?since=2025-02-01&until=2025-01-01").content.decode()
    assert "Invalid date range" in bad


def test_sign_in_is_rate_limited(client, settings):
    import uuid

    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"submission": "120/min", "login": "2/min"},
    }
    name = f"ghost-{uuid.uuid4().hex[:10]}"
    codes = [
        client.post("/login/", {"username": name, "password": "x"}).status_code for _ in range(3)
    ]
    assert codes == [200, 200, 429]
