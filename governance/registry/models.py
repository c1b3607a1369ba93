"""Registered models, their immutable versions, weight files and movable aliases."""

from __future__ import annotations

import pgtrigger
from django.conf import settings
from django.db import models


class WeightRole(models.TextChoices):
    VQVAE = "vqvae", "VQVAE tokenizer"
    TRANSFORMER = "transformer", "Next-scale transformer"
    TEXT_ENCODER = "text_encoder", "CLIP text tower"


# The checkpoint directory layout the engine reads: one safetensors file per role.
WEIGHT_FILENAMES = {
    WeightRole.VQVAE: "vqvae.safetensors",
    WeightRole.TRANSFORMER: "transformer.safetensors",
    WeightRole.TEXT_ENCODER: "text_encoder.safetensors",
}


# Aliases that only move through a request approved by a model administrator.
PROTECTED_ALIASES = frozenset({"production"})

# The model card: every key is optional at registration, no other key is accepted.
MODEL_CARD_FIELDS = {
    "intended_use": "what the model is for and who may use it",
    "limitations": "what it does badly or must not be used for",
    "license": "licence of the weights",
    "training_data_provenance": "where the training data came from and under what terms",
    "evaluation_results": "metrics and how they were measured",
    "typical_caption_tokens": "typical length of a training caption in CLIP tokens (no SOT/EOT)",
}


class ImmutableRowError(Exception):
    """A row that must never change after creation was about to be updated."""


class RegisteredModel(models.Model):
    name = models.SlugField(max_length=64, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ModelVersion(models.Model):
    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    engine_config = models.JSONField()
    sampling_defaults = models.JSONField(default=dict)
    model_card = models.JSONField(default=dict)
    registered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model__name", "version"]
        constraints = [
            models.UniqueConstraint(fields=["model", "version"], name="uniq_model_version"),
        ]
        triggers = [
            pgtrigger.Protect(
                name="model_version_immutable", operation=pgtrigger.Update | pgtrigger.Delete
            )
        ]

    def __str__(self) -> str:
        return f"{self.model.name}:{self.version}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None and not self._state.adding:
            raise ImmutableRowError(f"model version {self} is immutable")
        super().save(*args, **kwargs)  # type: ignore[arg-type]


class WeightFile(models.Model):
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="weights"
    )
    role = models.CharField(max_length=32, choices=WeightRole.choices)
    uri = models.CharField(max_length=1024)
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField()

    class Meta:
        ordering = ["role"]
        constraints = [
            models.UniqueConstraint(fields=["model_version", "role"], name="uniq_weight_role"),
        ]
        # The hash pins the bytes; the URI may be relocated (weights moved to another store)
        # because the worker verifies the bytes against the hash wherever they are read from.
        triggers = [
            pgtrigger.ReadOnly(
                name="weight_file_hash_read_only",
                fields=["model_version", "role", "sha256", "size_bytes"],
            ),
            pgtrigger.Protect(name="weight_file_never_deleted", operation=pgtrigger.Delete),
        ]

    def __str__(self) -> str:
        return f"{self.model_version} {self.role} {self.sha256[:12]}"


class ModelAlias(models.Model):
    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="aliases")
    name = models.SlugField(max_length=64)
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="aliases")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["model", "name"], name="uniq_alias_name"),
        ]

    def __str__(self) -> str:
        return f"{self.model.name}@{self.name}"


class AliasMoveRequestStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


class AliasMoveRequest(models.Model):
    """A request to move a protected alias, waiting for a model administrator's decision."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="+")
    alias_name = models.SlugField(max_length=64)
    from_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    to_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    reason = models.TextField()
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    requested_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(
        max_length=16,
        choices=AliasMoveRequestStatus.choices,
        default=AliasMoveRequestStatus.PENDING,
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]

    def __str__(self) -> str:
        return (
            f"#{self.pk} {self.model.name}@{self.alias_name} -> {self.to_version} ({self.status})"
        )


class AliasMove(models.Model):
    alias = models.ForeignKey(ModelAlias, on_delete=models.PROTECT, related_name="moves")
    # Set when the move was approved through a request; the approver is moved_by.
    request = models.OneToOneField(
        AliasMoveRequest, null=True, blank=True, on_delete=models.PROTECT, related_name="move"
    )
    from_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    to_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    moved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.TextField()
    moved_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-moved_at", "-id"]
        triggers = [
            pgtrigger.Protect(
                name="alias_history_append_only", operation=pgtrigger.Update | pgtrigger.Delete
            )
        ]

    def __str__(self) -> str:
        return f"{self.alias} {self.from_version} -> {self.to_version}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None and not self._state.adding:
            raise ImmutableRowError("alias history is append-only")
        super().save(*args, **kwargs)  # type: ignore[arg-type]
