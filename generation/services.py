"""Job lifecycle services: create, dispatch, execute, cancel, fail and sweep.

Each write is one keyword-only function in a transaction. The job row decides what
happens: a redelivered or re-dispatched message whose job already moved on does nothing.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from generation.dispatch import dispatch_job, queued_message_count
from generation.models import GenerationJob, JobStatus, Output
from generation.sampling_settings import validate_sampling_settings
from generation.storage import StorageError, StorageUnavailable, content_key, get_store, sha256_hex
from governance.audit.actions import AuditAction
from governance.audit.services import audit_append
from governance.registry.services import model_version_resolve

log = logging.getLogger(__name__)

MAX_SEED = 2**63 - 1


class GeneratedImageLike(Protocol):
    """What the worker hands back for one job: PNG bytes and what the engine reported."""

    png: bytes
    width: int
    height: int
    token_count: int
    truncated: bool
    output_id: Any  # fixed before encoding, because the signed record in the PNG names it
    pixels_sha256: str
    pixels: Any


class JobInputError(ValueError):
    """The request for a job is invalid; ``errors`` maps field names to messages."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{key}: {value}" for key, value in errors.items()))
        self.errors = errors


class PermanentJobError(Exception):
    """The job cannot succeed however often it is tried (bad input, bad weights)."""


class TransientJobError(Exception):
    """The job failed for a reason that may pass (store or database unreachable)."""


class JobCancelled(Exception):
    """Raised inside a running job when its cancellation was requested."""


def job_create(
    *,
    created_by: AbstractBaseUser,
    caption: str,
    model_reference: str | None = None,
    seed: int | None = None,
    sampling: dict[str, Any] | None = None,
    priority: int = 5,
    request: Any = None,
    variation: int | None = None,
) -> GenerationJob:
    """Validate, resolve the model alias to a fixed version, save and dispatch after commit.

    ``request`` and ``variation`` link the job to a generation request (governance.approvals).
    """
    from governance.registry.services import RegistryError

    errors: dict[str, str] = {}
    if not isinstance(caption, str) or not caption.strip():
        errors["caption"] = "must be a non-empty string"
    if seed is not None and not 0 <= seed <= MAX_SEED:
        errors["seed"] = f"must be between 0 and {MAX_SEED}"
    reference = model_reference or settings.GENERATION_DEFAULT_MODEL
    version = None
    try:
        version = model_version_resolve(reference)
    except RegistryError as exc:
        errors["model"] = str(exc)
    settings_values: dict[str, Any] = {}
    if version is not None:
        try:
            settings_values = validate_sampling_settings(sampling or {}, version.sampling_defaults)
        except ValueError as exc:
            errors.update({key: msg for key, msg in getattr(exc, "errors", {}).items()})
        top_k = settings_values.get("top_k", 0)
        vocab = int(version.engine_config.get("vqvae", {}).get("vocab_size", 0) or 0)
        if vocab and top_k > vocab:
            errors["top_k"] = f"must be at most the codebook size {vocab}"
    if errors:
        raise JobInputError(errors)
    assert version is not None
    with transaction.atomic():
        job = GenerationJob.objects.create(
            created_by=created_by,
            caption=caption.strip(),
            seed=secrets.randbelow(MAX_SEED) if seed is None else seed,
            sampling=settings_values,
            model_version=version,
            model_reference=reference,
            priority=priority,
            dispatched_at=timezone.now(),
            request=request,
            variation=variation,
        )
        audit_append(
            actor=created_by,
            action=AuditAction.JOB_CREATED,
            target_type="job",
            target_id=job.id,
            payload={
                "request": str(request.pk) if request is not None else None,
                "variation": variation,
                "model_version": str(version),
                "model_reference": reference,
                "seed": job.seed,
                "sampling": job.sampling,
                "caption": job.caption,
            },
        )
        transaction.on_commit(lambda: dispatch_job(job_id=job.id, priority=priority))
    return job


def job_cancel(*, job_id: Any) -> GenerationJob:
    """Cancel a queued job at once, or ask a running one to stop after its current scale."""
    with transaction.atomic():
        job = GenerationJob.objects.select_for_update().get(pk=job_id)
        if job.status == JobStatus.QUEUED:
            job.check_transition(JobStatus.CANCELLED)
            job.status = JobStatus.CANCELLED
            job.finished_at = timezone.now()
            job.save(update_fields=["status", "finished_at"])
            _audit_job(AuditAction.JOB_CANCELLED, job.id, {"while": JobStatus.QUEUED.value})
        elif job.status == JobStatus.RUNNING:
            job.cancel_requested = True
            job.save(update_fields=["cancel_requested"])
        else:
            job.check_transition(JobStatus.CANCELLED)
    return job


def job_fail(*, job_id: Any, reason: str) -> None:
    """Mark a non-terminal job failed with a reason a person can read."""
    with transaction.atomic():
        job = GenerationJob.objects.select_for_update().get(pk=job_id)
        if job.is_terminal:
            return
        job.check_transition(JobStatus.FAILED)
        job.status = JobStatus.FAILED
        job.failure_reason = reason[:2000]
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "failure_reason", "finished_at"])
        _audit_job(AuditAction.JOB_FAILED, job.id, {"reason": job.failure_reason[:500]})


