"""The REST API: one test per operation, each checking the outcome and, for bad input, the
one error shape with the offending field named."""

import json

import pytest
from rest_framework.test import APIClient

from generation.models import ReviewStatus
from governance.approvals.models import GenerationRequest
from governance.audit.models import AuditEvent
from governance.registry.models import AliasMoveRequest
from governance.roles import Role, role_grant
from tests.web.conftest import VALUES, error_of

pytestmark = pytest.mark.django_db


# --- authentication ---------------------------------------------------------------------------


def test_a_token_signs_in_and_a_wrong_password_is_a_401_in_the_error_shape(requester):
    anonymous = APIClient()
    ok = anonymous.post(
        "/api/v1/auth/token/", {"username": "rita", "password": "pw-rita-123456"}, format="json"
    )
    assert ok.status_code == 200
    token = ok.json()["token"]
    me = APIClient(HTTP_AUTHORIZATION=f"Token {token}").get("/api/v1/me/")
    assert me.status_code == 200 and me.json()["username"] == "rita"
    wrong = anonymous.post(
        "/api/v1/auth/token/", {"username": "rita", "password": "nope"}, format="json"
    )
    assert wrong.status_code == 401
    assert error_of(wrong)["code"] == "authentication_failed"


def test_sign_in_attempts_are_rate_limited_per_address_and_username(db, settings):
    import uuid

    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"submission": "120/min", "login": "3/min"},
    }
    username = f"nobody-{uuid.uuid4().hex[:12]}"
    codes = [
        APIClient()
        .post("/api/v1/auth/token/", {"username": username, "password": "x"}, format="json")
        .status_code
        for _ in range(4)
    ]
    assert codes == [401, 401, 401, 429]


def test_anonymous_requests_get_the_error_shape(db):
    response = APIClient().get("/api/v1/requests/")
    assert response.status_code in (401, 403)
    assert error_of(response)["code"] == "not_authenticated"


def test_me_lists_roles_teams_and_todays_quota(api, team, requester):
    body = api.get("/api/v1/me/").json()
    assert body["roles"] == ["requester"]
    assert body["teams"] == ["brand"]
    assert body["quotas"][0]["team"] == "brand" and body["quotas"][0]["limit"] is None


# --- templates and lint -----------------------------------------------------------------------


def test_published_templates_are_listed_with_their_form_fields(api, template_version):
    listing = api.get("/api/v1/templates/").json()
    assert [item["name"] for item in listing["results"]] == ["shapes"]
    detail = api.get(f"/api/v1/templates/{template_version.pk}/", HTTP_ACCEPT_LANGUAGE="ja")
    fields = {field["name"]: field for field in detail.json()["form_fields"]}
    assert fields["colour"]["key"] is True
    assert {"value": "red", "label": "赤"} in fields["colour"]["choices"]
    assert fields["shape"]["max_length"] == 20
    assert detail.json()["checklist"] == template_version.checklist


def test_unknown_or_unpublished_template_versions_are_404(api, template_version):
    assert api.get("/api/v1/templates/999999/").status_code == 404
    assert error_of(api.get("/api/v1/templates/9999999999999999999999/"))["code"] == "not_found"
    assert error_of(api.get("/api/v1/no-such-endpoint/"))["code"] == "not_found"


def test_live_lint_reports_tokens_key_positions_and_findings(api, template_version):
    response = api.post(
        f"/api/v1/templates/{template_version.pk}/lint/",
        {"values": {**VALUES, "shape": "circle"}},
        format="json",
    )
    assert response.status_code == 200, response.content
    lint = response.json()
    assert lint["caption"] == "a large red circle, white background"
    assert lint["ok"] is True
    assert lint["positions"]["colour"] < lint["positions"]["shape"] <= 20
    assert lint["key_position_limit"] == 20 and lint["context_length"] == 77


def test_live_lint_names_a_bad_value_as_a_finding_not_an_error(api, template_version):
    lint = api.post(
        f"/api/v1/templates/{template_version.pk}/lint/",
        {"values": {"size": "huge", "colour": ["red"]}},
        format="json",
    ).json()
    assert lint["ok"] is False
    assert {f["variable"] for f in lint["findings"] if f["rule"] == "variables"} >= {
        "size",
        "colour",
        "shape",
    }


