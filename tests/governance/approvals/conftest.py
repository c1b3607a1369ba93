"""A published caption template, a team of requesters, and the helpers to run its jobs."""

import json
from unittest import mock

import pytest
from django.contrib.auth import get_user_model

from generation import worker
from generation.models import Output
from generation.services import job_execute
from governance.approvals.services import request_create, team_create, team_member_add
from governance.audit.models import AuditEvent
from governance.captions.services import (
    template_create,
    template_version_create,
    template_version_publish,
    template_version_submit,
)
from governance.roles import Role, role_grant

CHECKLIST = ["The shape's colour matches the brief", "Nothing offensive or off-brand"]
SHAPES = {
    "pattern": "a {size} {colour} {shape}, {background} background",
    "variables": [
        {"name": "size", "type": "choice", "choices": ["small", "large"]},
        {
            "name": "colour",
            "type": "choice",
            "key": True,
            "choices": [
                {"value": "red", "labels": {"en": "red", "ja": "赤"}},
                {"value": "blue", "labels": {"en": "blue", "ja": "青"}},
            ],
        },
        {"name": "shape", "type": "text", "max_length": 20, "key": True},
        {
            "name": "background",
            "type": "choice",
            "required": False,
            "default": "white",
            "choices": ["white", "black"],
        },
    ],
    "checklist": CHECKLIST,
    "examples": [{"size": "large", "colour": "red", "shape": "circle", "background": "black"}],
}
VALUES = {"size": "large", "colour": "red", "shape": "circle"}


def make_user(username, *roles):
    user = get_user_model().objects.create_user(username)
    for role in roles:
        role_grant(user=user, role=role, granted_by=None)
    return user


@pytest.fixture(autouse=True)
def _no_dispatch():
    # The tests run jobs with job_execute; the broker path has its own end-to-end test.
    with mock.patch("generation.services.dispatch_job"):
        yield


@pytest.fixture(autouse=True)
def _fresh_model_cache():
    worker.clear_pipeline_cache()
    yield
    worker.clear_pipeline_cache()


@pytest.fixture
def template_version(model_version):
    """``shapes:1``, written by ada and published by pia (neither reviews outputs here)."""
    author = make_user("ada", Role.REQUESTER)
    publisher = make_user("pia", Role.REVIEWER)
    template = template_create(
        name="shapes", title="Shapes", model_name=model_version.model.name, created_by=author
    )
    version = template_version_create(template=template, created_by=author, **SHAPES)
    template_version_submit(version=version, by=author)
    return template_version_publish(version=version, approved_by=publisher)


@pytest.fixture
def team(requester):
    """Team ``brand`` with rita, who holds the requester role."""
    role_grant(user=requester, role=Role.REQUESTER, granted_by=None)
    brand = team_create(name="brand", title="Brand marketing", created_by=None)
    team_member_add(team=brand, user=requester, added_by=None)
    return brand


@pytest.fixture
def other_team():
    """Team ``retail`` with tom, another requester."""
    tom = make_user("tom", Role.REQUESTER)
    retail = team_create(name="retail", title="Retail", created_by=None)
    team_member_add(team=retail, user=tom, added_by=None)
    return retail


@pytest.fixture
def submit(requester, team, template_version):
    """Submit a request as rita (keyword arguments override the defaults)."""

    def _submit(**overrides):
        fields = {
            "requested_by": requester,
            "template_version": template_version,
            "values": VALUES,
            "variations": 1,
        }
        fields.update(overrides)
        return request_create(**fields)

    return _submit


@pytest.fixture
def generate():
    """Run every queued job of a request through the engine; return its outputs by variation."""

    def _generate(request):
        for job in request.jobs.order_by("variation"):
            job_execute(job_id=job.id, worker="test", max_batch=8)
        return list(Output.objects.filter(job__request=request).order_by("job__variation"))

    return _generate


@pytest.fixture
def output(submit, generate, s3_bucket):
    """One generated, pending output of a request by rita."""
    return generate(submit(seeds=[7]))[0]


@pytest.fixture
def audit_trail(db):
    """The audit events of one action (and target), as (actor username, payload) pairs."""

    def trail(action, target_id=None):
        events = AuditEvent.objects.filter(action=action).order_by("sequence")
        if target_id is not None:
            events = events.filter(target_id=str(target_id))
        return [(event.actor_username, json.loads(event.payload_json)) for event in events]

    return trail
