"""One error shape for the whole API: ``{"error": {"code", "message", "fields"}}``.

Field errors keep DRF's per-field lists under ``fields`` so a form can show each one
next to its input; everything else gets a stable machine-readable ``code``.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from config.unavailable import UNAVAILABLE_ERRORS, unavailable_message


def _flatten(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten(item) for item in detail]
    return str(detail)


def error_body(code: str, message: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the API's error envelope."""
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render every API error, including unavailable services, in the one error shape."""
    if isinstance(exc, UNAVAILABLE_ERRORS):
        return Response(
            error_body("service_unavailable", unavailable_message(exc)),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        if isinstance(detail, dict):
            fields = _flatten(detail)
            non_field = fields.pop("non_field_errors", None)
            message = "; ".join(non_field) if non_field else "Invalid input."
            if non_field:
                fields["non_field_errors"] = non_field
        else:
            fields = {"non_field_errors": _flatten(detail)}
            message = "; ".join(fields["non_field_errors"])
        response.data = error_body("invalid", message, fields)
        return response
    code = getattr(exc, "default_code", "error")
    detail = getattr(exc, "detail", str(exc))
    if isinstance(detail, exceptions.ErrorDetail):
        code = detail.code or code
    extra = response.data if isinstance(response.data, dict) else {}
    body = error_body(str(code), str(detail))
    for key in ("remaining", "resets_at", "wait"):
        if key in extra:
            body["error"][key] = extra[key]
    response.data = body
    return response
