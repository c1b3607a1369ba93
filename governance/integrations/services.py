"""Webhook endpoints and deliveries, and per-team daily image quotas: every write here.

Managing endpoints and quotas is an administrator's act (``None`` is the operator at the
shell). Quotas are claimed inside the request's own transaction, under the team's row lock,
so two submissions of one team can never both take the last images of the day.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from generation.models import GenerationJob
from governance.approvals.models import Team
from governance.audit.actions import AuditAction
from governance.audit.services import audit_append
from governance.errors import GovernanceError
from governance.integrations.models import (
    DeliveryStatus,
    TeamQuota,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from governance.integrations.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    WEBHOOK_EVENTS,
    signature,
)
from governance.roles import Role, role_require


class IntegrationInputError(GovernanceError):
    """Input to an integration service is invalid; ``errors`` maps each field to why."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{key}: {value}" for key, value in errors.items()))
        self.errors = errors


class QuotaExceeded(GovernanceError):
    """A team asked for more images than remain of its daily quota."""

    def __init__(self, *, team: Team, limit: int, used: int, requested: int, resets_at: datetime):
        self.team = team
        self.limit = limit
        self.used = used
        self.requested = requested
        self.remaining = max(0, limit - used)
        self.resets_at = resets_at
        super().__init__(
            f"team {team} may request {limit} images a day; {self.remaining} remain today and "
            f"this request needs {requested} (the quota resets at {resets_at.isoformat()})"
        )


# --- webhook endpoints --------------------------------------------------------------------


def webhook_endpoint_create(
    *,
    url: str,
    events: list[str],
    created_by: AbstractBaseUser | None,
    description: str = "",
) -> WebhookEndpoint:
    """Register an endpoint for some events; its signing secret is made here and kept."""
    _require_administrator(created_by, "registering a webhook")
    errors: dict[str, str] = {}
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        errors["url"] = "must be an http:// or https:// URL with a host"
    if not isinstance(events, list) or not events:
        errors["events"] = "name at least one event"
    else:
        unknown = sorted({str(e) for e in events} - set(WEBHOOK_EVENTS))
        if unknown:
            errors["events"] = f"unknown events: {', '.join(unknown)}"
    if errors:
        raise IntegrationInputError(errors)
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.create(
            url=url,
            description=description.strip()[:200],
            secret=secrets.token_hex(32),
            events=sorted(set(events)),
            created_by=created_by,
        )
        audit_append(
            actor=created_by,
            action=AuditAction.WEBHOOK_ENDPOINT_CREATED,
            target_type="webhook_endpoint",
            target_id=endpoint.pk,
            payload={"url": url, "events": endpoint.events},
        )
    return endpoint


def webhook_endpoint_deactivate(
    *, endpoint: WebhookEndpoint, by: AbstractBaseUser | None
) -> WebhookEndpoint:
    """Stop sending to an endpoint; its delivery log stays."""
    _require_administrator(by, "deactivating a webhook")
    with transaction.atomic():
        locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if not locked.active:
            raise IntegrationInputError({"active": f"{locked} is already inactive"})
        locked.active = False
        locked.save(update_fields=["active"])
        audit_append(
            actor=by,
            action=AuditAction.WEBHOOK_ENDPOINT_DEACTIVATED,
            target_type="webhook_endpoint",
            target_id=locked.pk,
            payload={"url": locked.url},
        )
    return locked


# --- deliveries ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryOutcome:
    """Where a delivery stands after an attempt; ``retry_in`` seconds when it should retry."""

    status: str
    retry_in: float | None


def webhook_backoff(attempts: int) -> float:
    """Seconds to wait after the given number of failed attempts (doubling, capped at 1 h)."""
    return float(min(3600, settings.WEBHOOK_BACKOFF_SECONDS * 2 ** max(0, attempts - 1)))