def test_live_lint_refuses_unknown_fields_and_languages(api, template_version):
    url = f"/api/v1/templates/{template_version.pk}/lint/"
    error = error_of(api.post(url, {"values": {}, "extra": 1}, format="json"))
    assert set(error["fields"]) == {"extra"}
    error = error_of(api.post(url, {"values": {}, "language": "xx"}, format="json"))
    assert set(error["fields"]) == {"language"}


# --- requests ---------------------------------------------------------------------------------


def test_a_request_is_submitted_from_a_template_and_polled(api, team, template_version):
    response = api.post(
        "/api/v1/requests/",
        {"template_version": template_version.pk, "values": VALUES, "variations": 2},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["caption"] == "a large red circle, white background"
    assert [job["variation"] for job in body["jobs"]] == [0, 1]
    assert all(job["status"] == "queued" and job["output"] is None for job in body["jobs"])
    polled = api.get(f"/api/v1/requests/{body['id']}/").json()
    assert polled["jobs"][0]["progress"] == 0.0
    assert api.get("/api/v1/requests/?mine=true").json()["count"] == 1


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"template_version": None, "values": VALUES}, "template_version"),
        ({"template_version": 0, "values": VALUES}, "template_version"),
        ({"template_version": "x", "values": VALUES}, "template_version"),
        ({"values": {**VALUES, "colour": "green"}}, "values.colour"),
        ({"values": VALUES, "variations": 17}, "variations"),
        ({"values": VALUES, "team": "nope"}, "team"),
        ({"values": VALUES, "language": "fr"}, "language"),
        ({"values": VALUES, "colour": "red"}, "colour"),
        ({"values": "red"}, "values"),
    ],
)
def test_bad_submissions_name_the_field(api, team, template_version, payload, field):
    payload = {"template_version": template_version.pk, **payload}
    response = api.post("/api/v1/requests/", payload, format="json")
    assert response.status_code == 400, response.content
    assert field in error_of(response)["fields"]
    assert GenerationRequest.objects.count() == 0


def test_someone_without_the_requester_role_is_refused_with_a_403(
    as_user, outsider, template_version
):
    response = as_user(outsider).post(
        "/api/v1/requests/", {"template_version": template_version.pk, "values": VALUES},
        format="json",
    )  # fmt: skip
    assert response.status_code == 403
    assert error_of(response)["code"] == "role_required"


def test_other_teams_requests_are_invisible(api, as_user, submit):
    from tests.governance.approvals.conftest import make_user

    mine = submit()
    tom = make_user("tom", Role.REQUESTER)
    assert as_user(tom).get(f"/api/v1/requests/{mine.pk}/").status_code == 404
    assert as_user(tom).get("/api/v1/requests/").json()["count"] == 0
    assert api.get(f"/api/v1/requests/{mine.pk}/").status_code == 200


def test_a_team_over_its_daily_quota_gets_a_429_with_what_remains(api, team, template_version):
    from governance.integrations.services import team_quota_set

    team_quota_set(team=team, daily_images=3, by=None)
    payload = {"template_version": template_version.pk, "values": VALUES, "variations": 2}
    assert api.post("/api/v1/requests/", payload, format="json").status_code == 201
    refused = api.post("/api/v1/requests/", payload, format="json")
    assert refused.status_code == 429
    error = error_of(refused)
    assert error["code"] == "quota_exceeded"
    assert (error["limit"], error["used"], error["remaining"]) == (3, 2, 1)
    assert error["resets_at"].endswith("+00:00")
    assert int(refused["Retry-After"]) > 0


def test_a_reviewer_requests_changes_and_a_child_request_regenerates(as_user, reviewer, output):
    response = as_user(reviewer).post(
        f"/api/v1/requests/{output.job.request_id}/changes/",
        {"comment": "make it bluer", "values": {"colour": "blue"}},
        format="json",
    )
    assert response.status_code == 201, response.content
    child = response.json()
    assert child["parent"] == str(output.job.request_id)
    assert child["values"]["colour"] == "blue"
    output.refresh_from_db()
    assert output.review_status == ReviewStatus.CHANGES_REQUESTED


def test_the_requester_cannot_request_changes_to_their_own_request(api, requester, output):
    role_grant(user=requester, role=Role.REVIEWER, granted_by=None)
    response = api.post(
        f"/api/v1/requests/{output.job.request_id}/changes/", {"comment": "x"}, format="json"
    )
    assert response.status_code == 403
    assert error_of(response)["code"] == "self_approval_forbidden"


