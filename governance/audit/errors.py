"""Named errors of the audit trail; each message says what to do about it."""

from __future__ import annotations


class AuditError(Exception):
    """An audit operation was refused; the message says why."""


class AuditOutsideTransaction(AuditError):
    """``audit_append`` was called outside ``transaction.atomic``: the event could outlive
    a rolled-back write, or a committed write could lose its event."""


class AuditInvalid(AuditError, ValueError):
    """An argument of an audit call is malformed; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class AuditPayloadTooLarge(AuditInvalid):
    """The payload's canonical JSON exceeds the size cap."""


class AuditTrailImmutable(AuditError):
    """Something tried to change or remove a recorded audit event."""


class AuditChainBroken(AuditError):
    """The chain head is inconsistent with the events; run ``manage.py audit_verify``."""


class AnchorStoreError(AuditError):
    """The anchor store refused or could not be reached."""
