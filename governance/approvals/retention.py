"""Retention: rejected outputs lose their image after a configurable number of days.

The output row stays, so the lineage of a purged output still reads end to end; only the
object leaves the store. Approved outputs are never purged, nor any output of a request on
legal hold. Each purge is an audit event, written before the object is deleted: a failed
delete is retried by the next run, and the record never claims less than what happened.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from generation.models import Output, ReviewStatus
from generation.storage import ObjectMissing, StorageError, get_store
from governance.approvals.models import Decision, GenerationRequest
from governance.audit.actions import AuditAction
from governance.audit.services import audit_append

log = logging.getLogger(__name__)


@dataclass
class PurgeReport:
    """What one retention run did."""

    cutoff: datetime
    purged: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    objects_deleted: int = 0
    delete_failures: list[str] = field(default_factory=list)


def purgeable_outputs(*, cutoff: datetime) -> Any:
    """Rejected, unpurged outputs whose latest rejection is older than ``cutoff``."""
    return (
        Output.objects.filter(review_status=ReviewStatus.REJECTED, purged_at__isnull=True)
        .annotate(
            rejected_at=Max(
                "review_decisions__decided_at",
                filter=Q(review_decisions__decision=Decision.REJECTED),
            )
        )
        .filter(rejected_at__lt=cutoff)
    )


def retention_purge(
    *, older_than_days: int | None = None, now: datetime | None = None, limit: int = 1000
) -> PurgeReport:
    """Purge up to ``limit`` rejected outputs past retention, then delete their objects."""
    days = settings.RETENTION_REJECTED_DAYS if older_than_days is None else older_than_days
    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
        raise ValueError("older_than_days must be a whole number of days, 0 or more")
    now = now or timezone.now()
    report = PurgeReport(cutoff=now - timedelta(days=days))
    # 1. mark each output purged, one short transaction and one audit event each
    candidates = purgeable_outputs(cutoff=report.cutoff).order_by("rejected_at")
    for output_id, rejected_at in candidates.values_list("pk", "rejected_at")[:limit]:
        if _purge_one(output_id, rejected_at, days, now):
            report.purged.append(str(output_id))
        else:
            report.held.append(str(output_id))
    # 2. delete the objects outside any transaction (network), retrying earlier failures
    pending = Output.objects.filter(purged_at__isnull=False, object_deleted_at__isnull=True)
    for output_id, key in pending.values_list("pk", "storage_key")[:limit]:
        if _delete_object(output_id, key):
            report.objects_deleted += 1
        else:
            report.delete_failures.append(str(output_id))
    return report


def _purge_one(output_id: Any, rejected_at: datetime, days: int, now: datetime) -> bool:
    with transaction.atomic():
        output = Output.objects.select_for_update().select_related("job").get(pk=output_id)
        request_id = output.job.request_id
        # The legal hold service locks the same request row: a hold and a purge never interleave.
        if request_id is not None:
            request = GenerationRequest.objects.select_for_update().get(pk=request_id)
            if request.legal_hold:
                return False
        if output.review_status != ReviewStatus.REJECTED or output.purged_at is not None:
            return False
        Output.objects.filter(pk=output.pk).update(purged_at=now)
        audit_append(
            actor=None,
            action=AuditAction.RETENTION_PURGED,
            target_type="output",
            target_id=output.pk,
            payload={
                "request": str(request_id) if request_id else None,
                "sha256": output.sha256,
                "storage_key": output.storage_key,
                "rejected_at": rejected_at.isoformat(),
                "retention_days": days,
            },
        )
    return True


def _delete_object(output_id: Any, key: str) -> bool:
    # Identical bytes share a content address; the object stays while a live output uses it.
    shared = Output.objects.filter(storage_key=key, purged_at__isnull=True).exists()
    if not shared:
        try:
            get_store().delete(key)
        except ObjectMissing:
            pass  # already gone: the goal of the purge is met
        except StorageError as exc:
            log.warning(
                "purge of %s could not delete %s (%s); the next run retries", output_id, key, exc
            )
            return False
    Output.objects.filter(pk=output_id).update(object_deleted_at=timezone.now())
    return True