def _audit_job(action: AuditAction, job_id: Any, payload: dict[str, Any]) -> None:
    # The worker acts for the system: no person is the actor of a job's progress.
    audit_append(actor=None, action=action, target_type="job", target_id=job_id, payload=payload)


def _claim(job_id: Any, worker: str) -> GenerationJob | None:
    """Atomically take a queued job, or a running one whose worker stopped beating."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.GENERATION_HEARTBEAT_TIMEOUT)
    claimable = Q(status=JobStatus.QUEUED) | Q(status=JobStatus.RUNNING, heartbeat_at__lt=stale)
    claimed = GenerationJob.objects.filter(claimable, pk=job_id, cancel_requested=False).update(
        status=JobStatus.RUNNING,
        attempts=F("attempts") + 1,
        started_at=now,
        heartbeat_at=now,
        worker=worker[:200],
        failure_reason="",
    )
    return GenerationJob.objects.select_related("model_version").get(pk=job_id) if claimed else None


def _claim_companions(primary: GenerationJob, worker: str, limit: int) -> list[GenerationJob]:
    """Take up to ``limit`` more queued jobs that can share the primary's engine batch."""
    if limit <= 0:
        return []
    now = timezone.now()
    with transaction.atomic():
        candidates = list(
            GenerationJob.objects.select_for_update(skip_locked=True)
            .filter(
                status=JobStatus.QUEUED,
                cancel_requested=False,
                model_version_id=primary.model_version_id,
                sampling=primary.sampling,
            )
            .exclude(pk=primary.pk)
            .order_by("-priority", "created_at")
            .values_list("pk", flat=True)[:limit]
        )
        if not candidates:
            return []
        GenerationJob.objects.filter(pk__in=candidates, status=JobStatus.QUEUED).update(
            status=JobStatus.RUNNING,
            attempts=F("attempts") + 1,
            started_at=now,
            heartbeat_at=now,
            worker=worker[:200],
            failure_reason="",
        )
    return list(
        GenerationJob.objects.select_related("model_version").filter(
            pk__in=candidates, status=JobStatus.RUNNING
        )
    )


@dataclass
class _Progress:
    """Per-scale callback for a batch: progress, heartbeat and cancellation in two queries."""

    job_ids: list[Any]
    cancelled: set[Any] = field(default_factory=set)

    def __call__(self, done: int, total: int) -> None:
        GenerationJob.objects.filter(pk__in=self.job_ids).update(
            scales_done=done,
            scales_total=total,
            progress=min(1.0, done / total) if total else 0.0,
            heartbeat_at=timezone.now(),
        )
        self.cancelled.update(
            GenerationJob.objects.filter(pk__in=self.job_ids, cancel_requested=True).values_list(
                "pk", flat=True
            )
        )
        if len(self.cancelled) == len(self.job_ids):
            raise JobCancelled


def job_execute(*, job_id: Any, worker: str, max_batch: int | None = None) -> str:
    """Run a job (with compatible queued jobs in the same engine batch) and return its status.

    Safe to call again for the same job. Raises TransientJobError when the store or
    database failed in a way worth retrying; the unfinished jobs are then back in ``queued``.
    """
    from generation.worker import generate_pngs

    # 1. take the job, unless it is done, cancelled or being run by a live worker
    if Output.objects.filter(job_id=job_id).exists():
        _finish_succeeded(job_id)
        return JobStatus.SUCCEEDED
    primary = _claim(job_id, worker)
    if primary is None:
        current = GenerationJob.objects.filter(pk=job_id).values_list("status", flat=True).first()
        if current is None:
            log.warning("job %s does not exist; message dropped", job_id)
            return "missing"
        return str(current)
    limit = settings.GENERATION_MAX_BATCH if max_batch is None else max_batch
    batch = [primary, *_claim_companions(primary, worker, limit - 1)]
    runnable = []
    for job in batch:
        if job.attempts > settings.GENERATION_MAX_ATTEMPTS:
            job_fail(job_id=job.id, reason=f"gave up after {job.attempts - 1} attempts")
        else:
            runnable.append(job)
    if not runnable:
        return _status_of(primary.id)
    # 2. generate every image of the batch through the engine, each with its own seed
    progress = _Progress([job.id for job in runnable])
    try:
        images = generate_pngs(runnable, progress=progress)
    except JobCancelled:
        for job in runnable:
            _finish_cancelled(job.id)
        return _status_of(primary.id)
    except PermanentJobError as exc:
        for job in runnable:
            job_fail(job_id=job.id, reason=str(exc))
        return _status_of(primary.id)
    # 3. store each image under its content address, record it, then run the output checks
    for index, (job, image) in enumerate(zip(runnable, images, strict=True)):
        if job.id in progress.cancelled:
            _finish_cancelled(job.id)
            continue
        try:
            output = _store_and_record(job, image)
            if output is not None:
                _run_checks(output, image)
        except StorageUnavailable as exc:
            reason = f"object store unavailable: {exc}"
            for unfinished in runnable[index:]:
                _requeue(unfinished.id, reason)
            raise TransientJobError(reason) from exc
        except StorageError as exc:
            job_fail(job_id=job.id, reason=f"object store refused the image: {exc}")
    return _status_of(primary.id)


