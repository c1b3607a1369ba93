"""Caption templates, their immutable numbered versions, and the organisation's lint terms."""

from __future__ import annotations

from typing import Any

import pgtrigger
from django.conf import settings
from django.db import models

from governance.registry.models import RegisteredModel


class ImmutableVersionError(Exception):
    """A template version's content was about to change; editing makes a new version."""


class TemplateStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SUBMITTED = "submitted", "Submitted for publication"
    PUBLISHED = "published", "Published"
    REJECTED = "rejected", "Rejected"
    RETIRED = "retired", "Retired"


# The lifecycle: which status may follow which (the services raise InvalidTransition otherwise).
TRANSITIONS: dict[str, tuple[str, ...]] = {
    TemplateStatus.DRAFT.value: (TemplateStatus.SUBMITTED.value,),
    TemplateStatus.SUBMITTED.value: (TemplateStatus.PUBLISHED.value, TemplateStatus.REJECTED.value),
    TemplateStatus.PUBLISHED.value: (TemplateStatus.RETIRED.value,),
    TemplateStatus.REJECTED.value: (),
    TemplateStatus.RETIRED.value: (),
}


class Template(models.Model):
    """A named caption template, written for one registered model."""

    name = models.SlugField(max_length=64, unique=True)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    # The model whose card and tokenizer the lint uses (its production version, else newest).
    model = models.ForeignKey(
        RegisteredModel, on_delete=models.PROTECT, related_name="caption_templates"
    )
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TemplateVersion(models.Model):
    """One immutable version: pattern, variables, checklist, examples and its lint report."""

    # Never change after creation, whatever the status; a database trigger enforces it too.
    CONTENT_FIELDS = (
        "template_id",
        "number",
        "based_on_id",
        "pattern",
        "variables",
        "checklist",
        "examples",
        "created_by_id",
    )

    template = models.ForeignKey(Template, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    based_on = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    pattern = models.TextField()
    variables = models.JSONField()
    checklist = models.JSONField(default=list)
    examples = models.JSONField(default=list)
    # Refreshed while a draft and at submission; frozen from then on.
    lint_report = models.JSONField(default=dict)
    status = models.CharField(
        max_length=16, choices=TemplateStatus.choices, default=TemplateStatus.DRAFT
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    submitted_at = models.DateTimeField(null=True, blank=True)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    published_at = models.DateTimeField(null=True, blank=True)
    rejected_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    rejected_at = models.DateTimeField(null=True, blank=True)
    rejection_reason = models.TextField(blank=True)
    retired_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["template__name", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["template", "number"], name="uniq_template_version_number"
            ),
        ]
        # The same rules in PostgreSQL, for writes that bypass the model (embedded SQLite
        # relies on save() and the services alone).
        triggers = [
            pgtrigger.ReadOnly(
                name="version_content_read_only",
                fields=[
                    "template",
                    "number",
                    "based_on",
                    "pattern",
                    "variables",
                    "checklist",
                    "examples",
                    "created_by",
                ],
            ),
            pgtrigger.FSM(
                name="version_status_lifecycle",
                field="status",
                transitions=[
                    (before, after) for before, nexts in TRANSITIONS.items() for after in nexts
                ],
            ),
            pgtrigger.Protect(
                name="version_lint_frozen_after_draft",
                operation=pgtrigger.Update,
                condition=pgtrigger.Condition(
                    "OLD.status <> 'draft' AND NEW.lint_report IS DISTINCT FROM OLD.lint_report"
                ),
            ),
            pgtrigger.Protect(name="version_never_deleted", operation=pgtrigger.Delete),
        ]

    def __str__(self) -> str:
        return f"{self.template.name} v{self.number}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            stored = type(self).objects.filter(pk=self.pk).values(*self.CONTENT_FIELDS, "status")
            before = stored.first()
            if before is not None:
                changed = [f for f in self.CONTENT_FIELDS if getattr(self, f) != before[f]]
                if changed:
                    raise ImmutableVersionError(
                        f"{self} cannot change ({', '.join(changed)}); create a new version"
                    )
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise ImmutableVersionError(f"{self} is part of the record and is never deleted")


class LintTermKind(models.TextChoices):
    BANNED = "banned", "Banned term"
    REQUIRED = "required", "Required term or disclaimer"


class LintTerm(models.Model):
    """An organisation-managed banned or required term; required terms may apply to one
    template only. Deactivated, never deleted, so old lint reports stay explicable."""

    kind = models.CharField(max_length=16, choices=LintTermKind.choices)
    term = models.CharField(max_length=200)
    template = models.ForeignKey(
        Template, null=True, blank=True, on_delete=models.PROTECT, related_name="lint_terms"
    )
    reason = models.TextField()
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    deactivated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    deactivated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["kind", "term"]

    def __str__(self) -> str:
        scope = f" ({self.template})" if self.template_id else ""
        return f"{self.get_kind_display()}: {self.term}{scope}"
