"""Shared helpers of the approvals commands: look people and records up, parse --var."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError


def user_named(username: str | None) -> Any:
    """Return the user, or None for no name (the operator at the shell)."""
    if not username:
        return None
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"no user named {username!r}")
    return user


def parse_vars(pairs: list[str] | None) -> dict[str, str]:
    """Turn ``name=value`` arguments into a dict, refusing a pair without ``=``."""
    values: dict[str, str] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CommandError(f"--var {pair!r} must look like name=value")
        values[name] = value
    return values


def get_or_fail(queryset: Any, what: str, pk: str) -> Any:
    """Return the row with this primary key, or fail naming what was not found."""
    from django.core.exceptions import ValidationError

    try:
        found = queryset.filter(pk=pk).first()
    except (ValueError, ValidationError):
        found = None
    if found is None:
        raise CommandError(f"no {what} {pk!r}")
    return found
