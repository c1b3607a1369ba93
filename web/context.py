"""Template context shared by every page."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from web.selectors import user_roles as roles_of


def user_roles(request: HttpRequest) -> dict[str, Any]:
    """The signed-in user's governance roles, for the navigation."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"user_roles": []}
    return {"user_roles": roles_of(user)}
