"""The audit chain's standing for the auditor pages: its head, last anchor, last check.

A full verification walks every event, so it runs when an auditor asks for it (or a
scheduled job does) and its result is remembered in the cache for the pages to show.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from governance.audit.actions import AuditAction
from governance.audit.models import AuditChainHead, AuditEvent
from governance.audit.verification import audit_verify

CACHE_SECONDS = 30 * 24 * 3600


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
        "last_verification": cache.get(_cache_key()),
    }


def chain_verify() -> dict[str, Any]:
    """Verify the whole chain and its latest anchors now; remember and return the result."""
    result = audit_verify(anchors=3)
    summary = {
        "ok": result.ok,
        "checked": result.checked,
        "last_sequence": result.last_sequence,
        "anchors_checked": result.anchors_checked,
        "seconds": round(result.seconds, 3),
        "problems": [str(problem) for problem in result.problems[:20]],
        "verified_at": timezone.now().isoformat(),
    }
    cache.set(_cache_key(), summary, CACHE_SECONDS)
    return summary


def _cache_key() -> str:
    # Per database: two installations (or test runs) sharing one cache keep their own result.
    return f"web:audit-chain:last-verification:{connection.settings_dict['NAME']}"
