"""Submitting, reading and cancelling jobs through the REST API."""

import pytest

from generation.models import GenerationJob, JobStatus

pytestmark = pytest.mark.django_db


def test_job_submission_resolves_the_alias_to_a_fixed_version(api, model_version):
    response = api.post("/api/v1/jobs/", {"caption": "a red circle", "seed": 7}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "queued"
    assert body["model_version"] == str(model_version)
    assert body["model_reference"] == "demo"
    job = GenerationJob.objects.get(pk=body["id"])
    assert job.model_version_id == model_version.pk
    assert job.sampling == model_version.sampling_defaults


def test_seed_is_drawn_when_not_given(api, model_version):
    response = api.post("/api/v1/jobs/", {"caption": "a red circle"}, format="json")
    assert response.status_code == 201
    assert 0 <= response.json()["seed"] < 2**63


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"caption": ""}, "caption"),
        ({"caption": "x", "colour": "red"}, "colour"),
        ({"caption": "x", "seed": "seven"}, "seed"),
        ({"caption": "x", "seed": -1}, "seed"),
        ({"caption": "x", "sampling": {"cfg": 99}}, "sampling"),
        ({"caption": "x", "sampling": {"top_p": 1.5}}, "sampling"),
        ({"caption": "x", "sampling": {"temperature": 1}}, "sampling"),
        ({"caption": "x", "model": "nope@production"}, "model"),
        ({"caption": "x", "priority": 11}, "priority"),
    ],
)
def test_bad_submissions_get_field_level_errors(api, model_version, payload, field):
    response = api.post("/api/v1/jobs/", payload, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["fields"]
    assert GenerationJob.objects.count() == 0


def test_top_k_above_the_codebook_is_refused(api, model_version):
    vocab = model_version.engine_config["vqvae"]["vocab_size"]
    response = api.post(
        "/api/v1/jobs/", {"caption": "x", "sampling": {"top_k": vocab + 1}}, format="json"
    )
    assert response.status_code == 400
    assert "top_k" in response.json()["error"]["fields"]


def test_malformed_json_is_a_400_not_a_500(api, model_version):
    response = api.post("/api/v1/jobs/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


def test_anonymous_requests_are_refused(model_version):
    from rest_framework.test import APIClient

    response = APIClient().post("/api/v1/jobs/", {"caption": "x"}, format="json")
    assert response.status_code in (401, 403)


def test_users_see_only_their_own_jobs(api, model_version, outsider):
    from rest_framework.test import APIClient

    job_id = api.post("/api/v1/jobs/", {"caption": "mine"}, format="json").json()["id"]
    other = APIClient()
    other.force_authenticate(outsider)
    assert other.get(f"/api/v1/jobs/{job_id}/").status_code == 404
    assert other.get("/api/v1/jobs/").json()["count"] == 0
    assert api.get("/api/v1/jobs/").json()["count"] == 1


def test_list_filters_by_status_and_rejects_unknown_status(api, model_version):
    api.post("/api/v1/jobs/", {"caption": "one"}, format="json")
    assert api.get("/api/v1/jobs/?status=queued").json()["count"] == 1
    assert api.get("/api/v1/jobs/?status=succeeded").json()["count"] == 0
    assert api.get("/api/v1/jobs/?status=bogus").status_code == 400


def test_cancelling_a_queued_job_ends_it_and_a_second_cancel_is_refused(api, model_version):
    job_id = api.post("/api/v1/jobs/", {"caption": "x"}, format="json").json()["id"]
    response = api.post(f"/api/v1/jobs/{job_id}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    again = api.post(f"/api/v1/jobs/{job_id}/cancel/")
    assert again.status_code == 400
    assert GenerationJob.objects.get(pk=job_id).status == JobStatus.CANCELLED


def test_openapi_schema_and_docs_are_served_without_a_cdn(api):
    schema = api.get("/api/v1/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/jobs/" in schema.content
    docs = api.get("/api/v1/docs/")
    assert docs.status_code == 200
    assert b"cdn" not in docs.content.lower()


def _token_client(user):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_a_job_status_read_costs_two_queries_the_token_and_the_job(
    requester, reviewer, outsider, model_version, django_assert_max_num_queries
):
    from generation.services import job_create

    job = job_create(created_by=requester, caption="a red circle", seed=7)
    owner, other, stranger = (_token_client(user) for user in (requester, reviewer, outsider))
    with django_assert_max_num_queries(2):
        response = owner.get(f"/api/v1/jobs/{job.id}/")
    assert response.status_code == 200
    assert response.json()["id"] == str(job.id)
    # Someone else's job: one more query, the reader's roles (once, however often asked).
    with django_assert_max_num_queries(3):
        assert other.get(f"/api/v1/jobs/{job.id}/").status_code == 200
    with django_assert_max_num_queries(3):
        assert stranger.get(f"/api/v1/jobs/{job.id}/").status_code == 404


def test_a_submission_holds_the_audit_chain_lock_only_for_the_event_and_the_head(
    api, model_version
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        response = api.post("/api/v1/jobs/", {"caption": "a red circle"}, format="json")
    assert response.status_code == 201
    assert response.json()["output"] is None
    statements = [query["sql"] for query in captured.captured_queries]
    locked = next(i for i, sql in enumerate(statements) if sql.endswith("FOR UPDATE"))
    assert '"audit_auditchainhead"' in statements[locked]
    # Under the lock: the event, the head, and the end of the transaction; nothing after
    # it either (a job created by this request cannot have an output to look up).
    held = statements[locked + 1 :]
    assert held[0].startswith('INSERT INTO "audit_auditevent"')
    assert held[1].startswith('UPDATE "audit_auditchainhead"')
    assert [sql.split()[0] for sql in held[2:]] in (["RELEASE"], ["COMMIT"])
    # The webhook endpoints were read before the lock was taken.
    endpoints = [i for i, sql in enumerate(statements) if "integrations_webhookendpoint" in sql]
    assert endpoints and max(endpoints) < locked
