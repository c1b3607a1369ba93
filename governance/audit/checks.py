"""Deployment checks of the audit trail (``manage.py check --deploy``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.security, deploy=True)
def check_audit_key(**_: Any) -> list[checks.CheckMessage]:
    """Warn when the chain key is derived from SECRET_KEY instead of set on its own."""
    if settings.AUDIT_HMAC_KEY:
        return []
    return [
        checks.Warning(
            "AUDIT_HMAC_KEY is not set, so the audit chain key is derived from SECRET_KEY: "
            "rotating SECRET_KEY would make every recorded event fail verification.",
            hint="Set AUDIT_HMAC_KEY to 32+ random characters, kept outside the database.",
            id="audit.W001",
        )
    ]
