"""What every endpoint of the API shares: service errors in the one error shape, role
permissions, throttles, and the query-parameter parsing helpers."""

from __future__ import annotations

import math
from typing import Any

from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, serializers
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from config.api_errors import error_body
from governance.integrations.services import QuotaExceeded
from governance.roles import Role, user_has_role
from web.errors import SERVICE_ERRORS, refusal


class ServiceApi(APIView):
    """An endpoint that calls one service; the service's named errors become API errors."""

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, SERVICE_ERRORS):
            return service_error_response(exc)
        return super().handle_exception(exc)


def service_error_response(exc: BaseException) -> Response:
    """Render a service error in the API's error shape (429 with what remains for quotas)."""
    refused = refusal(exc)
    body = error_body(refused.code, refused.detail, refused.fields)
    headers = {}
    if isinstance(exc, QuotaExceeded):
        body["error"].update(
            limit=exc.limit,
            used=exc.used,
            requested=exc.requested,
            remaining=exc.remaining,
            resets_at=exc.resets_at.isoformat(),
        )
        wait = (exc.resets_at - timezone.now()).total_seconds()
        headers["Retry-After"] = str(max(1, math.ceil(wait)))
    return Response(body, status=refused.status, headers=headers)


def has_role(*roles: Role) -> type[BasePermission]:
    """A permission class: the user holds one of the roles (staff pass for reading only)."""

    class HasRole(BasePermission):
        message = f"this needs one of the roles: {', '.join(r.value for r in roles)}"

        def has_permission(self, request: Any, view: Any) -> bool:
            user = request.user
            if any(user_has_role(user, role) for role in roles):
                return True
            return bool(user.is_authenticated and user.is_staff and request.method == "GET")

    return HasRole


class _ScopedThrottle(SimpleRateThrottle):
    """Reads its rate when used (not at import), so settings overrides apply."""

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)  # type: ignore[no-any-return]


class SubmissionThrottle(_ScopedThrottle):
    """Submissions per user."""

    scope = "submission"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        if request.method != "POST":
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class LoginThrottle(_ScopedThrottle):
    """Sign-in attempts per client address and username, for the API and the web page."""

    scope = "login"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        if request.method != "POST":
            return None
        data = getattr(request, "data", None)
        username = data.get("username") if isinstance(data, dict) else None
        username = str(username or request.POST.get("username") or "")[:150].lower()
        ident = f"{self.get_ident(request)}:{username}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


def parse_query(serializer_class: type[serializers.Serializer], request: Any) -> dict[str, Any]:
    """Validate query parameters with a serializer; unknown parameters are ignored."""
    data = serializer_class(data=request.query_params)
    if not data.is_valid():
        raise exceptions.ValidationError(data.errors)
    return {key: value for key, value in data.validated_data.items() if value not in (None, "")}


@csrf_exempt  # a POST to an unknown path is a JSON 404, not the CSRF middleware's HTML 403
def api_not_found(request: Any, *args: Any, **kwargs: Any) -> Any:
    """Any other path under /api/v1/: a 404 in the error shape, not an HTML page."""
    from django.http import JsonResponse

    return JsonResponse(error_body("not_found", "No such endpoint."), status=404)
