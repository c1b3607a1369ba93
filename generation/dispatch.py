"""Hand a job id to whoever runs jobs: the Celery ``gpu`` queue or an in-process thread.

A failed dispatch is logged, not raised: the job row is already committed as ``queued``
and the sweeper dispatches it again, so a broker outage delays a job but never loses it.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from django.conf import settings

log = logging.getLogger(__name__)

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def dispatch_job(*, job_id: Any, priority: int = 5) -> None:
    """Send the job to the configured worker; never raises for an unreachable broker."""
    if settings.GENERATION_WORKER == "inprocess":
        _inprocess_submit(str(job_id))
        return
    from generation.tasks import run_generation_job

    try:
        run_generation_job.apply_async(
            args=(str(job_id),),
            queue=settings.GENERATION_QUEUE,
            priority=priority,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )
    except Exception as exc:  # kombu raises many types for an unreachable broker
        log.warning("dispatch of job %s failed (%s); the sweeper will retry", job_id, exc)


def queued_message_count() -> int:
    """Messages waiting in the gpu queue (0 for the in-process worker or when unknown)."""
    if settings.GENERATION_WORKER == "inprocess":
        return 0
    from config.celery import app

    try:
        with app.connection_for_read() as conn:
            declared = conn.default_channel.queue_declare(settings.GENERATION_QUEUE, passive=True)
        return int(declared.message_count)
    except Exception as exc:  # unknown backlog: the caller then re-sends every waiting job
        log.warning("cannot read the length of queue %s: %s", settings.GENERATION_QUEUE, exc)
        return 0


def _inprocess_submit(job_id: str) -> Future[None]:
    global _executor
    with _executor_lock:
        if _executor is None:
            # One thread: the embedded default has one model in memory and one CPU budget.
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generation")
        return _executor.submit(run_inprocess, job_id)


def run_inprocess(job_id: str) -> None:
    """Run a job on this process, retrying transient failures with backoff like the worker."""
    from django.db import close_old_connections

    from generation.services import TransientJobError, job_execute, job_fail

    try:
        for attempt in range(settings.GENERATION_MAX_ATTEMPTS):
            try:
                job_execute(job_id=job_id, worker=f"inprocess:{threading.get_ident()}")
                return
            except TransientJobError as exc:
                if attempt + 1 == settings.GENERATION_MAX_ATTEMPTS:
                    job_fail(job_id=job_id, reason=f"gave up after {attempt + 1} attempts: {exc}")
                    return
                time.sleep(min(30.0, 0.5 * 2**attempt))
    except Exception:
        log.exception("in-process job %s crashed", job_id)
        job_fail(job_id=job_id, reason="internal error in the in-process worker")
    finally:
        close_old_connections()


def wait_for_inprocess_jobs() -> None:
    """Block until the in-process worker has drained its queue (for commands and tests)."""
    with _executor_lock:
        executor = _executor
    if executor is not None:
        executor.submit(lambda: None).result()
