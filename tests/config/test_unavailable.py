"""A backing service that fails mid-request gives a clear 503, never a 500 stack trace."""

from unittest import mock

import pytest
from django.db import OperationalError

from generation.storage import StorageUnavailable

pytestmark = pytest.mark.django_db


def test_database_failure_during_submission_is_a_503_with_a_message(api):
    with mock.patch("generation.api.job_create", side_effect=OperationalError("server closed")):
        response = api.post("/api/v1/jobs/", {"caption": "x"}, format="json")
    assert response.status_code == 503
    body = response.json()["error"]
    assert body["code"] == "service_unavailable"
    assert "database is unavailable" in body["message"]
    assert "server closed" not in response.content.decode()
    assert response["Retry-After"] == "5"


def test_store_failure_on_a_page_is_a_503_page(client, requester):
    client.force_login(requester)
    with mock.patch("web.views.HomeView.get_context_data", side_effect=StorageUnavailable()):
        response = client.get("/")
    assert response.status_code == 503
    assert b"image store is unavailable" in response.content


def test_unknown_urls_under_the_api_use_the_error_shape(api):
    response = api.get("/api/v1/jobs/00000000-0000-0000-0000-000000000000/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_an_api_path_with_a_newline_still_gets_the_json_error_shape(api):
    response = api.get("/api/v1/models/a%0Ab/aliases/moved_at/history/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"
