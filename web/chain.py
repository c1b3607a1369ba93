"""The audit chain's standing for the auditor pages: its head, last anchor, last check.

A full verification walks every event, so it runs when an auditor asks for it (or a
scheduled `audit_verify` does); each one is recorded in the chain as an `audit.verified`
event, and the pages show the newest.
"""

from __future__ import annotations

import json
from typing import Any

from governance.audit.actions import AuditAction
from governance.audit.models import AuditChainHead, AuditEvent
from governance.audit.services import Actor
from governance.audit.verification import audit_verify_recorded, last_recorded_verification


def chain_status() -> dict[str, Any]:
    """The head, the newest anchor the chain records, and the last verification (or None)."""
    head = AuditChainHead.objects.filter(pk=1).values("sequence", "hash", "updated_at").first()
    anchored = (
        AuditEvent.objects.filter(action=AuditAction.AUDIT_ANCHORED)
        .order_by("-sequence")
        .values("sequence", "occurred_at", "payload_json")
        .first()
    )
    anchor = None
    if anchored is not None:
        payload = json.loads(anchored["payload_json"])
        anchor = {
            "sequence": payload.get("sequence"),
            "hash": payload.get("hash"),
            "anchored_at": anchored["occurred_at"].isoformat(),
            "object": payload.get("object"),
            "protection": payload.get("protection"),
        }
    return {
        "head_sequence": head["sequence"] if head else 0,
        "head_hash": head["hash"] if head else None,
        "last_anchor": anchor,
        "last_verification": last_recorded_verification(),
    }


def chain_verify(actor: Actor) -> dict[str, Any]:
    """Verify the whole chain and its latest anchors now, record it, and return what the
    pages show for it."""
    return audit_verify_recorded(actor=actor, anchors=3)[1]
