"""Give every request an id (the caller's X-Request-ID or a new one) for its audit events."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from governance.audit.context import audit_context, clean_request_id


class AuditContextMiddleware:
    """Stores the request id and client address where ``audit_append`` finds them.

    The client address is ``REMOTE_ADDR``: behind a reverse proxy, configure the proxy
    and the WSGI server so that it holds the real client address.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = clean_request_id(request.headers.get("X-Request-ID"))
        with audit_context(
            request_id=given, client_ip=request.META.get("REMOTE_ADDR", "")
        ) as request_id:
            request.request_id = request_id  # type: ignore[attr-defined]
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response
