"""Webhooks follow the audit trail: a subscribed event becomes a signed delivery.

The delivery row is written in the transaction of the event itself, so a write that rolls
back sends nothing, and a committed one is never forgotten; the POST happens after commit,
on a Celery task (or a thread of the embedded default), retried with exponential backoff.
The subscribed endpoints are read before the audit chain's head lock is taken (the
``audit_appending`` signal); only the delivery rows, which need the event, are written under it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import transaction

from governance.audit.actions import AuditAction
from governance.audit.chain import format_time
from governance.audit.models import AuditEvent
from governance.integrations.models import WebhookDelivery, WebhookEndpoint

log = logging.getLogger(__name__)

# The events an endpoint may subscribe to: requests, jobs, reviews and alias moves.
WEBHOOK_EVENTS: tuple[str, ...] = (
    AuditAction.REQUEST_CREATED,
    AuditAction.REQUEST_CHANGES_REQUESTED,
    AuditAction.JOB_CREATED,
    AuditAction.JOB_SUCCEEDED,
    AuditAction.JOB_FAILED,
    AuditAction.JOB_CANCELLED,
    AuditAction.REVIEW_APPROVED,
    AuditAction.REVIEW_REJECTED,
    AuditAction.REVIEW_CHANGES_REQUESTED,
    AuditAction.REGISTRY_ALIAS_MOVE_REQUESTED,
    AuditAction.REGISTRY_ALIAS_MOVED,
    AuditAction.REGISTRY_ALIAS_MOVE_REJECTED,
)
SIGNATURE_HEADER = "X-VarClip-Signature-256"
EVENT_HEADER = "X-VarClip-Event"
DELIVERY_HEADER = "X-VarClip-Delivery"


def signature(secret: str, body: bytes) -> str:
    """Return the hex HMAC-SHA-256 of the body under the endpoint's secret."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def event_body(delivery_id: Any, event: AuditEvent) -> str:
    """The JSON document sent for one event (compact, keys sorted, UTF-8)."""
    document = {
        "id": str(delivery_id),
        "event": event.action,
        "sequence": event.sequence,
        "occurred_at": format_time(event.occurred_at),
        "actor": event.actor_username or None,
        "target": {"type": event.target_type, "id": event.target_id},
        "data": event.payload,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def on_audit_appending(
    sender: type, action: str, **kwargs: Any
) -> Callable[[AuditEvent], None] | None:
    """``audit_appending``: find the active endpoints subscribed to the action before the
    chain lock is taken; the returned callable queues one delivery per endpoint."""
    if action not in WEBHOOK_EVENTS:
        return None
    # JSON list containment is not portable to SQLite; endpoints are few, filter here.
    endpoints = [
        endpoint.pk
        for endpoint in WebhookEndpoint.objects.filter(active=True).only("pk", "events")
        if action in endpoint.events
    ]
    if not endpoints:
        return None

    def queue_deliveries(event: AuditEvent) -> None:
        for endpoint_id in endpoints:
            delivery = WebhookDelivery(
                endpoint_id=endpoint_id, event_type=event.action, event_sequence=event.sequence
            )
            delivery.body = event_body(delivery.id, event)
            delivery.save(force_insert=True)
            transaction.on_commit(lambda pk=delivery.pk: webhook_dispatch(delivery_id=pk))

    return queue_deliveries


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def webhook_dispatch(*, delivery_id: Any) -> None:
    """Hand a delivery to Celery (or, without a broker, to a thread); never raises."""
    if settings.CELERY_BROKER_URL:
        from governance.integrations.tasks import deliver_webhook

        try:
            deliver_webhook.apply_async(args=(str(delivery_id),))
        except Exception as exc:  # kombu raises many types for an unreachable broker
            log.warning("webhook delivery %s not queued (%s)", delivery_id, exc)
        return
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="webhooks")
        _executor.submit(_deliver_inprocess, str(delivery_id))


def _deliver_inprocess(delivery_id: str) -> None:
    from django.db import close_old_connections

    from governance.integrations.services import webhook_deliver

    try:
        while (outcome := webhook_deliver(delivery_id=delivery_id)).retry_in is not None:
            time.sleep(outcome.retry_in)
    except Exception:
        log.exception("in-process webhook delivery %s crashed", delivery_id)
    finally:
        close_old_connections()
