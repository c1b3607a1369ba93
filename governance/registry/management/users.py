"""Shared helpers of the registry and role commands."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.management.base import CommandError


def user_named(username: str) -> AbstractBaseUser:
    """The user with this username, or a CommandError naming it."""
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"no user {username!r}")
    return user
