"""Per-request middleware of the platform: role checks read once per request, and an
unreachable database, store or queue turned into a clear 503, never a 500 stack trace."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from config.api_errors import error_body
from config.unavailable import UNAVAILABLE_ERRORS, unavailable_message
from governance.roles import roles_memoised

log = logging.getLogger(__name__)


class RolesMemoMiddleware:
    """Reads each user's roles from the database once per request, never across requests,
    so a role granted or revoked takes effect at the next request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with roles_memoised():
            return self.get_response(request)


class ServiceUnavailableMiddleware:
    """Answers 503 with a plain message when a backing service fails during a request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if not isinstance(exc, UNAVAILABLE_ERRORS):
            return None
        message = unavailable_message(exc)
        log.warning("service unavailable on %s: %s", request.path, type(exc).__name__)
        if request.path.startswith("/api/"):
            body = json.dumps(error_body("service_unavailable", message))
            content_type = "application/json"
        else:
            body = f"<!doctype html><title>503</title><h1>Service unavailable</h1><p>{message}</p>"
            content_type = "text/html; charset=utf-8"
        response = HttpResponse(body, status=503, content_type=content_type)
        response["Retry-After"] = "5"
        return response
