"""Celery tasks of the approvals app: the periodic retention purge."""

from __future__ import annotations

from celery import shared_task

from governance.approvals.retention import retention_purge


@shared_task(acks_late=False)
def purge_rejected_outputs() -> dict[str, int]:
    """Periodic: purge rejected outputs past retention; the purge audits itself."""
    report = retention_purge()
    return {"purged": len(report.purged), "held": len(report.held)}
