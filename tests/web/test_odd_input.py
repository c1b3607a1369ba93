"""Odd input is a 400 (or 404) in the error shape, never a 500: what a schema fuzzer tries."""

import pytest

from tests.web.conftest import error_of

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/requests/?offset=99999999999999999999999&limit=99999999999999999999",
        "/api/v1/requests/?limit=-1&offset=-5",
        "/api/v1/requests/?mine=perhaps",
        "/api/v1/requests/?review_status=%00",
        "/api/v1/audit/outputs/?caption=%00&person=%00",
        "/api/v1/audit/outputs/?since=9999-12-31T23:59:59-12:00",
        "/api/v1/audit/outputs/?model_version=demo:99999999999999999999999",
        "/api/v1/audit/events/?after_sequence=99999999999999999999999",
        "/api/v1/audit/events/?text=%00",
        "/api/v1/audit/events/?since=0001-01-01T00:00:00%2B14:00",
        "/api/v1/dashboard/?since=9999-12-31&until=9999-12-31",
        "/api/v1/dashboard/?since=0001-01-01&until=0001-01-01",
        "/api/v1/alias-moves/?status=%00",
        "/api/v1/models/%00/",
        "/api/v1/jobs/?offset=99999999999999999999999",
    ],
)
def test_odd_query_values_are_refused_cleanly(as_user, url):
    from tests.web.conftest import make_user

    staff = make_user("sol", "auditor", "reviewer", "model_admin", "requester")
    response = as_user(staff).get(url)
    assert response.status_code < 500, response.content
    if response.status_code >= 400:
        error_of(response)


@pytest.mark.parametrize(
    "body",
    [
        {"template_version": 1, "values": {"\x00": "\x00"}},
        {"template_version": 1, "values": {"shape": {"nested": [1]}}, "variations": 1},
        {"template_version": 99999999999, "values": {}},
        {"template_version": 1, "values": {}, "language": "\x00"},
        [],
        "text",
    ],
)
def test_odd_request_bodies_are_refused_cleanly(api, team, template_version, body):
    response = api.post("/api/v1/requests/", body, format="json")
    assert 400 <= response.status_code < 500, response.content
    error_of(response)
