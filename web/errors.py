"""What a refused service call means to a person and to an API client.

Services raise named errors with English detail; pages show a translated headline above
that detail, and the API turns the same errors into its one error shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.utils.translation import gettext_lazy as _

from generation.models import InvalidTransition as JobInvalidTransition
from generation.services import JobInputError
from governance.approvals.metrics import MetricsRangeError
from governance.approvals.models import ImmutableRecordError
from governance.audit.errors import AnchorStoreError, AuditInvalid
from governance.captions.schema import CaptionRenderError, TemplateSchemaError
from governance.captions.services import TemplateError
from governance.errors import (
    GovernanceError,
    InvalidTransition,
    RoleRequired,
    SelfApprovalForbidden,
)
from governance.integrations.services import QuotaExceeded
from governance.registry.services import RegistryError

SERVICE_ERRORS: tuple[type[BaseException], ...] = (
    GovernanceError,
    RegistryError,
    JobInputError,
    JobInvalidTransition,
    TemplateSchemaError,
    CaptionRenderError,
    AuditInvalid,
    AnchorStoreError,
    MetricsRangeError,
    ImmutableRecordError,
)


@dataclass(frozen=True)
class Refusal:
    """A refused call: HTTP status, stable code, translated headline, English detail, fields."""

    status: int
    code: str
    headline: str
    detail: str
    fields: dict[str, list[str]] = field(default_factory=dict)


def refusal(exc: BaseException) -> Refusal:
    """Describe one of SERVICE_ERRORS (the most specific class decides)."""
    detail = str(exc)
    if isinstance(exc, SelfApprovalForbidden):
        headline = _("Separation of duties: you cannot decide on something you asked for.")
        return Refusal(403, "self_approval_forbidden", str(headline), detail)
    if isinstance(exc, RoleRequired):
        headline = _("You do not hold the role this action needs.")
        return Refusal(403, "role_required", str(headline), detail)
    if isinstance(exc, InvalidTransition | JobInvalidTransition | ImmutableRecordError):
        headline = _("This has moved on since the page was loaded; that step is no longer open.")
        return Refusal(409, "invalid_transition", str(headline), detail)
    if isinstance(exc, QuotaExceeded):
        headline = _("Your team's daily image quota does not cover this request.")
        return Refusal(429, "quota_exceeded", str(headline), detail)
    fields = _fields(exc)
    if fields is not None:
        headline = _("Please correct the fields marked below.")
        return Refusal(400, "invalid", str(headline), detail, fields)
    if isinstance(exc, AnchorStoreError):
        headline = _("The anchor store could not be reached.")
        return Refusal(503, "service_unavailable", str(headline), detail)
    if isinstance(exc, RegistryError):
        headline = _("The model registry refused this change.")
        return Refusal(400, "registry_refused", str(headline), detail)
    if isinstance(exc, TemplateError):
        headline = _("This caption template cannot be used.")
        return Refusal(400, "template_refused", str(headline), detail)
    headline = _("The platform refused this action.")
    return Refusal(400, "refused", str(headline), detail)


def _fields(exc: BaseException) -> dict[str, list[str]] | None:
    errors = getattr(exc, "errors", None)
    if isinstance(errors, dict) and errors:
        return {str(key): [str(value)] for key, value in errors.items()}
    if isinstance(exc, AuditInvalid | MetricsRangeError):
        return {exc.field: [getattr(exc, "message", None) or str(exc)]}
    return None
