"""Personas for the registry tests: model administrators and a registrant."""

import json

import pytest
from django.contrib.auth import get_user_model

from governance.audit.models import AuditEvent
from governance.roles import Role, role_grant


def _user(username, *roles):
    # No password: hashing one costs ~0.3 s, and no test here signs in.
    user = get_user_model().objects.create_user(username)
    for role in roles:
        role_grant(user=user, role=role, granted_by=None)
    return user


@pytest.fixture
def registrant(db):
    return _user("reggie", Role.MODEL_ADMIN)


@pytest.fixture
def model_admin(db):
    return _user("mia", Role.MODEL_ADMIN)


@pytest.fixture
def audit_trail(db):
    """The audit events of one action (and target), as (actor username, payload) pairs."""

    def trail(action, target_id=None):
        events = AuditEvent.objects.filter(action=action).order_by("sequence")
        if target_id is not None:
            events = events.filter(target_id=str(target_id))
        return [(event.actor_username, json.loads(event.payload_json)) for event in events]

    return trail
