"""Teams, generation requests and the review decisions on their outputs.

A request is a published caption template version, variable values and a number of
variations; each variation is one generation job with its own seed. Every output is reviewed
by someone other than the requester; a decision is a row that never changes.
"""

from __future__ import annotations

import uuid
from typing import Any, NoReturn

import pgtrigger
from django.conf import settings
from django.db import models

from generation.models import Output, ReviewStatus
from governance.captions.models import TemplateVersion
from governance.registry.models import ModelVersion


class ImmutableRecordError(Exception):
    """A request's content or a review decision was about to change; both are the record."""


class Team(models.Model):
    """A group of requesters (a marketing team) who see each other's requests."""

    name = models.SlugField(max_length=64, unique=True)
    title = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TeamMembership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="team_memberships"
    )
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team", "user"]
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="uniq_team_member"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.team}"


class GenerationRequest(models.Model):
    """What a requester asked for: template version, values, variations; fixed once made."""

    # Never change after creation; only the legal hold fields move (pgtrigger enforces it).
    CONTENT_FIELDS = (
        "team_id",
        "requested_by_id",
        "template_version_id",
        "values",
        "values_used",
        "language",
        "caption",
        "lint",
        "variations",
        "model_version_id",
        "model_reference",
        "parent_id",
        "changes_requested_by_id",
    )

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="requests")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="generation_requests"
    )
    template_version = models.ForeignKey(
        TemplateVersion, on_delete=models.PROTECT, related_name="requests"
    )
    values = models.JSONField()  # as given by the requester
    values_used = models.JSONField()  # each variable's value, source and label after rendering
    language = models.CharField(max_length=8)
    caption = models.TextField()
    lint = models.JSONField(default=dict)  # token count, key positions, warnings at submission
    variations = models.PositiveSmallIntegerField()
    # The alias was resolved when the request was made; every variation runs on this version.
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="requests"
    )
    model_reference = models.CharField(max_length=200)
    # "Request changes" makes a child request that regenerates; the parent keeps its record.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    changes_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    legal_hold = models.BooleanField(default=False)
    legal_hold_reason = models.TextField(blank=True)
    legal_hold_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    legal_hold_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(variations__gte=1), name="request_has_variations"
            ),
        ]
        triggers = [
            pgtrigger.ReadOnly(
                name="request_content_read_only",
                fields=[
                    "team",
                    "requested_by",
                    "template_version",
                    "values",
                    "values_used",
                    "language",
                    "caption",
                    "lint",
                    "variations",
                    "model_version",
                    "model_reference",
                    "parent",
                    "changes_requested_by",
                    "created_at",
                ],
            ),
            pgtrigger.Protect(name="request_never_deleted", operation=pgtrigger.Delete),
        ]

    def __str__(self) -> str:
        return f"request {self.id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            before = type(self).objects.filter(pk=self.pk).values(*self.CONTENT_FIELDS).first()
            if before is not None:
                changed = [f for f in self.CONTENT_FIELDS if getattr(self, f) != before[f]]
                if changed:
                    raise ImmutableRecordError(
                        f"{self} cannot change ({', '.join(changed)}); request changes instead"
                    )
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ImmutableRecordError(f"{self} is part of the record and is never deleted")


class Decision(models.TextChoices):
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    CHANGES_REQUESTED = "changes_requested", "Changes requested"


# Which review status each decision may follow; anything else raises InvalidTransition.
# An approval may be withdrawn by a later rejection; a rejection is final (retention purges it).
DECISION_FROM: dict[str, frozenset[str]] = {
    Decision.APPROVED: frozenset({ReviewStatus.PENDING}),
    Decision.REJECTED: frozenset({ReviewStatus.PENDING, ReviewStatus.APPROVED}),
    Decision.CHANGES_REQUESTED: frozenset({ReviewStatus.PENDING}),
}


class ReviewDecision(models.Model):
    """One reviewer's decision on one output; append-only."""

    output = models.ForeignKey(Output, on_delete=models.PROTECT, related_name="review_decisions")
    request = models.ForeignKey(
        GenerationRequest,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="review_decisions",
    )
    decision = models.CharField(max_length=24, choices=Decision.choices)
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="review_decisions"
    )
    checklist = models.JSONField(default=dict)  # checklist item -> ticked
    comment = models.TextField(blank=True)
    # The output carried a flag from the machine checks when it was decided.
    flagged = models.BooleanField(default=False)
    flagged_reason = models.TextField(blank=True)
    # The child request a "changes requested" decision led to.
    child_request = models.ForeignKey(
        GenerationRequest, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["decided_at", "id"]
        triggers = [
            pgtrigger.Protect(
                name="review_decision_append_only", operation=pgtrigger.Update | pgtrigger.Delete
            )
        ]

    def __str__(self) -> str:
        return f"{self.decision} {self.output_id} by {self.reviewer}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ImmutableRecordError("review decisions are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ImmutableRecordError("review decisions are append-only")


class OutputReview(Output):
    """The review desk's view of an output (the admin's review queue)."""

    class Meta:
        proxy = True
        verbose_name = "output to review"
        verbose_name_plural = "review queue"
