"""Celery task: POST one webhook delivery, retrying with backoff until it lands or gives up."""

from __future__ import annotations

from celery import Task, shared_task


@shared_task(bind=True, acks_late=True, max_retries=None)
def deliver_webhook(self: Task, delivery_id: str) -> str:
    """Attempt the delivery; a failure that may pass is retried after the service's backoff."""
    from governance.integrations.services import webhook_deliver

    outcome = webhook_deliver(delivery_id=delivery_id)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.status
