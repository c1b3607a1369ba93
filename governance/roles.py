"""The five governance roles, held as Django groups, and the checks every service uses.

Inside ``roles_memoised`` (one web request: ``config.middleware.RolesMemoMiddleware``) a
user's roles are read from the database once; elsewhere every check reads them afresh.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.db import transaction

from governance.audit.actions import AuditAction
from governance.audit.services import audit_append
from governance.errors import GovernanceError, RoleRequired


class Role(enum.StrEnum):
    REQUESTER = "requester"  # fills in published caption templates and submits jobs
    REVIEWER = "reviewer"  # approves caption template versions (and, later, requests)
    AUDITOR = "auditor"  # reads everything, changes nothing
    MODEL_ADMIN = "model_admin"  # registers model versions and approves production moves
    ADMINISTRATOR = "administrator"  # manages roles and the organisation's lint term lists


ROLE_NAMES = frozenset(role.value for role in Role)

# User pk -> role names, for the current request only (None outside ``roles_memoised``).
_memo: ContextVar[dict[Any, frozenset[str]] | None] = ContextVar("roles_memo", default=None)


@contextmanager
def roles_memoised() -> Iterator[None]:
    """Within the block, read each user's roles once; the memo ends with the block."""
    token = _memo.set({})
    try:
        yield
    finally:
        _memo.reset(token)


def user_roles(user: AbstractBaseUser | AnonymousUser | None) -> frozenset[str]:
    """Return the names of the roles an active user holds (superusers are not exempt)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return frozenset()
    memo = _memo.get()
    if memo is not None and user.pk in memo:
        return memo[user.pk]
    groups = user.groups.filter(name__in=ROLE_NAMES)  # type: ignore[union-attr]
    roles = frozenset(groups.values_list("name", flat=True))
    if memo is not None:
        memo[user.pk] = roles
    return roles


def user_has_role(user: AbstractBaseUser | AnonymousUser | None, role: Role | str) -> bool:
    """Return whether an active user is in the role's group (superusers are not exempt)."""
    return Role(role).value in user_roles(user)


def _forget(user: AbstractBaseUser) -> None:
    # A grant or revoke inside a memoised block is seen by the block's next check.
    memo = _memo.get()
    if memo is not None:
        memo.pop(user.pk, None)


def role_require(user: AbstractBaseUser | None, role: Role | str, *, action: str) -> None:
    """Raise RoleRequired unless the user holds the role."""
    if not user_has_role(user, role):
        raise RoleRequired(user, Role(role).value, action)


def role_grant(
    *, user: AbstractBaseUser, role: Role | str, granted_by: AbstractBaseUser | None
) -> bool:
    """Put the user in the role's group; return False when they already held it."""
    role = _parse(role)
    _require_administrator(granted_by, "granting a role")
    with transaction.atomic():
        group, _ = Group.objects.get_or_create(name=role.value)
        if user.groups.filter(pk=group.pk).exists():  # type: ignore[attr-defined]
            return False
        user.groups.add(group)  # type: ignore[attr-defined]
        _forget(user)
        _audit(granted_by, AuditAction.ROLE_GRANTED, user, role)
    return True


def role_revoke(
    *, user: AbstractBaseUser, role: Role | str, revoked_by: AbstractBaseUser | None
) -> bool:
    """Take the user out of the role's group; return False when they did not hold it."""
    role = _parse(role)
    _require_administrator(revoked_by, "revoking a role")
    with transaction.atomic():
        group = Group.objects.filter(name=role.value).first()
        if group is None or not user.groups.filter(pk=group.pk).exists():  # type: ignore[attr-defined]
            return False
        user.groups.remove(group)  # type: ignore[attr-defined]
        _forget(user)
        _audit(revoked_by, AuditAction.ROLE_REVOKED, user, role)
    return True


def _audit(
    actor: AbstractBaseUser | None, action: AuditAction, user: AbstractBaseUser, role: Role
) -> None:
    audit_append(
        actor=actor,
        action=action,
        target_type="user",
        target_id=user.pk,
        payload={"username": user.get_username(), "role": role.value},
    )


def _require_administrator(actor: AbstractBaseUser | None, action: str) -> None:
    # None is the operator at the command line (manage.py assign_role), trusted like a migration.
    if actor is not None:
        role_require(actor, Role.ADMINISTRATOR, action=action)


def _parse(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        names = ", ".join(r.value for r in Role)
        raise GovernanceError(f"unknown role {role!r}; roles are {names}") from None
