"""Schemathesis fuzzes every operation of /api/v1/schema/ against the real database.

Each operation gets ``FUZZ_EXAMPLES`` generated requests (default 30, valid and invalid
ones, derandomized so CI is stable); a nightly run raises it:
``FUZZ_EXAMPLES=500 bash scripts/run_tests.sh tests/reliability/test_api_fuzzing.py``.
Every response must be free of server errors and match the schema: a documented status
code, the documented content type, and a body that validates.
"""

import json
import os
from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application
from governance.roles import Role
from tests.governance.approvals.conftest import (  # noqa: F401  (fixtures)
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

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "reliability"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "30"))
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# The sign-in endpoint is throttled per address (10/min): fuzzing it only tests the throttle.
UNFUZZED = {"POST /api/v1/auth/token/"}


@pytest.fixture
def token(output, other_team):  # noqa: F811  (data for the fuzzer to reach)
    """A token for a user holding every role, so requests get past the permission checks."""
    # The WSGI handler closes "old" connections around each request, which would end the
    # test's transaction; Django's test client unhooks the same receiver.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield Token.objects.create(user=make_user("fuzz", *Role)).key
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def fuzz(operation, token: str, statuses: Counter) -> None:
    """Send EXAMPLES generated requests to one operation; raise on the first bad response."""
    strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
        GenerationMode.NEGATIVE
    )

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case) -> None:  # type: ignore[no-untyped-def]
        response = case.call(headers={"Authorization": f"Token {token}"})
        statuses[response.status_code] += 1
        case.validate_response(response, checks=CHECKS)

    run()


def test_every_operation_answers_without_server_errors_and_within_its_schema(token):
    schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", application)
    statuses: Counter = Counter()
    failures = []
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        if operation.label in UNFUZZED:
            continue
        try:
            fuzz(operation, token, statuses)
        except Exception as error:  # every operation is fuzzed; all failures are reported
            failures.append(f"{operation.label}: {error}")
    figures = {
        "examples_per_operation": EXAMPLES,
        "operations": len(operations) - len(UNFUZZED),
        "requests": sum(statuses.values()),
        "statuses": {str(code): count for code, count in sorted(statuses.items())},
        "failures": len(failures),
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "api_fuzzing.json").write_text(json.dumps(figures, indent=1))
    assert not failures, "\n\n".join(failures)
    assert sum(statuses.values()) >= EXAMPLES * (len(operations) - len(UNFUZZED)) // 2


# Regressions the fuzzer found, pinned down one by one.


def test_a_quota_for_an_unknown_team_is_a_400_naming_the_field(token, client):
    response = client.post(
        "/api/v1/quotas/",
        {"team": "no-such-team", "daily_images": 5},
        content_type="application/json",
        headers={"Authorization": f"Token {token}"},
    )
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"team"}


def test_a_post_to_a_malformed_api_path_is_a_json_404_not_a_csrf_page(token, client):
    client.force_login(Token.objects.get(key=token).user)  # a session makes CSRF apply
    response = client.post("/api/v1/jobs/not-a-uuid/cancel/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
