"""Personas and a published template for the pages and the API (shared with approvals)."""

import pytest
from rest_framework.test import APIClient

from tests.governance.approvals.conftest import (  # noqa: F401  (fixtures)
    CHECKLIST,
    SHAPES,
    VALUES,
    audit_trail,
    generate,
    make_user,
    submit,
    team,
    template_version,
)


@pytest.fixture
def output(submit, generate, s3_bucket):  # noqa: F811
    """One generated, pending output of a request by rita."""
    return generate(submit(seeds=[7]))[0]


@pytest.fixture
def as_user():
    """An API client signed in as the given user."""

    def client(user):
        api = APIClient()
        api.force_authenticate(user)
        return api

    return client


@pytest.fixture
def browser_client(client):
    """Django's test client, signed in as the given user."""

    def sign_in(user):
        client.force_login(user)
        return client

    return sign_in


def error_of(response):
    """The API error envelope of a response (asserting its shape)."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message", "fields"} <= set(body["error"]), body
    return body["error"]


@pytest.fixture(autouse=True)
def _anchors_of_this_test_only(settings, tmp_path):
    # Anchors outlive a test's database; a private store keeps other tests' anchors out of
    # the chain verification these pages run.
    settings.AUDIT_ANCHOR_BACKEND = "local"
    settings.AUDIT_ANCHOR_ROOT = tmp_path / "anchors"
