"""Generation jobs and their outputs: the job row, not the broker, is the source of truth."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from governance.registry.models import ModelVersion


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})

# Every legal move; anything else raises InvalidTransition.
TRANSITIONS: dict[str, frozenset[str]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.RUNNING: frozenset(
        {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.QUEUED}
    ),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


class InvalidTransition(Exception):
    """A job was asked to move to a status its current status does not allow."""


class GenerationJob(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="generation_jobs"
    )
    caption = models.TextField()
    seed = models.BigIntegerField()
    sampling = models.JSONField()
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="jobs")
    model_reference = models.CharField(max_length=200)
    status = models.CharField(
        max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True
    )
    priority = models.PositiveSmallIntegerField(default=5)
    progress = models.FloatField(default=0.0)
    scales_done = models.PositiveSmallIntegerField(default=0)
    scales_total = models.PositiveSmallIntegerField(default=0)
    caption_tokens = models.PositiveSmallIntegerField(null=True, blank=True)
    caption_truncated = models.BooleanField(default=False)
    failure_reason = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    worker = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "dispatched_at"], name="job_status_dispatch")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(progress__gte=0.0) & models.Q(progress__lte=1.0),
                name="job_progress_range",
            ),
        ]

    def __str__(self) -> str:
        return f"job {self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def check_transition(self, new_status: str) -> None:
        """Raise InvalidTransition unless the job may move to ``new_status``."""
        if new_status not in TRANSITIONS[self.status]:
            raise InvalidTransition(f"job {self.id} cannot go from {self.status} to {new_status}")


class Output(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # One output per job, enforced by the database so a redelivered job cannot add a second.
    job = models.OneToOneField(GenerationJob, on_delete=models.PROTECT, related_name="output")
    caption = models.TextField()
    seed = models.BigIntegerField()
    sampling = models.JSONField()
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="outputs"
    )
    storage_key = models.CharField(max_length=300)
    sha256 = models.CharField(max_length=64, db_index=True)
    size_bytes = models.PositiveIntegerField()
    width = models.PositiveSmallIntegerField()
    height = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"output {self.id}"
