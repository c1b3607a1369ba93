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
    # Set for jobs made from a generation request: one job per variation of the request.
    request = models.ForeignKey(
        "approvals.GenerationRequest",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="jobs",
    )
    variation = models.PositiveSmallIntegerField(null=True, blank=True)
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
            models.UniqueConstraint(
                fields=["request", "variation"], name="uniq_job_request_variation"
            ),
            models.CheckConstraint(
                condition=models.Q(request__isnull=True) | models.Q(variation__isnull=False),
                name="job_request_has_variation",
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


class ReviewStatus(models.TextChoices):
    PENDING = "pending", "Pending review"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    CHANGES_REQUESTED = "changes_requested", "Changes requested"


class Output(models.Model):
    # Derived from the job id (generation.provenance.output_id_for), so the id can be signed
    # into the file before the row exists, and a redelivered job rebuilds identical bytes.
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
    # SHA-256 of the decoded RGB pixels (generation.provenance.pixels_sha256): survives
    # re-encoding and metadata stripping, unlike the file's sha256.
    pixels_sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    # 64-bit difference hash (16 hex digits) for near-duplicate checks.
    perceptual_hash = models.CharField(max_length=16, blank=True)
    # Written only by governance.approvals services, with a ReviewDecision row and an event.
    review_status = models.CharField(
        max_length=24, choices=ReviewStatus.choices, default=ReviewStatus.PENDING, db_index=True
    )
    # Retention: the row stays (lineage survives); the object is deleted from the store.
    purged_at = models.DateTimeField(null=True, blank=True)
    object_deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"output {self.id}"


class CheckOutcome(models.TextChoices):
    PASSED = "passed", "Passed"
    FLAGGED = "flagged", "Flagged"
    NOT_APPLICABLE = "not_applicable", "Not applicable"
    ERROR = "error", "Checker error"


class OutputCheck(models.Model):
    """One machine check of one output, with the checker's version and threshold."""

    output = models.ForeignKey(Output, on_delete=models.PROTECT, related_name="checks")
    checker = models.CharField(max_length=64)
    version = models.CharField(max_length=32)
    threshold = models.FloatField(null=True, blank=True)
    value = models.FloatField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=CheckOutcome.choices)
    flagged = models.BooleanField(default=False, db_index=True)
    detail = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["output", "checker"]
        constraints = [
            models.UniqueConstraint(
                fields=["output", "checker", "version"], name="uniq_output_check_version"
            ),
            models.CheckConstraint(
                condition=models.Q(flagged=False) | models.Q(outcome__in=["flagged", "error"]),
                name="output_check_flag_matches_outcome",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.checker} v{self.version} on {self.output_id}: {self.outcome}"


class ReplayOutcome(models.TextChoices):
    IDENTICAL = "identical", "Identical pixels"
    DRIFTED = "drifted", "Pixels differ"
    UNAVAILABLE = "unavailable", "Could not compare"


class OutputReplay(models.Model):
    """One regeneration of an output from its record, compared pixel by pixel."""

    output = models.ForeignKey(Output, on_delete=models.PROTECT, related_name="replays")
    outcome = models.CharField(max_length=16, choices=ReplayOutcome.choices)
    max_abs_diff = models.PositiveSmallIntegerField(null=True, blank=True)
    mean_abs_diff = models.FloatField(null=True, blank=True)
    differing_fraction = models.FloatField(null=True, blank=True)
    detail = models.TextField(blank=True)
    device = models.CharField(max_length=64, blank=True)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"replay of {self.output_id}: {self.outcome}"
