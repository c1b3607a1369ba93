"""Celery tasks: take an id, call one service, retry what is worth retrying."""

from __future__ import annotations

from celery import Task, shared_task
from django.conf import settings
from django.db import DatabaseError

from generation.services import TransientJobError, job_execute, job_fail, jobs_sweep


def _backoff(retries: int) -> float:
    return float(min(60, 2 ** (retries + 1)))


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def run_generation_job(self: Task, job_id: str) -> str:
    """Execute one generation job; transient store/database errors retry with backoff."""
    try:
        return job_execute(job_id=job_id, worker=str(self.request.hostname or "celery"))
    except (TransientJobError, DatabaseError) as exc:
        if self.request.retries + 1 >= settings.GENERATION_MAX_ATTEMPTS:
            job_fail(
                job_id=job_id, reason=f"gave up after {self.request.retries + 1} attempts: {exc}"
            )
            return "failed"
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc


@shared_task(acks_late=False)
def sweep_stale_jobs() -> dict[str, int]:
    """Periodic: re-dispatch lost jobs and recover jobs whose worker died."""
    return jobs_sweep()


@shared_task(acks_late=False)
def replay_sample_outputs() -> dict[str, int]:
    """Periodic, on the gpu queue: replay a random sample of outputs and record any drift."""
    from collections import Counter

    from generation.replay import replay_sample

    return dict(Counter(str(replay.outcome) for replay in replay_sample()))
