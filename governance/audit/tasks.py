"""Celery beat anchors the chain head on a schedule (``AUDIT_ANCHOR_INTERVAL``)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="governance.audit.tasks.anchor_audit_chain")
def anchor_audit_chain() -> int | None:
    """Anchor the chain head; return the anchored sequence, or None if nothing was new."""
    from governance.audit.anchoring import audit_anchor

    anchor = audit_anchor()
    return anchor.sequence if anchor else None
