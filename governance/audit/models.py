"""Audit events, chained by keyed hashes, and the one-row head that serialises appends.

Append-only is enforced twice: in Django (the queryset and the model refuse every change)
and, on PostgreSQL, by triggers that refuse UPDATE, DELETE and TRUNCATE whatever client
sends them. The actor is a snapshot (id and username), not a foreign key, so deleting or
renaming a user never rewrites, blocks or orphans history.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

import pgtrigger
from django.db import models

from governance.audit.actions import AuditAction
from governance.audit.errors import AuditTrailImmutable

_REFUSE = (
    "RAISE EXCEPTION 'the audit trail is append-only: % on % is refused', TG_OP, TG_TABLE_NAME"
    " USING ERRCODE = 'insufficient_privilege'; RETURN NULL;"
)
_REFUSE_HEAD_MOVE = (
    "RAISE EXCEPTION 'the audit chain head only moves forward one event at a time'"
    " USING ERRCODE = 'insufficient_privilege'; RETURN NULL;"
)


def _refuse(name: str, operation: pgtrigger.Operation, **kwargs: Any) -> pgtrigger.Trigger:
    return pgtrigger.Trigger(
        name=name, when=pgtrigger.Before, operation=operation, func=_REFUSE, **kwargs
    )


def _immutable(what: str) -> NoReturn:
    raise AuditTrailImmutable(f"the audit trail is append-only: {what} is refused")


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    """Reads only: every bulk write path raises ``AuditTrailImmutable``."""

    def update(self, **kwargs: Any) -> NoReturn:
        _immutable("update")

    def _update(self, values: Any) -> NoReturn:
        _immutable("update")

    def delete(self) -> NoReturn:
        _immutable("delete")

    def _raw_delete(self, using: Any) -> NoReturn:
        _immutable("delete")

    def bulk_update(self, objs: Any, fields: Any, batch_size: Any = None) -> NoReturn:
        _immutable("bulk update")

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> NoReturn:
        _immutable("bulk create (append through audit_append)")


class AuditEvent(models.Model):
    sequence = models.BigIntegerField(primary_key=True)
    occurred_at = models.DateTimeField()
    actor_id = models.BigIntegerField(null=True, blank=True)
    actor_username = models.CharField(max_length=150, blank=True)
    # A value of AuditAction, checked by audit_append; no field choices, so that adding a
    # member to the enum needs no migration.
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64)
    target_id = models.CharField(max_length=128, blank=True)
    # Canonical JSON text, stored verbatim so that the hashed bytes read back unchanged
    # (jsonb would reorder keys and reformat numbers).
    payload_json = models.TextField(default="{}")
    request_id = models.CharField(max_length=64, blank=True)
    client_ip = models.CharField(max_length=45, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["sequence"]
        # Django's internal writes go through the base manager: make it the guarded one.
        base_manager_name = "objects"
        indexes = [
            models.Index(fields=["actor_id", "sequence"], name="audit_actor_seq"),
            models.Index(fields=["action", "sequence"], name="audit_action_seq"),
            models.Index(fields=["target_type", "target_id", "sequence"], name="audit_target_seq"),
            models.Index(fields=["occurred_at"], name="audit_occurred_at"),
            models.Index(fields=["request_id"], name="audit_request_id"),
            # Searching by username (issue 9); the trigram indexes for text search are
            # PostgreSQL-only and live in migration 0003 alone.
            models.Index(fields=["actor_username", "sequence"], name="audit_actor_name_seq"),
        ]
        triggers = [
            _refuse("append_only", pgtrigger.Update | pgtrigger.Delete),
            _refuse("no_truncate", pgtrigger.Truncate, level=pgtrigger.Statement),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.action} {self.target_type}:{self.target_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            _immutable(f"changing event #{self.sequence}")
        if not self.hash:
            raise AuditTrailImmutable(
                "audit events are written only by governance.audit.services.audit_append"
            )
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        _immutable(f"deleting event #{self.sequence}")

    @property
    def payload(self) -> dict[str, Any]:
        """The payload as a dict (parsed from its canonical JSON text)."""
        return json.loads(self.payload_json)  # type: ignore[no-any-return]

    @property
    def action_label(self) -> str:
        """The action's human label (the raw value if it left the enum)."""
        try:
            return str(AuditAction(self.action).label)
        except ValueError:
            return self.action


class AuditChainHead(models.Model):
    """The last event's sequence and hash; its row lock serialises appends."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    sequence = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="audit_single_head")]
        triggers = [
            _refuse("head_no_delete", pgtrigger.Delete),
            _refuse("head_no_truncate", pgtrigger.Truncate, level=pgtrigger.Statement),
            pgtrigger.Trigger(
                name="head_forward_only",
                when=pgtrigger.Before,
                operation=pgtrigger.Update,
                condition=pgtrigger.Condition("NEW.sequence IS DISTINCT FROM OLD.sequence + 1"),
                func=_REFUSE_HEAD_MOVE,
            ),
        ]

    def __str__(self) -> str:
        return f"audit head #{self.sequence}"
