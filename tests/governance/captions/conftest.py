"""Personas and a template for the caption template tests."""

import json

import pytest
from django.contrib.auth import get_user_model

from governance.audit.models import AuditEvent
from governance.captions.services import template_create, template_version_create
from governance.roles import Role, role_grant

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
    "checklist": ["The shape's colour matches the brief"],
    "examples": [{"size": "large", "colour": "red", "shape": "circle", "background": "black"}],
}


def _user(username, *roles):
    # No password: hashing one costs ~0.3 s, and tests sign in with force_login.
    user = get_user_model().objects.create_user(username)
    for role in roles:
        role_grant(user=user, role=role, granted_by=None)
    return user


@pytest.fixture
def author(db):
    return _user("ada", Role.REQUESTER)


@pytest.fixture
def reviewer(db):
    return _user("rory", Role.REVIEWER)


@pytest.fixture
def administrator(db):
    return _user("adele", Role.ADMINISTRATOR)


@pytest.fixture
def template(model_version, author):
    return template_create(
        name="shapes", title="Shapes", model_name=model_version.model.name, created_by=author
    )


@pytest.fixture
def draft(template, author):
    return template_version_create(template=template, created_by=author, **SHAPES)


@pytest.fixture
def audit_trail(db):
    """The audit events of one action (and target), as (actor username, payload) pairs."""

    def trail(action, target_id=None):
        events = AuditEvent.objects.filter(action=action).order_by("sequence")
        if target_id is not None:
            events = events.filter(target_id=str(target_id))
        return [(event.actor_username, json.loads(event.payload_json)) for event in events]

    return trail