def webhook_deliver(*, delivery_id: Any) -> DeliveryOutcome:
    """POST a pending delivery once and record the attempt; safe to call again.

    2xx delivers it; anything else retries after ``webhook_backoff`` until
    ``WEBHOOK_MAX_ATTEMPTS``, then fails it. Both ends are audited.
    """
    # 1. the delivery, unless it is already settled
    delivery = WebhookDelivery.objects.select_related("endpoint").filter(pk=delivery_id).first()
    if delivery is None:
        return DeliveryOutcome("missing", None)
    if delivery.status != DeliveryStatus.PENDING:
        return DeliveryOutcome(delivery.status, None)
    # 2. the POST, outside any transaction
    if delivery.endpoint.active:
        code, error, millis = _post(delivery)
    else:
        code, error, millis = None, "the endpoint was deactivated", 0
    # 3. the attempt and the new status, in one transaction with its audit event
    with transaction.atomic():
        locked = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
        if locked.status != DeliveryStatus.PENDING:
            return DeliveryOutcome(locked.status, None)
        locked.attempts += 1
        WebhookAttempt.objects.create(
            delivery=locked,
            number=locked.attempts,
            status_code=code,
            error=error[:2000],
            duration_ms=millis,
        )
        locked.last_status_code = code
        locked.last_error = error[:2000]
        retry_in = None
        if code is not None and 200 <= code < 300:
            locked.status = DeliveryStatus.DELIVERED
            locked.delivered_at = timezone.now()
            locked.next_attempt_at = None
        elif locked.attempts >= settings.WEBHOOK_MAX_ATTEMPTS or not delivery.endpoint.active:
            locked.status = DeliveryStatus.FAILED
            locked.next_attempt_at = None
        else:
            retry_in = webhook_backoff(locked.attempts)
            locked.next_attempt_at = timezone.now() + timedelta(seconds=retry_in)
        locked.save()
        if locked.status != DeliveryStatus.PENDING:
            audit_append(
                actor=None,
                action=(
                    AuditAction.WEBHOOK_DELIVERED
                    if locked.status == DeliveryStatus.DELIVERED
                    else AuditAction.WEBHOOK_FAILED
                ),
                target_type="webhook_delivery",
                target_id=locked.pk,
                payload={
                    "endpoint": locked.endpoint_id,
                    "event": locked.event_type,
                    "sequence": locked.event_sequence,
                    "attempts": locked.attempts,
                    "status_code": code,
                    "error": error[:500],
                },
            )
    return DeliveryOutcome(locked.status, retry_in)


def _post(delivery: WebhookDelivery) -> tuple[int | None, str, int]:
    body = delivery.body.encode()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "varclip-webhooks/1",
        EVENT_HEADER: delivery.event_type,
        DELIVERY_HEADER: str(delivery.pk),
        SIGNATURE_HEADER: signature(delivery.endpoint.secret, body),
    }
    started = time.perf_counter()
    try:
        response = requests.post(
            delivery.endpoint.url,
            data=body,
            headers=headers,
            timeout=(3.0, settings.WEBHOOK_TIMEOUT),
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        millis = int((time.perf_counter() - started) * 1000)
        return None, f"{type(exc).__name__}: {exc}", millis
    millis = int((time.perf_counter() - started) * 1000)
    error = "" if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
    return response.status_code, error, millis


# --- quotas -------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuotaStatus:
    """A team's quota today: ``limit`` None means unlimited."""

    team: str
    limit: int | None
    used: int
    remaining: int | None
    resets_at: datetime


def team_quota_set(
    *, team: Team, daily_images: int | None, by: AbstractBaseUser | None
) -> TeamQuota | None:
    """Set a team's daily image quota, or remove it (``None``: the default applies)."""
    _require_administrator(by, "setting a team quota")
    if daily_images is not None and (
        isinstance(daily_images, bool) or not isinstance(daily_images, int) or daily_images < 0
    ):
        raise IntegrationInputError({"daily_images": "must be a whole number, 0 or more"})
    with transaction.atomic():
        Team.objects.select_for_update().get(pk=team.pk)
        before = TeamQuota.objects.filter(team=team).values_list("daily_images", flat=True).first()
        if daily_images is None:
            TeamQuota.objects.filter(team=team).delete()
            quota = None
        else:
            quota, _ = TeamQuota.objects.update_or_create(
                team=team, defaults={"daily_images": daily_images, "updated_by": by}
            )
        audit_append(
            actor=by,
            action=AuditAction.QUOTA_SET,
            target_type="team",
            target_id=team.pk,
            payload={"team": team.name, "from": before, "to": daily_images},
        )
    return quota


def quota_status(*, team: Team, now: datetime | None = None) -> QuotaStatus:
    """How many images the team asked for today and how many remain."""
    start, resets_at = _today(now)
    limit = _limit(team)
    used = GenerationJob.objects.filter(request__team=team, created_at__gte=start).count()
    remaining = None if limit is None else max(0, limit - used)
    return QuotaStatus(team.name, limit, used, remaining, resets_at)


def quota_claim(*, team: Team, images: int) -> QuotaStatus:
    """Inside the request's transaction: refuse with QuotaExceeded unless ``images`` remain.

    Locks the team row until the transaction ends, so the count cannot go stale.
    """
    if _limit(team) is None:
        return quota_status(team=team)
    Team.objects.select_for_update().get(pk=team.pk)
    status = quota_status(team=team)
    assert status.limit is not None
    if status.used + images > status.limit:
        raise QuotaExceeded(
            team=team,
            limit=status.limit,
            used=status.used,
            requested=images,
            resets_at=status.resets_at,
        )
    return status


def _limit(team: Team) -> int | None:
    own = TeamQuota.objects.filter(team=team).values_list("daily_images", flat=True).first()
    if own is not None:
        return int(own)
    default = settings.QUOTA_DEFAULT_DAILY_IMAGES
    return int(default) if default else None


def _today(now: datetime | None) -> tuple[datetime, datetime]:
    local = timezone.localtime(now or timezone.now())
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def _require_administrator(actor: AbstractBaseUser | None, action: str) -> None:
    # None is the operator at the command line, trusted like a migration.
    if actor is not None:
        role_require(actor, Role.ADMINISTRATOR, action=action)
