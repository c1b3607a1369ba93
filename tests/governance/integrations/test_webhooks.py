"""Webhooks: signed deliveries of governed events, retried with backoff, logged, audited."""

import hashlib
import hmac
import json

import pytest
from django.db import transaction

from governance.approvals.services import review_decide
from governance.errors import RoleRequired
from governance.integrations.models import DeliveryStatus, WebhookDelivery
from governance.integrations.services import (
    IntegrationInputError,
    webhook_backoff,
    webhook_deliver,
    webhook_endpoint_create,
    webhook_endpoint_deactivate,
)
from governance.integrations.tasks import deliver_webhook
from governance.roles import Role

pytestmark = pytest.mark.django_db
CHECKLIST = ["The shape's colour matches the brief", "Nothing offensive or off-brand"]


@pytest.fixture
def endpoint(receiver):
    return webhook_endpoint_create(
        url=receiver.url, events=["review.approved", "request.created"], created_by=None
    )


def test_an_approval_is_delivered_signed_with_the_endpoints_secret(
    endpoint, receiver, output, reviewer, audit_trail
):
    review_decide(output=output, reviewer=reviewer, decision="approved", checklist=CHECKLIST)
    delivery = WebhookDelivery.objects.get(event_type="review.approved")
    outcome = webhook_deliver(delivery_id=delivery.pk)
    assert outcome.status == DeliveryStatus.DELIVERED and outcome.retry_in is None
    headers, body = receiver.received[-1]
    expected = hmac.new(endpoint.secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-VarClip-Signature-256"] == expected
    assert headers["X-VarClip-Event"] == "review.approved"
    document = json.loads(body)
    assert document["target"] == {"type": "output", "id": str(output.pk)}
    assert document["actor"] == "rory" and document["data"]["decision"] == "approved"
    assert document["id"] == str(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.log.get().status_code == 204
    assert audit_trail("webhook.delivered", delivery.pk)[0][1]["status_code"] == 204


def test_only_subscribed_events_make_deliveries(endpoint, output):
    # request.created is subscribed (one request), job.* and output.* are not.
    assert list(WebhookDelivery.objects.values_list("event_type", flat=True)) == ["request.created"]


def test_an_event_rolled_back_with_its_write_sends_nothing(endpoint, submit):
    with pytest.raises(RuntimeError), transaction.atomic():
        submit()
        raise RuntimeError("the request's transaction fails")
    assert WebhookDelivery.objects.count() == 0


def test_a_failing_receiver_is_retried_with_growing_backoff_until_it_answers(
    endpoint, receiver, submit, settings
):
    settings.WEBHOOK_BACKOFF_SECONDS = 10
    submit()
    delivery = WebhookDelivery.objects.get()
    receiver.statuses = [500, 503]
    first = webhook_deliver(delivery_id=delivery.pk)
    second = webhook_deliver(delivery_id=delivery.pk)
    third = webhook_deliver(delivery_id=delivery.pk)
    assert (first.retry_in, second.retry_in, third.retry_in) == (10.0, 20.0, None)
    assert third.status == DeliveryStatus.DELIVERED
    assert [a.status_code for a in delivery.log.all()] == [500, 503, 204]
    bodies = [body for _, body in receiver.received]
    assert bodies[0] == bodies[1] == bodies[2]  # the same signed bytes on every retry


def test_the_task_gives_up_after_the_last_attempt_and_audits_it(
    endpoint, receiver, submit, settings, audit_trail
):
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    submit()
    delivery = WebhookDelivery.objects.get()
    receiver.statuses = [500, 500, 500]
    result = deliver_webhook.apply(args=(str(delivery.pk),))  # eager: retries run at once
    assert result.get() == DeliveryStatus.FAILED
    delivery.refresh_from_db()
    assert delivery.attempts == 3 and delivery.last_error == "HTTP 500"
    assert audit_trail("webhook.failed", delivery.pk)[0][1]["attempts"] == 3


def test_an_unreachable_receiver_is_an_attempt_with_the_error(submit, receiver):
    webhook_endpoint_create(url="http://127.0.0.1:9/none", events=["request.created"],
                            created_by=None)  # fmt: skip
    submit()
    outcome = webhook_deliver(delivery_id=WebhookDelivery.objects.get().pk)
    assert outcome.retry_in == webhook_backoff(1)
    assert "ConnectionError" in WebhookDelivery.objects.get().last_error


def test_a_deactivated_endpoint_fails_its_pending_deliveries_without_sending(
    endpoint, receiver, submit
):
    submit()
    webhook_endpoint_deactivate(endpoint=endpoint, by=None)
    outcome = webhook_deliver(delivery_id=WebhookDelivery.objects.get().pk)
    assert outcome.status == DeliveryStatus.FAILED and receiver.received == []


def test_endpoints_need_an_administrator_a_url_and_known_events(requester):
    with pytest.raises(RoleRequired):
        webhook_endpoint_create(url="https://x.test/", events=["job.failed"], created_by=requester)
    with pytest.raises(IntegrationInputError) as refused:
        webhook_endpoint_create(url="file:///etc/passwd", events=["nope"], created_by=None)
    assert set(refused.value.errors) == {"url", "events"}


def test_registering_an_endpoint_is_audited(audit_trail):
    from tests.governance.approvals.conftest import make_user

    admin = make_user("adele", Role.ADMINISTRATOR)
    created = webhook_endpoint_create(url="https://x.test/h", events=["job.failed"],
                                      created_by=admin)  # fmt: skip
    assert audit_trail("webhook.endpoint_created", created.pk) == [
        ("adele", {"url": "https://x.test/h", "events": ["job.failed"]})
    ]