# --- review -----------------------------------------------------------------------------------


def test_the_review_queue_lists_pending_outputs_with_caption_values_and_checklist(
    as_user, reviewer, output, template_version
):
    body = as_user(reviewer).get("/api/v1/reviews/queue/").json()
    assert body["count"] == 1
    item = body["results"][0]
    assert item["id"] == str(output.pk) and item["checklist"] == template_version.checklist
    assert item["values_used"]["colour"]["value"] == "red"


def test_the_review_queue_is_for_reviewers(api, output):
    assert error_of(api.get("/api/v1/reviews/queue/"))["code"] == "permission_denied"


def test_a_reviewer_approves_with_every_checklist_item(as_user, reviewer, output, audit_trail):
    response = as_user(reviewer).post(
        f"/api/v1/outputs/{output.pk}/review/",
        {"decision": "approved", "checklist": output.job.request.template_version.checklist},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["review_status"] == "approved"
    assert audit_trail("review.approved", output.pk)[0][0] == "rory"


def test_approving_without_the_checklist_names_the_field(as_user, reviewer, output):
    response = as_user(reviewer).post(
        f"/api/v1/outputs/{output.pk}/review/", {"decision": "approved"}, format="json"
    )
    assert response.status_code == 400
    assert "checklist" in error_of(response)["fields"]


def test_a_requester_who_reviews_cannot_approve_their_own_output(api, requester, output):
    role_grant(user=requester, role=Role.REVIEWER, granted_by=None)
    response = api.post(
        f"/api/v1/outputs/{output.pk}/review/",
        {"decision": "rejected", "comment": "mine"},
        format="json",
    )
    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "self_approval_forbidden" and "rita" in error["message"]


def test_a_second_decision_on_a_rejected_output_is_a_409(as_user, reviewer, output):
    url = f"/api/v1/outputs/{output.pk}/review/"
    client = as_user(reviewer)
    assert (
        client.post(url, {"decision": "rejected", "comment": "no"}, format="json").status_code
        == 201
    )
    again = client.post(url, {"decision": "rejected", "comment": "no"}, format="json")
    assert again.status_code == 409 and error_of(again)["code"] == "invalid_transition"


def test_the_lineage_reads_from_request_to_review(as_user, auditor, output):
    lineage = as_user(auditor).get(f"/api/v1/outputs/{output.pk}/lineage/").json()
    assert lineage["request"]["requested_by"] == "rita"
    assert lineage["template_version"]["name"] == "shapes v1"
    assert lineage["output"]["sha256"] == output.sha256
    assert any(event["action"] == "output.created" for event in lineage["events"])


# --- registry ---------------------------------------------------------------------------------


@pytest.fixture
def second_version(model_version, tiny_checkpoint_dir):
    from governance.registry.services import model_version_register, sources_from_directory

    return model_version_register(
        model_name="demo", sources=sources_from_directory(tiny_checkpoint_dir), registered_by=None
    )


def test_models_show_versions_with_hashes_and_aliases(as_user, model_admin, model_version):
    body = as_user(model_admin).get("/api/v1/models/demo/").json()
    assert body["aliases"] == [
        {"name": "production", "version": "demo:1", "updated_at": body["aliases"][0]["updated_at"]}
    ]
    weights = body["versions"][0]["weights"]
    assert {w["role"] for w in weights} == {"vqvae", "transformer", "text_encoder"}
    assert all(len(w["sha256"]) == 64 for w in weights)
    history = as_user(model_admin).get("/api/v1/models/demo/aliases/production/history/").json()
    assert history[0]["to_version"] == "demo:1"


def test_the_registry_is_closed_to_requesters(api, model_version):
    assert api.get("/api/v1/models/").status_code == 403


def test_a_promotion_is_requested_then_approved_by_a_second_model_admin(
    as_user, model_admin, second_version, audit_trail
):
    from tests.governance.approvals.conftest import make_user

    asked = as_user(model_admin).post(
        "/api/v1/alias-moves/",
        {"model": "demo", "alias": "production", "version": 2, "reason": "better"},
        format="json",
    )
    assert asked.status_code == 201, asked.content
    move_id = asked.json()["id"]
    own = as_user(model_admin).post(f"/api/v1/alias-moves/{move_id}/approve/")
    assert own.status_code == 403 and error_of(own)["code"] == "self_approval_forbidden"
    second = make_user("max", Role.MODEL_ADMIN)
    approved = as_user(second).post(f"/api/v1/alias-moves/{move_id}/approve/")
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    assert audit_trail("registry.alias_moved")[-1][0] == "max"


def test_a_move_to_the_current_version_and_a_reject_without_reason_are_refused(
    as_user, model_admin, second_version
):
    client = as_user(model_admin)
    same = client.post(
        "/api/v1/alias-moves/",
        {"model": "demo", "alias": "production", "version": 1, "reason": "x"},
        format="json",
    )
    assert same.status_code == 400 and error_of(same)["code"] == "registry_refused"
    move = client.post(
        "/api/v1/alias-moves/",
        {"model": "demo", "alias": "production", "version": 2, "reason": "x"},
        format="json",
    ).json()
    blank = client.post(f"/api/v1/alias-moves/{move['id']}/reject/", {"reason": ""}, format="json")
    assert "reason" in error_of(blank)["fields"]
    assert AliasMoveRequest.objects.get(pk=move["id"]).status == "pending"
    listed = client.get("/api/v1/alias-moves/?status=pending").json()
    assert [item["id"] for item in listed["results"]] == [move["id"]]


# --- audit ------------------------------------------------------------------------------------


def test_outputs_are_searched_and_exported_as_csv_and_jsonl(as_user, auditor, output):
    client = as_user(auditor)
    found = client.get("/api/v1/audit/outputs/?person=rita&template=shapes:1").json()
    assert [item["id"] for item in found["results"]] == [str(output.pk)]
    assert client.get("/api/v1/audit/outputs/?person=nobody").json()["count"] == 0
    csv_response = client.get("/api/v1/audit/outputs/export/?person=rita&file_format=csv")
    text = b"".join(csv_response.streaming_content).decode()
    assert csv_response["Content-Type"].startswith("text/csv")
    assert text.splitlines()[0].startswith("output,created_at") and str(output.pk) in text
    jsonl = client.get("/api/v1/audit/outputs/export/?file_format=jsonl", HTTP_ACCEPT="text/csv")
    rows = [json.loads(line) for line in b"".join(jsonl.streaming_content).splitlines()]
    assert rows[0]["output"] == str(output.pk)
    assert (
        AuditEvent.objects.filter(action="outputs.exported", actor_username="audrey").count() == 4
    )


@pytest.mark.parametrize(
    "query, field",
    [
        ("review_status=maybe", "review_status"),
        ("since=yesterday", "since"),
        ("template=shapes:one", "template"),
        ("file_format=xml", "file_format"),
    ],
)
def test_bad_output_filters_name_the_field(as_user, auditor, query, field):
    response = as_user(auditor).get(f"/api/v1/audit/outputs/export/?{query}")
    assert response.status_code == 400
    assert field in error_of(response)["fields"]


def test_audit_events_are_paged_by_sequence_and_exported(as_user, auditor, output):
    client = as_user(auditor)
    page = client.get("/api/v1/audit/events/?limit=2&action=job.created").json()
    assert [event["action"] for event in page["results"]] == ["job.created"]
    assert page["next_after_sequence"] is None
    exported = client.get("/api/v1/audit/events/export/?file_format=jsonl&target_type=output")
    lines = b"".join(exported.streaming_content).splitlines()
    assert {json.loads(line)["action"] for line in lines} >= {"output.created"}
    assert error_of(client.get("/api/v1/audit/events/?limit=0"))["fields"].keys() == {"limit"}


def test_audit_events_are_for_auditors(api, output):
    assert api.get("/api/v1/audit/events/").status_code == 403


def test_the_chain_is_verified_on_demand_and_the_verification_recorded(as_user, auditor, output):
    from governance.audit.anchoring import audit_anchor

    audit_anchor()
    client = as_user(auditor)
    result = client.post("/api/v1/audit/chain/verify/").json()
    assert result["ok"] is True and result["checked"] > 5 and result["anchors_checked"] == 1
    assert result["verified_by"] == auditor.username
    # Recorded in the chain itself, where the status page reads it back from.
    recorded = AuditEvent.objects.get(action="audit.verified")
    assert (recorded.sequence, recorded.actor_username) == (result["sequence"], auditor.username)
    status = client.get("/api/v1/audit/chain/").json()
    assert status["last_verification"] == result
    assert status["last_anchor"]["sequence"] == result["checked"] - 1
    assert status["head_sequence"] == result["sequence"] == result["checked"] + 1


# --- dashboard, webhooks, quotas --------------------------------------------------------------


def test_the_dashboard_reports_pilot_metrics(as_user, reviewer, output):
    body = as_user(reviewer).get("/api/v1/dashboard/").json()
    assert body["overall"]["requests"] == 1 and body["overall"]["images"] == 1
    assert body["by_template"][0]["key"] == "shapes"
    assert body["by_model_version"][0]["key"] == "demo:1"
    assert len(body["per_day"]) == 30


def test_a_reversed_dashboard_range_names_the_field(as_user, reviewer):
    response = as_user(reviewer).get("/api/v1/dashboard/?since=2025-02-01&until=2025-01-01")
    assert response.status_code == 400 and "until" in error_of(response)["fields"]


@pytest.fixture
def administrator(db):
    from tests.governance.approvals.conftest import make_user

    return make_user("adele", Role.ADMINISTRATOR)


def test_an_administrator_registers_a_webhook_and_sees_its_secret_once(as_user, administrator):
    client = as_user(administrator)
    created = client.post(
        "/api/v1/webhooks/",
        {"url": "http://127.0.0.1:9/hook", "events": ["review.approved", "job.succeeded"]},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert len(created.json()["secret"]) == 64
    listed = client.get("/api/v1/webhooks/").json()["results"]
    assert "secret" not in listed[0]
    deactivated = client.post(f"/api/v1/webhooks/{created.json()['id']}/deactivate/")
    assert deactivated.json()["active"] is False
    assert client.get(f"/api/v1/webhooks/{created.json()['id']}/deliveries/").json()["count"] == 0


def test_a_webhook_for_an_unknown_event_names_the_field(as_user, administrator):
    response = as_user(administrator).post(
        "/api/v1/webhooks/", {"url": "ftp://x", "events": ["nope"]}, format="json"
    )
    assert set(error_of(response)["fields"]) == {"url", "events"}


def test_quotas_are_set_and_listed_by_administrators_only(as_user, administrator, api, team):
    client = as_user(administrator)
    saved = client.post("/api/v1/quotas/", {"team": "brand", "daily_images": 10}, format="json")
    assert saved.json() == {**saved.json(), "team": "brand", "limit": 10, "remaining": 10}
    assert client.get("/api/v1/quotas/").json()[0]["limit"] == 10
    assert (
        api.post("/api/v1/quotas/", {"team": "brand", "daily_images": 1}, format="json").status_code
        == 403
    )
    negative = client.post("/api/v1/quotas/", {"team": "brand", "daily_images": -1}, format="json")
    assert "daily_images" in error_of(negative)["fields"]


# --- the schema -------------------------------------------------------------------------------


def test_the_openapi_schema_documents_every_endpoint_and_its_query_parameters(api):
    schema = api.get("/api/v1/schema/?format=json").json()
    paths = schema["paths"]
    for path in [
        "/api/v1/templates/{version_id}/lint/", "/api/v1/requests/", "/api/v1/reviews/queue/",
        "/api/v1/outputs/{output_id}/review/", "/api/v1/alias-moves/", "/api/v1/audit/events/",
        "/api/v1/audit/outputs/export/", "/api/v1/dashboard/", "/api/v1/webhooks/",
        "/api/v1/quotas/", "/api/v1/jobs/", "/api/v1/outputs/{output_id}/download/",
    ]:  # fmt: skip
        assert path in paths, path
    params = {p["name"] for p in paths["/api/v1/audit/outputs/export/"]["get"]["parameters"]}
    assert params >= {"person", "template", "model_version", "review_status", "since", "until",
                      "caption", "file_format"}  # fmt: skip
    listed = {p["name"] for p in paths["/api/v1/requests/"]["get"]["parameters"]}
    assert listed >= {"team", "template", "mine", "review_status", "limit", "offset"}


def test_swagger_and_redoc_are_served_from_local_files(api):
    for url in ("/api/v1/docs/", "/api/v1/redoc/"):
        html = api.get(url).content.decode()
        assert "cdn" not in html.lower() and "/static/drf_spectacular_sidecar/" in html


def test_the_download_of_an_unknown_output_is_a_404_in_the_error_shape(api):
    response = api.get("/api/v1/outputs/00000000-0000-0000-0000-000000000000/download/")
    assert error_of(response)["code"] == "not_found"
