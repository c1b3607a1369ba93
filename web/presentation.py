"""Shapes of governed data for people: form fields from a template's variables, and lint
findings with a translated title and the token bar's marks."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.utils.translation import gettext_lazy as _

from governance.captions.lint import CONTEXT_LENGTH, KEY_POSITION_LIMIT, CaptionLint
from governance.captions.models import TemplateVersion
from governance.captions.schema import Variable, format_number, schema_parse

RULE_TITLES = {
    "token_limit": _("Over the 77-token limit: the end of the caption is cut"),
    "key_position": _("Key term after the first 20 tokens"),
    "caption_length": _("Much longer than the captions the model was trained on"),
    "banned_term": _("Banned term"),
    "required_term": _("Required term missing"),
    "non_english": _("Non-English text"),
    "variables": _("Missing or invalid value"),
    "examples": _("No examples"),
    "checklist": _("Empty checklist"),
    "labels": _("Missing translated labels"),
}
SEVERITY_TITLES = {"error": _("Error"), "warning": _("Warning"), "info": _("Note")}


def variable_fields(version: TemplateVersion, language: str) -> list[dict[str, Any]]:
    """One form field per variable, in the pattern's order, labelled in ``language``."""
    schema = schema_parse(version.pattern, version.variables)
    return [_field(variable, language) for variable in schema.variables.values()]


def _field(variable: Variable, language: str) -> dict[str, Any]:
    label = variable.label.get(language) or variable.label.get("en") or variable.name
    field: dict[str, Any] = {
        "name": variable.name,
        "type": variable.type,
        "label": label,
        "description": variable.description,
        "required": variable.required,
        "default": variable.default,
        "key": variable.key,
        "choices": [
            {"value": choice.value, "label": choice.label(language)} for choice in variable.choices
        ],
        "max_length": variable.max_length or None,
        "charset": variable.charset if variable.type == "text" else None,
        "minimum": format_number(variable.minimum) if variable.type == "number" else None,
        "maximum": format_number(variable.maximum) if variable.type == "number" else None,
        "step": (
            format_number(Decimal(1).scaleb(-variable.decimals))
            if variable.type == "number"
            else None
        ),
    }
    return field


def lint_view(lint: CaptionLint, key_variables: list[str]) -> dict[str, Any]:
    """The lint as the form's live panel shows it: findings with titles, and the bar."""
    return {
        "caption": lint.caption,
        "token_count": lint.token_count,
        "ok": lint.ok,
        "positions": dict(lint.positions),
        "key_variables": key_variables,
        "key_position_limit": KEY_POSITION_LIMIT,
        "context_length": CONTEXT_LENGTH,
        "findings": [
            {
                **finding.to_dict(),
                "title": str(RULE_TITLES.get(finding.rule, finding.rule)),
                "severity_title": str(SEVERITY_TITLES.get(finding.severity, finding.severity)),
            }
            for finding in lint.findings
        ],
    }


def key_variables(version: TemplateVersion) -> list[str]:
    """The names of the version's key variables (the 20-token rule's subjects)."""
    schema = schema_parse(version.pattern, version.variables)
    return [name for name, variable in schema.variables.items() if variable.key]


ROLE_NAMES = {
    "requester": _("Requester"),
    "reviewer": _("Reviewer"),
    "auditor": _("Auditor"),
    "model_admin": _("Model administrator"),
    "administrator": _("Administrator"),
}
REVIEW_STATUS_NAMES = {
    "pending": _("Pending review"),
    "approved": _("Approved"),
    "rejected": _("Rejected"),
    "changes_requested": _("Changes requested"),
}
JOB_STATUS_NAMES = {
    "queued": _("Queued"),
    "running": _("Running"),
    "succeeded": _("Succeeded"),
    "failed": _("Failed"),
    "cancelled": _("Cancelled"),
}
MOVE_STATUS_NAMES = {"pending": _("Pending"), "approved": _("Approved"), "rejected": _("Rejected")}
DELIVERY_STATUS_NAMES = {
    "pending": _("Pending"),
    "delivered": _("Delivered"),
    "failed": _("Failed"),
}