def _status_of(job_id: Any) -> str:
    return str(GenerationJob.objects.values_list("status", flat=True).get(pk=job_id))


def _store_and_record(job: GenerationJob, image: GeneratedImageLike) -> Output | None:
    """Upload the PNG, then record the output; None when another delivery recorded it first."""
    digest = sha256_hex(image.png)
    stored = get_store().put(content_key(digest), image.png, digest, "image/png")
    try:
        with transaction.atomic():
            output = Output.objects.create(
                id=image.output_id,
                job=job,
                caption=job.caption,
                seed=job.seed,
                sampling=job.sampling,
                model_version=job.model_version,
                storage_key=stored.key,
                sha256=stored.sha256,
                size_bytes=stored.size,
                width=image.width,
                height=image.height,
                pixels_sha256=image.pixels_sha256,
            )
            GenerationJob.objects.filter(pk=job.id).update(
                caption_tokens=image.token_count, caption_truncated=image.truncated
            )
            _finish_succeeded(job.id, output=output)
            audit_append(
                actor=None,
                action=AuditAction.OUTPUT_CREATED,
                target_type="output",
                target_id=output.id,
                payload={
                    "job": str(job.id),
                    "request": str(job.request_id) if job.request_id else None,
                    "model_version": str(job.model_version),
                    "seed": job.seed,
                    "sha256": output.sha256,
                    "pixels_sha256": output.pixels_sha256,
                    "storage_key": output.storage_key,
                },
            )
    except IntegrityError:
        # Another delivery of this job recorded its output first; one output per job stands.
        _finish_succeeded(job.id)
        return None
    return output


def _run_checks(output: Output, image: GeneratedImageLike) -> None:
    from generation.checks import output_checks_run

    try:
        output_checks_run(output=output, png=image.png, pixels=image.pixels)
    except Exception:
        # The output is stored and recorded; failing checks must not fail the job. The
        # review queue shows the output without check results, and the log says why.
        log.exception("output checks of %s could not be recorded", output.id)


def _finish_succeeded(job_id: Any, output: Output | None = None) -> None:
    with transaction.atomic():
        moved = (
            GenerationJob.objects.filter(pk=job_id)
            .exclude(status=JobStatus.SUCCEEDED)
            .update(
                status=JobStatus.SUCCEEDED,
                progress=1.0,
                finished_at=timezone.now(),
                failure_reason="",
            )
        )
        if moved:
            found = output or Output.objects.filter(job_id=job_id).only("id").first()
            _audit_job(
                AuditAction.JOB_SUCCEEDED, job_id, {"output": str(found.id) if found else None}
            )


def _finish_cancelled(job_id: Any) -> None:
    with transaction.atomic():
        moved = GenerationJob.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
            status=JobStatus.CANCELLED, finished_at=timezone.now()
        )
        if moved:
            _audit_job(AuditAction.JOB_CANCELLED, job_id, {"while": JobStatus.RUNNING.value})


def _requeue(job_id: Any, reason: str) -> None:
    GenerationJob.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
        status=JobStatus.QUEUED, failure_reason=reason[:2000], dispatched_at=timezone.now()
    )


def jobs_sweep() -> dict[str, int]:
    """Re-dispatch queued jobs nobody took and recover running jobs whose worker died."""
    now = timezone.now()
    redispatch_before = now - timedelta(seconds=settings.GENERATION_REDISPATCH_AFTER)
    stale_before = now - timedelta(seconds=settings.GENERATION_HEARTBEAT_TIMEOUT)
    counts = {"redispatched": 0, "recovered": 0, "failed": 0}
    lost = GenerationJob.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=stale_before)
    for job in lost.only("id", "attempts", "cancel_requested", "priority"):
        if job.cancel_requested:
            _finish_cancelled(job.id)
        elif job.attempts >= settings.GENERATION_MAX_ATTEMPTS:
            job_fail(job_id=job.id, reason=f"worker lost {job.attempts} times")
            counts["failed"] += 1
        else:
            _requeue(job.id, "worker stopped responding; retried")
            dispatch_job(job_id=job.id, priority=job.priority)
            counts["recovered"] += 1
    waiting = GenerationJob.objects.filter(
        status=JobStatus.QUEUED, dispatched_at__lt=redispatch_before
    ).order_by("dispatched_at")
    # A backlog is not a loss: while the broker still holds at least as many messages as
    # there are waiting jobs, every one may still have its message, so only the surplus of
    # waiting jobs over queued messages is sent again (the oldest first).
    backlog = queued_message_count()
    if backlog:
        waiting = waiting[: max(0, waiting.count() - backlog)]
    for job_id, priority in waiting.values_list("id", "priority"):
        GenerationJob.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(dispatched_at=now)
        dispatch_job(job_id=job_id, priority=priority)
        counts["redispatched"] += 1
    return counts
